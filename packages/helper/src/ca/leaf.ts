/**
 * Leaf certificates for intercepted connections: canonicalises the name a TLS client asked for
 * (SNI, or the original destination IP when there is none), then mints a short-lived server
 * certificate for exactly that name, signed by the local CA. Pure apart from randomness, the clock
 * and TPROXY_LEAF_KEY (read when a key is made): no caching (cache.ts), no files, no sockets. Forge
 * encodes names and extensions; the TBSCertificate around them is assembled here with the key's
 * SubjectPublicKeyInfo exactly as OpenSSL exports it, because forge can encode RSA keys only. It
 * must never mint a wildcard or any name the client did not send — anything that is not a plain
 * host name or IP literal is refused with CaError 'invalid-name'.
 */
import { generateKeyPair, sign, type KeyObject } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import { promisify } from 'node:util';
import forge from 'node-forge';
import { CaError } from './errors.js';
import type { CaMaterial } from './material.js';
import { CLOCK_SKEW_BACKDATE_MS, SHA256_WITH_RSA_OID, forgePublicKey, randomSerialHex, utf8Attribute, wholeSeconds } from './x509.js';

const generateKeyPairAsync = promisify(generateKeyPair);

/**
 * Validity of a leaf, notBefore to notAfter. 30 days stays under every client's cap with room to
 * spare: Apple's 825 days for all TLS server certs (support.apple.com/HT210176), the 398-day
 * public-CA cap Apple/Chrome enforce (HT211025), and the CA/B Forum ballot SC-081 schedule, backed
 * by Apple and Chrome, that ends at 47 days in 2029. The cache re-mints before it runs out.
 */
export const LEAF_VALIDITY_DAYS = 30;
const LEAF_VALIDITY_MS = LEAF_VALIDITY_DAYS * 24 * 3600 * 1000;

/**
 * Leaf key types. ECDSA P-256 is the default: every TLS client of the last decade accepts it
 * (RFC 8422, TLS 1.3's mandatory-to-implement signature, RFC 8446 §9.1); the server's handshake
 * signature costs a few hundredths of a millisecond against ~1 ms for RSA-2048, and a cache-miss
 * mint plus its SecureContext went from 2.5 to 1.7 ms (bench/RESULTS.md, "Levers"). RSA-2048
 * (CA/B BR §6.1.5 minimum) stays available for clients limited to RSA suites (TLS 1.2 stacks
 * without ECDHE-ECDSA): TPROXY_LEAF_KEY=rsa-2048.
 */
export type LeafKeyAlgorithm = 'ecdsa-p256' | 'rsa-2048';
export const DEFAULT_LEAF_KEY_ALGORITHM: LeafKeyAlgorithm = 'ecdsa-p256';
export const LEAF_KEY_ALGORITHMS: readonly LeafKeyAlgorithm[] = ['ecdsa-p256', 'rsa-2048'];

/**
 * The leaf key type for this run: `TPROXY_LEAF_KEY` (ecdsa-p256 | rsa-2048) when set, for clients
 * that need RSA and for benchmarks comparing the two; else the default. An unknown value is an
 * error naming the accepted ones, never a silent fall-back.
 */
export function leafKeyAlgorithmFromEnv(env: NodeJS.ProcessEnv = process.env): LeafKeyAlgorithm {
  const v = env.TPROXY_LEAF_KEY;
  if (v === undefined || v === '') return DEFAULT_LEAF_KEY_ALGORITHM;
  if ((LEAF_KEY_ALGORITHMS as readonly string[]).includes(v)) return v as LeafKeyAlgorithm;
  throw new Error(`TPROXY_LEAF_KEY=${JSON.stringify(v)} is not a leaf key type: use ${LEAF_KEY_ALGORITHMS.join(' or ')}, or unset it`);
}

/** RSA modulus size for the 'rsa-2048' algorithm. */
export const LEAF_KEY_BITS = 2048;

/**
 * ub-common-name is 64 (RFC 5280 Appendix A.1). Like mitmproxy's dummy_cert we only set a CN when
 * the name is shorter; longer names live in the SAN alone, which is all clients check (RFC 6125 §6.4.4).
 */
const MAX_CN_LENGTH = 63;

