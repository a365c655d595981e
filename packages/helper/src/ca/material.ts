/**
 * Turns a CA certificate + key PEM pair into the in-memory `CaMaterial` everything else uses, after
 * checking that the pair is really one of our CAs (parses, is a CA, has an SKI, key matches,
 * self-signature verifies). It also precomputes what leaf minting needs from the CA — issuer
 * attributes and key identifier — so a mint never re-parses the CA. Pure: reads no files; a bad
 * pair throws CaError 'ca-corrupt' and the caller (store.ts) decides whether to regenerate.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import forge from 'node-forge';
import { CaError, messageOf } from './errors.js';

/** A loaded CA, ready to sign leaves. */
export interface CaMaterial {
  /** The CA certificate, PEM. This is what gets installed into trust stores and shown to users. */
  certPem: string;
  /** The CA private key, PKCS#8 PEM. Secret: never logged, never sent over RPC. */
  keyPem: string;
  /** The CA private key as node:crypto holds it; leaf signatures are made with this. */
  privateKey: KeyObject;
  /** The CA public key, for verifying what we minted. */
  publicKey: KeyObject;
  /** SHA-256 of the DER certificate, upper-case hex pairs joined by ':', as `openssl x509 -fingerprint -sha256` prints. */
  fingerprintSha256: string;
  /** The certificate serial as lower-case hex without separators; names the trust-store file. */
  serialHex: string;
  /** The subject in one line, e.g. "O=tproxy, CN=tproxy local CA host-1a2b3c4d". */
  subject: string;
  notBefore: Date;
  notAfter: Date;
  /** Precomputed for minting: the CA subject as parsed by forge, reused verbatim as every leaf's issuer. */
  issuerAttributes: forge.pki.CertificateField[];
  /** Precomputed for minting: the CA's subjectKeyIdentifier (forge binary string), every leaf's AKI keyIdentifier. */
  subjectKeyIdentifier: string;
}

/** RSA modulus floor for a CA we accept from disk (NIST SP 800-57 Pt.1 Rev.5 Table 4). */
const MIN_RSA_BITS = 2048;

const corrupt = (why: string, cause?: unknown): CaError =>
  new CaError('ca-corrupt', `checking the CA certificate and key: ${why}`, cause === undefined ? undefined : { cause });

/** Parses and checks a CA pair; throws CaError 'ca-corrupt' with the reason when it is not usable. */
export function caMaterialFromPem(certPem: string, keyPem: string): CaMaterial {
  let x509: X509Certificate;
  let privateKey: KeyObject;
  let forgeCert: forge.pki.Certificate;
  try {
    x509 = new X509Certificate(certPem);
  } catch (err) {
    throw corrupt(`certificate does not parse: ${messageOf(err)}`, err);
  }
  try {
    privateKey = createPrivateKey(keyPem);
  } catch (err) {
    throw corrupt(`private key does not parse: ${messageOf(err)}`, err);
  }
  try {
    forgeCert = forge.pki.certificateFromPem(certPem);
  } catch (err) {
    throw corrupt(`forge cannot read the certificate: ${messageOf(err)}`, err);
  }

  if (privateKey.asymmetricKeyType !== 'rsa') throw corrupt(`key type is ${privateKey.asymmetricKeyType}, expected RSA`);
  const bits = privateKey.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < MIN_RSA_BITS) throw corrupt(`RSA key has ${bits} bits, need at least ${MIN_RSA_BITS}`);
  if (!x509.ca) throw corrupt('basicConstraints does not say CA:TRUE');
  if (!x509.checkPrivateKey(privateKey)) throw corrupt('private key does not belong to the certificate');
  if (!x509.verify(x509.publicKey)) throw corrupt('certificate is not self-signed by its key');
  const ski = forgeCert.getExtension('subjectKeyIdentifier') as { subjectKeyIdentifier?: string } | undefined;
  if (!ski?.subjectKeyIdentifier) throw corrupt('subjectKeyIdentifier extension is missing');

  return {
    certPem,
    keyPem,
    privateKey,
    publicKey: x509.publicKey,
    fingerprintSha256: x509.fingerprint256,
    serialHex: x509.serialNumber.toLowerCase(),
    subject: x509.subject.split('\n').join(', '),
    notBefore: new Date(x509.validFrom),
    notAfter: new Date(x509.validTo),
    issuerAttributes: forgeCert.subject.attributes,
    subjectKeyIdentifier: forge.util.hexToBytes(ski.subjectKeyIdentifier),
  };
}
