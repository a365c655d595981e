/**
 * Creates a brand-new local CA: an RSA key from node:crypto (forge's pure-JS keygen takes seconds)
 * and a self-signed certificate built with forge and signed through x509.ts. Pure: no files, no
 * global state — ca/store.ts decides when to call this and where the result lives. It must not
 * reuse or cache keys; every call is a new CA with a new unique name and serial.
 */
import { generateKeyPair, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { promisify } from 'node:util';
import forge from 'node-forge';
import { CLOCK_SKEW_BACKDATE_MS, forgePublicKey, randomSerialHex, signCertificate, utf8Attribute, wholeSeconds } from './x509.js';

const generateKeyPairAsync = promisify(generateKeyPair);

/**
 * RSA-2048: every TLS stack accepts it and it is NIST SP 800-57 Pt.1 Rev.5 Table 4's floor through
 * 2030. The CA key signs every minted leaf, so its size sets the mint cost (RSA private-key time
 * grows ~cubically: 3072 bits costs ~3x per signature).
 */
export const CA_KEY_BITS = 2048;

/** Ten years, like mkcert's root; store.ts regenerates the CA 48 h before it runs out anyway. */
export const CA_VALIDITY_YEARS = 10;

/** Every CA we make has a CN starting with this, so people (and tests) can recognise ours. */
export const CA_COMMON_NAME_PREFIX = 'tproxy local CA';

/** ub-common-name (RFC 5280 Appendix A.1): a CN longer than 64 characters is invalid. */
const MAX_COMMON_NAME = 64;

/**
 * "tproxy local CA <host>-<8 hex>": the host name tells people which machine's CA they are looking
 * at, the random suffix keeps two CAs from one machine apart (mkcert's caUniqueName does the same).
 */
export function caUniqueName(host: string = hostname(), suffix: string = randomBytes(4).toString('hex')): string {
  const tail = `-${suffix}`;
  const room = MAX_COMMON_NAME - CA_COMMON_NAME_PREFIX.length - 1 - tail.length;
  return `${CA_COMMON_NAME_PREFIX} ${(host || 'localhost').slice(0, room)}${tail}`;
}

export interface GenerateCaOptions {
  /** Defaults to caUniqueName(). */
  commonName?: string;
  /** The creation time; notBefore is backdated from it and notAfter counted from it. */
  now?: Date;
  /** Defaults to CA_KEY_BITS; tests never lower it below 2048. */
  keyBits?: number;
}

export interface GeneratedCa {
  certPem: string;
  /** PKCS#8 PEM of the CA's private key. */
  keyPem: string;
}

/** Makes a new self-signed CA certificate and key. */
export async function generateCa(options: GenerateCaOptions = {}): Promise<GeneratedCa> {
  const now = options.now ?? new Date();
  const { publicKey, privateKey } = await generateKeyPairAsync('rsa', {
    modulusLength: options.keyBits ?? CA_KEY_BITS,
    // F4, the only exponent some verifiers accept (RFC 8017 §3.1 allows others; nobody uses them).
    publicExponent: 0x10001,
  });

  const cert = forge.pki.createCertificate();
  // X.509 v3 (value 2) is required for extensions (RFC 5280 §4.1.2.1).
  cert.version = 2;
  cert.serialNumber = randomSerialHex();
  cert.publicKey = forgePublicKey(publicKey);
  cert.validity.notBefore = wholeSeconds(new Date(now.getTime() - CLOCK_SKEW_BACKDATE_MS));
  const notAfter = wholeSeconds(now);
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + CA_VALIDITY_YEARS);
  cert.validity.notAfter = notAfter;

  const subject = [utf8Attribute('O', 'tproxy'), utf8Attribute('CN', options.commonName ?? caUniqueName())];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    // RFC 5280 §4.2.1.9: MUST be critical in CA certs. pathLen 0: this CA signs leaves only, never
    // another CA, so a leaked leaf key can never be turned into a sub-CA.
    { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
    // RFC 5280 §4.2.1.3: keyCertSign for issuing leaves, cRLSign as mkcert/CA/B BR §7.1.2.1 roots
    // carry; SHOULD be critical.
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    // RFC 5280 §4.2.1.2: MUST appear in CA certs; leaves point at it through their AKI. Forge
    // computes method (1): SHA-1 of the subjectPublicKey BIT STRING.
    { name: 'subjectKeyIdentifier' },
  ]);

  const certPem = signCertificate(cert, privateKey);
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  return { certPem, keyPem };
}