/** RFC 1035 §2.3.4: 255 octets on the wire = 253 characters in dotted text without the root dot. */
const MAX_HOSTNAME_LENGTH = 253;
/** RFC 1035 §2.3.4: labels are 63 octets or less; letters, digits, hyphen (RFC 1123 §2.1, RFC 5890 A-labels). */
const LABEL = /^[a-z0-9-]{1,63}$/;
/** Everything a host name or IP literal can contain, checked before lower-casing (see canonicalName). */
const PLAUSIBLE = /^[A-Za-z0-9.:-]+$/;

/** A name we are willing to mint for, in its one canonical spelling (also the cache key). */
export interface CanonicalName {
  kind: 'dns' | 'ip';
  /** Lower-case host name without the root dot, or an IP in Node's/WHATWG's normal form. */
  name: string;
}

/**
 * Canonicalises a name a client sent: lower-case, no trailing root dot, IPv6 compressed, IPv4-mapped
 * IPv6 turned into IPv4. Throws CaError 'invalid-name' for wildcards, spaces, empty or over-long
 * names, bad labels, IPv6 zone ids, and any non-ASCII input.
 */
export function canonicalName(input: string): CanonicalName {
  // Reject non-ASCII *before* lower-casing: 'K' (U+212A KELVIN SIGN).toLowerCase() is ASCII 'k',
  // which would let a client make us mint a name it never sent.
  if (typeof input !== 'string' || !PLAUSIBLE.test(input)) throw invalidName(input, 'not a host name or IP literal');
  let name = input.toLowerCase();
  // The root dot is not part of the name (RFC 1034 §3.1); "example.com." and "example.com" are one host.
  if (name.endsWith('.')) name = name.slice(0, -1);

  if (isIPv4(name)) return { kind: 'ip', name };
  if (name.includes(':')) {
    if (!isIPv6(name)) throw invalidName(input, 'not a valid IPv6 address');
    const bytes = ipv6Bytes(name);
    // RFC 4291 §2.5.5.2: ::ffff:a.b.c.d is an IPv4 peer seen through a dual-stack socket; OpenSSL
    // compares IP SANs byte for byte, so the certificate must carry the 4-byte form.
    if (bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) {
      return { kind: 'ip', name: [...bytes.subarray(12)].join('.') };
    }
    return { kind: 'ip', name: new URL(`http://[${name}]/`).hostname.slice(1, -1) };
  }

  if (name.length === 0 || name.length > MAX_HOSTNAME_LENGTH) throw invalidName(input, `length must be 1–${MAX_HOSTNAME_LENGTH}`);
  for (const label of name.split('.')) {
    if (!LABEL.test(label)) throw invalidName(input, 'labels must be 1–63 letters, digits or hyphens');
  }
  return { kind: 'dns', name };
}

/**
 * The name a leaf is minted for: the SNI when the client sent one, else the original destination IP
 * (mitmproxy does the same, so IP-only clients still get a certificate they can match). An invalid
 * SNI is an error, never a silent fall-back to the IP.
 */
export function leafNameFor(target: { sni?: string | null | undefined; ip: string }): CanonicalName {
  return canonicalName(target.sni ? target.sni : target.ip);
}

/** The one key pair every leaf of this daemon run shares (mockttp/mitmproxy do the same: keygen is the slow part). */
export interface LeafKey {
  algorithm: LeafKeyAlgorithm;
  privateKey: KeyObject;
  /** PKCS#8 PEM, handed to tls.createSecureContext. */
  keyPem: string;
  /** DER SubjectPublicKeyInfo (RFC 5280 §4.1.2.7), copied verbatim into each leaf's TBSCertificate. */
  spkiDer: Buffer;
  /**
   * The public half as forge sees it, for code that builds certificates with forge itself (test
   * PKI). RSA only: forge cannot encode EC keys, so it is null for 'ecdsa-p256'.
   */
  publicKey: forge.pki.rsa.PublicKey | null;
}

/** Generates the per-run leaf key with node:crypto (OpenSSL; forge's pure-JS keygen takes seconds). */
export async function createLeafKey(algorithm: LeafKeyAlgorithm = leafKeyAlgorithmFromEnv()): Promise<LeafKey> {
  const { privateKey, publicKey } =
    algorithm === 'rsa-2048'
      ? // F4 exponent, as for the CA (generate.ts).
        await generateKeyPairAsync('rsa', { modulusLength: LEAF_KEY_BITS, publicExponent: 0x10001 })
      : // prime256v1 = secp256r1 = P-256 (RFC 5480 §2.1.1.1), the curve every client supports.
        await generateKeyPairAsync('ec', { namedCurve: 'prime256v1' });
  return {
    algorithm,
    privateKey,
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    spkiDer: publicKey.export({ type: 'spki', format: 'der' }),
    publicKey: algorithm === 'rsa-2048' ? forgePublicKey(publicKey) : null,
  };
}

