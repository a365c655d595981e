/**
 * Test PKI for the upstream servers: a throwaway "TEST UPSTREAM CA", a "good" server certificate
 * it signs (upstream.test plus the good upstream's IPs) and a "bad" self-signed certificate for
 * the same name that no store trusts. Everything is written into a directory the caller owns
 * (normally a mkdtemp dir); nothing here touches a trust store. The helper under test must trust
 * the test CA to reach the good upstream, and must refuse the bad one.
 *
 * Keys come from node:crypto (fast, native) and are imported into node-forge only to build and
 * sign the X.509 structures.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import forge from 'node-forge';
import { ADDRS, UPSTREAM_NAME } from './topology.js';

export interface UpstreamCerts {
  dir: string;
  /** PEM file of the test upstream CA: what `curl --cacert` and the helper's upstream trust need. */
  caCert: string;
  caKey: string;
  /** Good server: signed by the CA; SANs DNS upstream.test, IP 198.18.0.2, IP fd00:198:18::2. */
  goodCert: string;
  goodKey: string;
  /** Bad server: self-signed for upstream.test (+ the bad upstream's IPs, so only trust fails). */
  badCert: string;
  badKey: string;
  /** The CA certificate as PEM text. */
  caPem: string;
}

const DAY_MS = 24 * 60 * 60 * 1000;
/** Backdate notBefore so clock skew between namespaces/hosts never makes a cert "not yet valid". */
const BACKDATE_MS = DAY_MS;
/** Test certificates live for one test run; a week is plenty and stays far below any CA/B limit. */
const LIFETIME_MS = 7 * DAY_MS;

interface KeyPair {
  privateKey: forge.pki.rsa.PrivateKey;
  publicKey: forge.pki.rsa.PublicKey;
  pem: string;
}

function newKey(): KeyPair {
  // RSA 2048: the smallest size every TLS stack (OpenSSL security level 2) accepts.
  const { privateKey: pem } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  const privateKey = forge.pki.privateKeyFromPem(pem) as forge.pki.rsa.PrivateKey;
  const publicKey = forge.pki.setRsaPublicKey(privateKey.n, privateKey.e);
  return { privateKey, publicKey, pem };
}

/** Random positive serial of 16 bytes (RFC 5280 4.1.2.2: positive, at most 20 octets). */
function serial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return bytes.toString('hex');
}

function baseCert(publicKey: forge.pki.rsa.PublicKey, subjectCn: string): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  cert.serialNumber = serial();
  const now = Date.now();
  cert.validity.notBefore = new Date(now - BACKDATE_MS);
  cert.validity.notAfter = new Date(now + LIFETIME_MS);
  cert.setSubject([{ name: 'commonName', value: subjectCn }]);
  return cert;
}

function serverExtensions(dnsNames: readonly string[], ips: readonly string[]): object[] {
  return [
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    // Type 2 = dNSName, 7 = iPAddress (RFC 5280 4.2.1.6); forge encodes v4 and v6 addresses.
    { name: 'subjectAltName', altNames: [...dnsNames.map((value) => ({ type: 2, value })), ...ips.map((ip) => ({ type: 7, ip }))] },
  ];
}

