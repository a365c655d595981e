/**
 * The demo site's PKI, made with the `openssl` command line (the client package carries no X.509
 * library): a throwaway "tproxy demo site CA" and one server certificate it signs for every demo
 * name and the site's addresses. tproxy-helper is started with `--upstream-ca <that CA>` so its
 * upstream leg trusts the site; nothing here touches any trust store. Everything is written into a
 * directory the caller owns (the demo's 0700 temp dir). Argument lists and the config file are pure
 * functions so tests check them without running anything; openssl runs by argv, never a shell.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DEMO_ADDRS, DEMO_HOSTS } from './network.js';

const execFileP = promisify(execFile);

/** subjectAltName of the site certificate: every demo name plus the site's own addresses. */
export const SITE_SANS: readonly string[] = [
  `DNS:${DEMO_HOSTS.shop}`,
  `DNS:${DEMO_HOSTS.api}`,
  `DNS:${DEMO_HOSTS.events}`,
  `IP:${DEMO_ADDRS.site4}`,
  `IP:${DEMO_ADDRS.site6}`,
];

/**
 * Lifetime in days. The certificates live as long as one demo run (they are regenerated every
 * time); 30 days keeps a long-running demo valid. No backdating is needed: every namespace shares
 * the host kernel's clock, so there is no skew between the site and tproxy-helper.
 */
export const CERT_DAYS = 30;

export interface DemoCertPaths {
  dir: string;
  /** openssl config with the extension sections below (written by makeDemoCerts). */
  config: string;
  /** The demo site CA certificate (PEM): what tproxy-helper's --upstream-ca needs. */
  caCert: string;
  caKey: string;
  csr: string;
  /** The site's certificate and key (PEM). */
  siteCert: string;
  siteKey: string;
}

export function demoCertPaths(dir: string): DemoCertPaths {
  return {
    dir,
    config: join(dir, 'openssl.cnf'),
    caCert: join(dir, 'site-ca.pem'),
    caKey: join(dir, 'site-ca-key.pem'),
    csr: join(dir, 'site.csr'),
    siteCert: join(dir, 'site.pem'),
    siteKey: join(dir, 'site-key.pem'),
  };
}

/**
 * Our own config file, so the result never depends on the machine's openssl.cnf. `[req]` only
 * exists because `openssl req` insists on a distinguished_name section even when -subj is given.
 */
export function opensslConfig(sans: readonly string[] = SITE_SANS): string {
  return [
    '[req]',
    'distinguished_name = dn',
    'prompt = no',
    '[dn]',
    'CN = unused',
    '[ca_ext]',
    // pathlen 0: it signs leaves only (RFC 5280 4.2.1.9); keyCertSign + cRLSign is a CA's usage (4.2.1.3).
    'basicConstraints = critical, CA:TRUE, pathlen:0',
    'keyUsage = critical, keyCertSign, cRLSign',
    'subjectKeyIdentifier = hash',
    '[server_ext]',
    'basicConstraints = critical, CA:FALSE',
    // ECDSA keys only sign (RFC 8813 3: keyEncipherment does not apply to EC keys).
    'keyUsage = critical, digitalSignature',
    'extendedKeyUsage = serverAuth',
    `subjectAltName = ${sans.join(', ')}`,
    'subjectKeyIdentifier = hash',
    // AKI = the CA's SKI so chain building matches by key id (RFC 5280 4.2.1.1).
    'authorityKeyIdentifier = keyid',
    '',
  ].join('\n');
}

/** Positive random serial as openssl's `-set_serial 0x...` (RFC 5280 4.1.2.2: positive, ≤ 20 octets). */
export function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return `0x${bytes.toString('hex')}`;
}

/**
 * The three openssl invocations, in order: self-signed CA, server key + CSR, CA-signed server
 * certificate. P-256 keys: generated in milliseconds and accepted by every TLS stack.
 */
export function opensslCommands(
  p: DemoCertPaths,
  opts: { caSerial: string; siteSerial: string; caName: string } = {
    caSerial: randomSerial(),
    siteSerial: randomSerial(),
    caName: `tproxy demo site CA ${randomBytes(4).toString('hex')}`,
  },
): string[][] {
  const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  return [
    ['openssl', 'req', '-x509', '-new', '-config', p.config, '-extensions', 'ca_ext', ...newKey,
      '-keyout', p.caKey, '-out', p.caCert, '-days', String(CERT_DAYS), '-subj', `/CN=${opts.caName}`, '-set_serial', opts.caSerial],
    ['openssl', 'req', '-new', '-config', p.config, ...newKey, '-keyout', p.siteKey, '-out', p.csr, '-subj', `/CN=${DEMO_HOSTS.shop}`],
    ['openssl', 'x509', '-req', '-in', p.csr, '-CA', p.caCert, '-CAkey', p.caKey, '-set_serial', opts.siteSerial,
      '-days', String(CERT_DAYS), '-extfile', p.config, '-extensions', 'server_ext', '-out', p.siteCert],
  ];
}

/** Writes the config and runs openssl; rejects with the failing command and its stderr. */
export async function makeDemoCerts(dir: string): Promise<DemoCertPaths> {
  const paths = demoCertPaths(dir);
  await writeFile(paths.config, opensslConfig());
  for (const [file, ...args] of opensslCommands(paths)) {
    try {
      await execFileP(file as string, args, { timeout: 30_000 });
    } catch (err) {
      const e = err as { stderr?: string; message: string; code?: string };
      if (e.code === 'ENOENT') throw new Error('the demo needs the openssl command line tool (apt-get install openssl)');
      throw new Error(`making the demo site certificate: ${file} ${args.join(' ')}: ${e.stderr?.trim() || e.message}`);
    }
  }
  return paths;
}