/** A minted leaf. */
export interface IssuedLeaf {
  name: CanonicalName;
  certPem: string;
  /** The shared leaf key (LeafKey.keyPem), repeated here so callers can build a context from one object. */
  keyPem: string;
  serialHex: string;
  notBefore: Date;
  notAfter: Date;
}

/** Mints a leaf for `name` (canonicalised here; throws CaError 'invalid-name'), valid at `now`. */
export function issueLeaf(ca: CaMaterial, leafKey: LeafKey, name: string, now: Date = new Date()): IssuedLeaf {
  const target = canonicalName(name);
  // Forge holds the names and encodes the extensions; the TBSCertificate around them is built in
  // tbsCertificate() because forge cannot encode an EC SubjectPublicKeyInfo.
  const cert = forge.pki.createCertificate();
  const serialHex = randomSerialHex();
  const notBefore = wholeSeconds(new Date(now.getTime() - CLOCK_SKEW_BACKDATE_MS));
  // Never outlive the CA: a chain is only valid while every certificate in it is (RFC 5280 §6.1.3 (a)(2)).
  const notAfter = wholeSeconds(new Date(Math.min(notBefore.getTime() + LEAF_VALIDITY_MS, ca.notAfter.getTime())));

  const hasSubject = target.name.length <= MAX_CN_LENGTH;
  cert.setSubject(hasSubject ? [utf8Attribute('CN', target.name)] : []);
  cert.setIssuer(ca.issuerAttributes);
  cert.setExtensions([
    // RFC 5280 §4.2.1.9 lets end-entity certs carry CA:FALSE; explicit, critical, as mitmproxy does.
    { name: 'basicConstraints', cA: false, critical: true },
    // digitalSignature for (EC)DHE and TLS 1.3 (RFC 8446 §4.4.2.2), keyEncipherment for TLS 1.2 RSA key
    // exchange (RFC 5246 §7.4.2) and only for RSA keys (an EC key cannot encipher: RFC 5480 §3);
    // SHOULD be critical (RFC 5280 §4.2.1.3).
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: leafKey.algorithm === 'rsa-2048', critical: true },
    // id-kp-serverAuth (RFC 5280 §4.2.1.12); Apple and Chrome require EKU on TLS server certs.
    { name: 'extKeyUsage', serverAuth: true },
    // The name clients actually match (RFC 6125 §6.4); MUST be critical when the subject is empty
    // (RFC 5280 §4.2.1.6). dNSName = 2, iPAddress = 7 with 4 or 16 raw bytes.
    {
      name: 'subjectAltName',
      critical: !hasSubject,
      altNames: [target.kind === 'dns' ? { type: 2, value: target.name } : { type: 7, value: ipBytes(target.name).toString('binary') }],
    },
    // Chain building goes AKI → issuer SKI (RFC 5280 §4.2.1.1). No SKI on the leaf: it is optional
    // for end-entity certs (RFC 5280 §4.2.1.2) and nothing chains to a leaf.
    { name: 'authorityKeyIdentifier', keyIdentifier: ca.subjectKeyIdentifier },
  ]);

  const tbs = tbsCertificate(cert, serialHex, notBefore, notAfter, leafKey.spkiDer);
  const certPem = signedCertificatePem(tbs, ca.privateKey);
  return { name: target, certPem, keyPem: leafKey.keyPem, serialHex, notBefore, notAfter };
}

const { asn1 } = forge;
// Present in node-forge's lib/x509.js but missing from @types/node-forge.
const extensionsToAsn1 = (forge.pki as unknown as { certificateExtensionsToAsn1(exts: unknown[]): forge.asn1.Asn1 }).certificateExtensionsToAsn1;
const UTC_TIME_RANGE: [number, number] = [Date.UTC(1950, 0, 1), Date.UTC(2050, 0, 1)];

/** Time as RFC 5280 §4.1.2.5 wants it: UTCTime for 1950–2049, GeneralizedTime otherwise. */
function timeAsn1(date: Date): forge.asn1.Asn1 {
  const t = date.getTime();
  return t >= UTC_TIME_RANGE[0] && t < UTC_TIME_RANGE[1]
    ? asn1.create(asn1.Class.UNIVERSAL, asn1.Type.UTCTIME, false, asn1.dateToUtcTime(date))
    : asn1.create(asn1.Class.UNIVERSAL, asn1.Type.GENERALIZEDTIME, false, asn1.dateToGeneralizedTime(date));
}