/** Creates the test CA and both server certificates in `dir` (keys mode 0600). */
export async function makeUpstreamCa(dir: string): Promise<UpstreamCerts> {
  const caKeys = newKey();
  const ca = baseCert(caKeys.publicKey, `tproxy e2e TEST UPSTREAM CA ${randomBytes(4).toString('hex')}`);
  ca.setIssuer(ca.subject.attributes);
  ca.setExtensions([
    // pathLen 0: it signs leaves only (RFC 5280 4.2.1.9).
    { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  ca.sign(caKeys.privateKey, forge.md.sha256.create());
  const caSki = ca.generateSubjectKeyIdentifier().getBytes();

  const goodKeys = newKey();
  const good = baseCert(goodKeys.publicKey, UPSTREAM_NAME);
  good.setIssuer(ca.subject.attributes);
  good.setExtensions([
    ...serverExtensions([UPSTREAM_NAME], [ADDRS.good4, ADDRS.good6]),
    // AKI = issuer's SKI so OpenSSL chain building matches by key id (RFC 5280 4.2.1.1).
    { name: 'authorityKeyIdentifier', keyIdentifier: caSki },
  ]);
  good.sign(caKeys.privateKey, forge.md.sha256.create());

  const badKeys = newKey();
  const bad = baseCert(badKeys.publicKey, UPSTREAM_NAME);
  bad.setIssuer(bad.subject.attributes);
  bad.setExtensions(serverExtensions([UPSTREAM_NAME], [ADDRS.bad4, ADDRS.bad6]));
  bad.sign(badKeys.privateKey, forge.md.sha256.create());

  const paths: UpstreamCerts = {
    dir,
    caCert: join(dir, 'upstream-ca.pem'),
    caKey: join(dir, 'upstream-ca-key.pem'),
    goodCert: join(dir, 'good.pem'),
    goodKey: join(dir, 'good-key.pem'),
    badCert: join(dir, 'bad.pem'),
    badKey: join(dir, 'bad-key.pem'),
    caPem: forge.pki.certificateToPem(ca),
  };
  await writeFile(paths.caCert, paths.caPem);
  await writeFile(paths.caKey, caKeys.pem, { mode: 0o600 });
  await writeFile(paths.goodCert, forge.pki.certificateToPem(good));
  await writeFile(paths.goodKey, goodKeys.pem, { mode: 0o600 });
  await writeFile(paths.badCert, forge.pki.certificateToPem(bad));
  await writeFile(paths.badKey, badKeys.pem, { mode: 0o600 });
  return paths;
}

/** The kinds of broken upstream certificate the helper must refuse (upstream-verify.test.ts). */
export type BadCertKind = 'expired' | 'not-yet-valid' | 'wrong-name' | 'untrusted-ca' | 'cn-only';

/** PEM file paths of one broken certificate and its key. */
export interface BadCertFiles {
  cert: string;
  key: string;
}

/**
 * One certificate per BadCertKind for upstream.test, each wrong in exactly that one way: signed by
 * the test CA (so only the named defect fails) except `untrusted-ca`, signed by a second CA that
 * nobody trusts. Written next to the others in `certs.dir`.
 */
export async function makeBadCerts(certs: UpstreamCerts): Promise<Record<BadCertKind, BadCertFiles>> {
  const { readFile } = await import('node:fs/promises');
  const caCert = forge.pki.certificateFromPem(await readFile(certs.caCert, 'utf8'));
  const caKey = forge.pki.privateKeyFromPem(await readFile(certs.caKey, 'utf8'));
  const otherKeys = newKey();
  const other = baseCert(otherKeys.publicKey, `tproxy e2e UNTRUSTED CA ${randomBytes(4).toString('hex')}`);
  other.setIssuer(other.subject.attributes);
  other.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
  ]);
  other.sign(otherKeys.privateKey, forge.md.sha256.create());
  const now = Date.now();
  const specs: Record<BadCertKind, { names: string[]; ips: string[]; notBefore?: Date; notAfter?: Date; untrusted?: boolean; noSan?: boolean }> = {
    expired: { names: [UPSTREAM_NAME], ips: [ADDRS.good4], notBefore: new Date(now - 30 * DAY_MS), notAfter: new Date(now - 2 * DAY_MS) },
    'not-yet-valid': { names: [UPSTREAM_NAME], ips: [ADDRS.good4], notBefore: new Date(now + 2 * DAY_MS), notAfter: new Date(now + 30 * DAY_MS) },
    'wrong-name': { names: ['other.test'], ips: [] },
    'untrusted-ca': { names: [UPSTREAM_NAME], ips: [ADDRS.good4], untrusted: true },
    'cn-only': { names: [], ips: [], noSan: true },
  };
  const out = {} as Record<BadCertKind, BadCertFiles>;
  for (const [kind, spec] of Object.entries(specs) as [BadCertKind, (typeof specs)[BadCertKind]][]) {
    const keys = newKey();
    const cert = baseCert(keys.publicKey, UPSTREAM_NAME);
    if (spec.notBefore) cert.validity.notBefore = spec.notBefore;
    if (spec.notAfter) cert.validity.notAfter = spec.notAfter;
    cert.setIssuer((spec.untrusted ? other : caCert).subject.attributes);
    const ext = serverExtensions(spec.names, spec.ips);
    cert.setExtensions(spec.noSan ? ext.slice(0, 3) : ext);
    cert.sign(spec.untrusted ? otherKeys.privateKey : (caKey as forge.pki.rsa.PrivateKey), forge.md.sha256.create());
    const files = { cert: join(certs.dir, `bad-${kind}.pem`), key: join(certs.dir, `bad-${kind}-key.pem`) };
    await writeFile(files.cert, forge.pki.certificateToPem(cert));
    await writeFile(files.key, keys.pem, { mode: 0o600 });
    out[kind] = files;
  }
  return out;
}
