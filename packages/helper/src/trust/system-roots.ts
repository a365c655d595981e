/**
 * The distribution's CA bundle as installed, for verifying UPSTREAM servers: Node's built-in root
 * list (tls.rootCertificates) is Mozilla's as of the Node release, not what the administrator
 * trusts. Bundle paths are tried in Go's crypto/x509 root_linux.go order; the bundle is split into
 * single PEM certificates and our own CA — which the trust store contains while capture runs — is
 * dropped, so a certificate we minted can never pass as a real server's. Read-only: it must not
 * modify the bundle or the trust store (linux.ts does installs).
 */
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { TrustStoreError } from './errors.js';

/** Go's crypto/x509 root_linux.go certFiles, same order. */
export const SYSTEM_ROOT_BUNDLES: readonly string[] = [
  '/etc/ssl/certs/ca-certificates.crt', // Debian/Ubuntu/Gentoo etc.
  '/etc/pki/tls/certs/ca-bundle.crt', // Fedora/RHEL 6
  '/etc/ssl/ca-bundle.pem', // OpenSUSE
  '/etc/pki/tls/cacert.pem', // OpenELEC
  '/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem', // CentOS/RHEL 7
  '/etc/ssl/cert.pem', // Alpine Linux
];

export interface LoadSystemRootsOptions {
  /**
   * Certificates to leave out — our CA above all. Each entry is a PEM certificate or a SHA-256
   * fingerprint (hex, with or without ':' separators, any case).
   */
  exclude?: readonly string[];
  /** Bundle paths to try, first usable wins. Default SYSTEM_ROOT_BUNDLES. */
  paths?: readonly string[];
}

export interface SystemRoots {
  /** The bundle file that was used. */
  path: string;
  /** One PEM certificate per entry, ready for tls.connect({ ca }). */
  pems: string[];
  /** How many certificates `exclude` removed. */
  excluded: number;
  /** How many PEM blocks in the bundle did not parse and were left out (Go's AppendCertsFromPEM skips them too). */
  skipped: number;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** The PEM certificate blocks in `text`, in order, with LF line breaks and a final newline. Other blocks are ignored. */
export function splitPemBundle(text: string): string[] {
  return (text.match(PEM_CERT) ?? []).map((block) => `${block.replace(/\r\n/g, '\n')}\n`);
}

/**
 * Loads the first bundle in `paths` that is readable and holds at least one certificate, minus
 * `exclude`. Throws TrustStoreError 'no-system-roots' when there is none, and 'invalid-argument'
 * when an exclude entry cannot be understood (failing open there could trust our own CA upstream).
 */
export async function loadSystemRoots(options: LoadSystemRootsOptions = {}): Promise<SystemRoots> {
  const paths = options.paths ?? SYSTEM_ROOT_BUNDLES;
  const drop = new Set((options.exclude ?? []).map(fingerprintOf));
  const tried: string[] = [];

  for (const path of paths) {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      tried.push(`${path} (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`);
      continue;
    }
    const blocks = splitPemBundle(text);
    if (blocks.length === 0) {
      tried.push(`${path} (no certificates)`);
      continue;
    }
    const pems: string[] = [];
    let excluded = 0;
    let skipped = 0;
    for (const pem of blocks) {
      let fingerprint: string;
      try {
        fingerprint = normalizeFingerprint(new X509Certificate(pem).fingerprint256);
      } catch {
        skipped++;
        continue;
      }
      if (drop.has(fingerprint)) excluded++;
      else pems.push(pem);
    }
    return { path, pems, excluded, skipped };
  }
  throw new TrustStoreError(
    'no-system-roots',
    `loading the system CA bundle to verify upstream servers: none usable: ${tried.join(', ')}; install the distribution's ca-certificates package`,
  );
}

/** Normalised SHA-256 fingerprint (64 upper-case hex digits) of an exclude entry. */
function fingerprintOf(entry: string): string {
  if (entry.includes('-----BEGIN')) {
    try {
      return normalizeFingerprint(new X509Certificate(entry).fingerprint256);
    } catch (err) {
      throw new TrustStoreError('invalid-argument', `loading the system CA bundle: a certificate to exclude does not parse: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }
  const hex = normalizeFingerprint(entry);
  if (!/^[0-9A-F]{64}$/.test(hex)) {
    throw new TrustStoreError('invalid-argument', `loading the system CA bundle: ${JSON.stringify(entry)} is neither a PEM certificate nor a SHA-256 fingerprint`);
  }
  return hex;
}

function normalizeFingerprint(fp: string): string {
  return fp.replace(/[:\s]/g, '').toUpperCase();
}