/** sha256WithRSAEncryption AlgorithmIdentifier: the OID with NULL parameters (RFC 4055 §5). */
function rsaSha256AlgorithmId(): forge.asn1.Asn1 {
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OID, false, asn1.oidToDer(SHA256_WITH_RSA_OID).getBytes()),
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.NULL, false, ''),
  ]);
}

/**
 * DER TBSCertificate (RFC 5280 §4.1) with the subject, issuer and extensions forge holds in `cert`
 * and `spkiDer` as SubjectPublicKeyInfo, byte for byte as OpenSSL exported it. The same fields in
 * the same order as forge's getTBSCertificate, which can only encode RSA keys.
 */
function tbsCertificate(cert: forge.pki.Certificate, serialHex: string, notBefore: Date, notAfter: Date, spkiDer: Buffer): forge.asn1.Asn1 {
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    // [0] EXPLICIT version: v3 (value 2), required for extensions (RFC 5280 §4.1.2.1).
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, [asn1.create(asn1.Class.UNIVERSAL, asn1.Type.INTEGER, false, asn1.integerToDer(2).getBytes())]),
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.INTEGER, false, forge.util.hexToBytes(serialHex)),
    // Must equal the outer signatureAlgorithm (RFC 5280 §4.1.2.3).
    rsaSha256AlgorithmId(),
    forge.pki.distinguishedNameToAsn1(cert.issuer),
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [timeAsn1(notBefore), timeAsn1(notAfter)]),
    forge.pki.distinguishedNameToAsn1(cert.subject),
    asn1.fromDer(forge.util.createBuffer(spkiDer.toString('binary'))),
    extensionsToAsn1(cert.extensions as unknown[]),
  ]);
}

/**
 * Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue } (RFC 5280 §4.1),
 * signed by the (RSA) CA key with OpenSSL: PKCS#1 v1.5 + SHA-256 is what crypto.sign does with an
 * RSA key and no padding option (RFC 8017 §8.2). PEM with LF line breaks, as x509.ts writes.
 */
function signedCertificatePem(tbs: forge.asn1.Asn1, caKey: KeyObject): string {
  if (caKey.asymmetricKeyType !== 'rsa') {
    throw new CaError('ca-corrupt', `signing a leaf: CA key is ${caKey.asymmetricKeyType ?? 'not asymmetric'}, expected RSA`);
  }
  const signature = sign('sha256', Buffer.from(asn1.toDer(tbs).getBytes(), 'binary'), caKey);
  const certAsn1 = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    tbs,
    rsaSha256AlgorithmId(),
    // BIT STRING: a leading 0x00 = no unused bits in the last octet (X.690 §8.6.2.2).
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.BITSTRING, false, `\0${signature.toString('binary')}`),
  ]);
  const der = Buffer.from(asn1.toDer(certAsn1).getBytes(), 'binary');
  const body = der.toString('base64').replace(/.{64}/g, '$&\n');
  return `-----BEGIN CERTIFICATE-----\n${body}${body.endsWith('\n') ? '' : '\n'}-----END CERTIFICATE-----\n`;
}

function invalidName(input: unknown, why: string): CaError {
  const shown = typeof input === 'string' ? JSON.stringify(input.length > 80 ? `${input.slice(0, 80)}…` : input) : String(input);
  return new CaError('invalid-name', `refusing to mint a certificate for ${shown}: ${why}`);
}

/** Network-order bytes of a canonical IPv4 or IPv6 address (as canonicalName returns). */
function ipBytes(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  return ipv6Bytes(ip);
}

/**
 * 16 bytes of an IPv6 address that isIPv6 accepted. Forge's own parser (util.bytesFromIPv6)
 * mis-sizes "::" runs and ignores dotted-quad tails, so we parse here after URL normalisation,
 * which rewrites any dotted-quad tail to hex groups.
 */
function ipv6Bytes(ip: string): Buffer {
  const normal = new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  const [head = '', tail] = normal.split('::');
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const zeros = tail === undefined ? 0 : 8 - headGroups.length - tailGroups.length;
  const groups = [...headGroups, ...new Array<string>(zeros).fill('0'), ...tailGroups];
  const bytes = Buffer.alloc(16);
  groups.forEach((g, i) => bytes.writeUInt16BE(parseInt(g, 16), i * 2));
  return bytes;
}
