/**
 * X.509 plumbing shared by the CA and its leaves: serial numbers, clock-skew backdating, name
 * attributes, and signing. Forge builds the TBSCertificate; node:crypto (OpenSSL) signs its DER;
 * forge assembles the final Certificate around that signature. Forge's pure-JS RSA private-key
 * operation costs ~30 ms per signature, OpenSSL's well under 1 ms, and that is what keeps a
 * cache-miss leaf mint within its 5 ms budget. This module owns the signature algorithm; it must
 * not decide certificate content (names, extensions, validity) — generate.ts and leaf.ts do.
 */
import { randomBytes, sign, type KeyObject } from 'node:crypto';
import forge from 'node-forge';
import { CaError } from './errors.js';

/** sha256WithRSAEncryption (RFC 4055 §5 / RFC 5754 §3.2): PKCS#1 v1.5 + SHA-256, accepted by every TLS client. */
export const SHA256_WITH_RSA_OID = forge.pki.oids.sha256WithRSAEncryption!;

/**
 * How far notBefore is pushed into the past, for clients whose clock runs behind ours
 * (mitmproxy and mkcert backdate too; RFC 5280 §4.1.2.5 lets notBefore be any past time).
 */
export const CLOCK_SKEW_BACKDATE_MS = 2 * 24 * 3600 * 1000;

/** Serial length in bytes: ≤ 20 octets (RFC 5280 §4.1.2.2), ≥ 64 bits of entropy (CA/B Forum BR §7.1). */
const SERIAL_BYTES = 16;

/**
 * A random positive serial as lower-case hex. The first byte is forced into 0x40–0x7f: the high bit
 * clear keeps the INTEGER positive (RFC 5280 §4.1.2.2) and a non-zero first byte keeps the DER
 * encoding minimal (X.690 §8.3.2), which forge would otherwise not enforce. 127 random bits remain.
 */
export function randomSerialHex(): string {
  const bytes = randomBytes(SERIAL_BYTES);
  bytes[0] = (bytes[0]! & 0x3f) | 0x40;
  return bytes.toString('hex');
}

/** Truncates to whole seconds: UTCTime/GeneralizedTime carry no fraction (RFC 5280 §4.1.2.5.1). */
export function wholeSeconds(date: Date): Date {
  return new Date(Math.floor(date.getTime() / 1000) * 1000);
}

/**
 * A subject attribute encoded as UTF8String, which RFC 5280 §4.1.2.4 asks for; forge's default,
 * PrintableString, cannot carry '_' or '@' that host names in the CA's CN may contain.
 */
export function utf8Attribute(shortName: 'CN' | 'O' | 'OU', value: string): forge.pki.CertificateField {
  return { shortName, value, valueTagClass: forge.asn1.Type.UTF8 as unknown as forge.asn1.Class };
}

/** The forge (pure-JS) view of an RSA public key held by node:crypto, for SubjectPublicKeyInfo. */
export function forgePublicKey(publicKey: KeyObject): forge.pki.rsa.PublicKey {
  return forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString());
}

// Present in node-forge's lib/x509.js but missing from @types/node-forge.
const getTbsCertificate = (forge.pki as unknown as { getTBSCertificate(cert: forge.pki.Certificate): forge.asn1.Asn1 })
  .getTBSCertificate;

/**
 * Signs `cert` with `issuerKey` (an RSA private key) and returns the certificate as PEM. Does what
 * forge's `cert.sign(key, sha256)` does — algorithm OID in both the TBS and the outer
 * AlgorithmIdentifier (RFC 5280 §4.1.1.2 requires them equal), TBS cached on the cert so
 * `certificateToAsn1` reuses the exact bytes that were signed — except the signature itself,
 * which comes from OpenSSL.
 */
export function signCertificate(cert: forge.pki.Certificate, issuerKey: KeyObject): string {
  if (issuerKey.asymmetricKeyType !== 'rsa') {
    throw new CaError('ca-corrupt', `signing a certificate: issuer key is ${issuerKey.asymmetricKeyType ?? 'not asymmetric'}, expected RSA`);
  }
  cert.siginfo.algorithmOid = SHA256_WITH_RSA_OID;
  cert.signatureOid = SHA256_WITH_RSA_OID;
  const tbs = getTbsCertificate(cert);
  const tbsDer = Buffer.from(forge.asn1.toDer(tbs).getBytes(), 'binary');
  // crypto.sign with an RSA key and no padding option is RSASSA-PKCS1-v1_5 (RFC 8017 §8.2), the
  // scheme sha256WithRSAEncryption names.
  const signature = sign('sha256', tbsDer, issuerKey);
  cert.tbsCertificate = tbs;
  cert.signature = signature.toString('binary');
  // Forge writes CRLF line breaks; Debian's update-ca-certificates copies anchors verbatim into
  // ca-certificates.crt, and LF is what every other PEM on a Linux system uses.
  return forge.pki.certificateToPem(cert).replace(/\r\n/g, '\n');
}
