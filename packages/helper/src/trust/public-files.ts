/**
 * The world-readable trust files for runtimes that keep their own roots instead of reading the OS
 * trust store (Node, Python requests, curl/git built against another bundle): `ca.pem` (our CA
 * certificate alone) and `bundle.pem` (the distribution's roots as installed, then our CA), both
 * 0644, plus the environment that points those runtimes at them.
 *
 * They live in the runtime directory next to the socket (/run/tproxy, 0755), not in the state dir:
 * the state dir is 0700 and holds the key, so nothing under it is reachable by other users. Only
 * the public certificate is written here, never the key. Writes are atomic (temp + rename) so a
 * reader never sees half a bundle; they are redone only when the CA or a system bundle file changed
 * (fingerprint and stat, cheap on every ca.get). The helper's shutdown and --cleanup remove them.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import { TrustStoreError, isTrustStoreError } from './errors.js';
import { exists } from './linux.js';
import { SYSTEM_ROOT_BUNDLES, loadSystemRoots } from './system-roots.js';

export const PUBLIC_CA_FILE = 'ca.pem';
export const PUBLIC_BUNDLE_FILE = 'bundle.pem';
/** Readable by every user: these are public certificates. */
export const PUBLIC_FILE_MODE = 0o644;

/** Variables that REPLACE the runtime's roots, so they need the whole bundle. */
export const BUNDLE_ENV_VARS = ['SSL_CERT_FILE', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE', 'GIT_SSL_CAINFO'] as const;
/** Node ADDS NODE_EXTRA_CA_CERTS to its built-in roots, so it needs only our CA. */
export const CA_ENV_VARS = ['NODE_EXTRA_CA_CERTS'] as const;

export interface PublicTrust {
  caPath: string;
  bundlePath: string;
  env: Record<string, string>;
}

export interface PublicTrustOptions {
  /** Where the files go: a directory every user can traverse (the socket's directory). */
  dir: string;
  /** System bundles to read, first usable wins. Default SYSTEM_ROOT_BUNDLES. */
  systemBundles?: readonly string[];
  log: Logger;
}

/** The CA as this module needs it: the public certificate only. */
export interface PublicCa {
  certPem: string;
  fingerprintSha256: string;
}

export class PublicTrustFiles {
  readonly caPath: string;
  readonly bundlePath: string;
  /** What the files on disk were built from (CA fingerprint + system bundle stats), or null. */
  private writtenFrom: string | null = null;
  /** Serialises writes so two ca.get calls do not race on the same files. */
  private busy: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: PublicTrustOptions) {
    this.caPath = join(opts.dir, PUBLIC_CA_FILE);
    this.bundlePath = join(opts.dir, PUBLIC_BUNDLE_FILE);
  }

  /** The environment naming the two files. */
  env(): Record<string, string> {
    const env: Record<string, string> = {};
    for (const name of BUNDLE_ENV_VARS) env[name] = this.bundlePath;
    for (const name of CA_ENV_VARS) env[name] = this.caPath;
    return env;
  }

  /** Writes the files unless they exist and were built from this CA and the current system bundle. */
  ensure(ca: PublicCa): Promise<PublicTrust> {
    const next = this.busy.then(async () => {
      const inputs = await this.inputs(ca);
      if (inputs !== this.writtenFrom || !(await exists(this.caPath)) || !(await exists(this.bundlePath))) {
        await this.write(ca);
        this.writtenFrom = inputs;
      }
      return { caPath: this.caPath, bundlePath: this.bundlePath, env: this.env() };
    });
    this.busy = next.catch(() => undefined);
    return next;
  }

  /** Removes both files; returns what was removed (for the cleanup log). */
  async remove(): Promise<string[]> {
    await this.busy;
    this.writtenFrom = null;
    const removed: string[] = [];
    for (const path of [this.caPath, this.bundlePath]) {
      try {
        await unlink(path);
        removed.push(`public trust file ${path}`);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
    return removed;
  }

  /** A cheap summary of everything the files depend on: our CA and each candidate system bundle's stat. */
  private async inputs(ca: PublicCa): Promise<string> {
    const parts = [ca.fingerprintSha256];
    for (const path of this.opts.systemBundles ?? SYSTEM_ROOT_BUNDLES) {
      try {
        const s = await stat(path);
        parts.push(`${path}:${s.ino}:${s.size}:${s.mtimeMs}`);
      } catch {
        parts.push(`${path}:-`);
      }
    }
    return parts.join('\n');
  }

  private async write(ca: PublicCa): Promise<void> {
    const { log } = this.opts;
    const ours = ca.certPem.endsWith('\n') ? ca.certPem : `${ca.certPem}\n`;
    let roots: string[] = [];
    try {
      // exclude: the trust store holds our CA while capture runs; it goes last, once.
      const loaded = await loadSystemRoots({ exclude: [ca.certPem], ...(this.opts.systemBundles ? { paths: this.opts.systemBundles } : {}) });
      const seen = new Set<string>();
      roots = loaded.pems.filter((pem) => {
        const key = pem.replace(/\s/g, '');
        if (seen.has(key)) return false;
        seen.add(key);
        return true;
      });
      log.info(`writing ${this.bundlePath}: ${roots.length} roots from ${loaded.path} plus our CA`);
    } catch (err) {
      if (!isTrustStoreError(err, 'no-system-roots')) throw err;
      log.warn(`writing ${this.bundlePath}: no system CA bundle found, so it holds only our CA (${err.message})`);
    }
    await mkdir(this.opts.dir, { recursive: true, mode: 0o755 });
    await writeAtomic(this.caPath, ours);
    await writeAtomic(this.bundlePath, [...roots, ours].join(''));
  }
}

/** `data` at `path`, mode exactly 0644, via a fresh temp file ('wx': never a planted one) and rename(2). */
async function writeAtomic(path: string, data: string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    const fh = await open(tmp, 'wx', PUBLIC_FILE_MODE);
    try {
      await fh.chmod(PUBLIC_FILE_MODE); // the umask may have narrowed the creation mode
      await fh.writeFile(data, 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw new TrustStoreError('io', `writing the public trust file ${path}: ${(err as Error).message}`, { cause: err });
  }
}
