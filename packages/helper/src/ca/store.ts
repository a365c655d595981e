/**
 * Keeps the CA on disk like a secret: `<stateDir>/ca-key.pem` (0600) and `<stateDir>/ca-cert.pem`
 * (0644) in a 0700 directory, normally systemd's StateDirectory=. Loads and reuses the pair across
 * restarts; creates a new one when it is missing, unreadable as a CA, not yet valid, or within 48 h
 * of expiry. Writes are atomic (temp file + rename) so a crash never leaves half a key. This is the
 * only ca/ module that touches the file system; it must not touch trust stores (trust/ does that
 * with the serial it returns).
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { silentLogger, type Logger } from '../log.js';
import { CaError, isCaError, messageOf } from './errors.js';
import { generateCa } from './generate.js';
import { caMaterialFromPem, type CaMaterial } from './material.js';

export const CA_CERT_FILE = 'ca-cert.pem';
export const CA_KEY_FILE = 'ca-key.pem';

/** Only root reads the CA directory and key (mitmproxy's umask_secret, mkcert's 0400 key). */
const DIR_MODE = 0o700;
const KEY_MODE = 0o600;
/** The certificate is public; users copy it to install it elsewhere. */
const CERT_MODE = 0o644;

/**
 * Regenerate this long before notAfter, so a long-running capture never serves leaves from a CA
 * that expires mid-session (leaf lifetime is clamped to the CA's notAfter anyway).
 */
export const CA_RENEW_BEFORE_MS = 48 * 3600 * 1000;

export interface LoadOrCreateCaOptions {
  /** The current time, injectable for expiry tests. */
  now?: Date;
  log?: Logger;
  /** CN for a newly created CA; defaults to caUniqueName(). */
  commonName?: string;
}

/** A CA as the store hands it out: the material plus where it lives and whether it was just made. */
export interface StoredCa extends CaMaterial {
  /** 'created' means any previously installed CA is stale and should be uninstalled by serial. */
  origin: 'loaded' | 'created';
  certPath: string;
  keyPath: string;
}

/** Loads the CA from `stateDir`, or creates and persists a new one (see module comment for when). */
export async function loadOrCreateCa(stateDir: string, options: LoadOrCreateCaOptions = {}): Promise<StoredCa> {
  const now = options.now ?? new Date();
  const log = options.log ?? silentLogger;
  const certPath = join(stateDir, CA_CERT_FILE);
  const keyPath = join(stateDir, CA_KEY_FILE);

  await io(`creating the CA directory ${stateDir}`, async () => {
    await mkdir(stateDir, { recursive: true, mode: DIR_MODE });
    // mkdir's mode does not apply to a directory that already existed (StateDirectory= defaults to 0755).
    await chmod(stateDir, DIR_MODE);
  });

  const existing = await readPair(certPath, keyPath);
  if (existing) {
    let why: string | null = null;
    try {
      const ca = caMaterialFromPem(existing.certPem, existing.keyPem);
      why = staleReason(ca, now);
      if (why === null) {
        await enforceKeyMode(keyPath, log);
        log.info(`using CA ${ca.subject} (serial ${ca.serialHex}, expires ${ca.notAfter.toISOString()})`);
        return { ...ca, origin: 'loaded', certPath, keyPath };
      }
    } catch (err) {
      if (!isCaError(err, 'ca-corrupt')) throw err;
      why = err.message;
    }
    log.warn(`replacing the CA in ${stateDir}: ${why}`);
  } else {
    log.info(`no CA in ${stateDir} yet; creating one`);
  }

  const generated = await generateCa({ now, ...(options.commonName ? { commonName: options.commonName } : {}) });
  const ca = await saveCa(stateDir, caMaterialFromPem(generated.certPem, generated.keyPem));
  log.info(`created CA ${ca.subject} (serial ${ca.serialHex}, sha256 ${ca.fingerprintSha256})`);
  return ca;
}

/**
 * Stores `ca` as THE CA of `stateDir`, replacing whatever was there (ca.rotate; the previous key
 * is overwritten, not kept). Returns it with origin 'created'.
 */
export async function saveCa(stateDir: string, ca: CaMaterial): Promise<StoredCa> {
  const certPath = join(stateDir, CA_CERT_FILE);
  const keyPath = join(stateDir, CA_KEY_FILE);
  // Key first: a crash between the two renames leaves a mismatched pair, which the next load
  // detects (checkPrivateKey) and replaces, rather than a certificate whose key is lost.
  await writeAtomic(keyPath, ca.keyPem, KEY_MODE);
  await writeAtomic(certPath, ca.certPem, CERT_MODE);
  return { ...ca, origin: 'created', certPath, keyPath };
}

/** Why a parsed CA must be replaced at `now`, or null when it is good to use. */
function staleReason(ca: CaMaterial, now: Date): string | null {
  if (ca.notAfter.getTime() - now.getTime() < CA_RENEW_BEFORE_MS) {
    return `CA expires ${ca.notAfter.toISOString()}, less than 48 h from now`;
  }
  if (ca.notBefore.getTime() > now.getTime()) {
    return `CA is not valid until ${ca.notBefore.toISOString()} (clock moved backwards?)`;
  }
  return null;
}

/** Both PEMs, or null when either file is missing. Any other read failure is an 'io' CaError. */
async function readPair(certPath: string, keyPath: string): Promise<{ certPem: string; keyPem: string } | null> {
  const read = async (path: string): Promise<string | null> => {
    try {
      return await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      // Never regenerate over a file we merely failed to read: that would orphan a working CA.
      throw new CaError('io', `reading ${path}: ${messageOf(err)}`, { cause: err });
    }
  };
  const keyPem = await read(keyPath);
  const certPem = await read(certPath);
  return keyPem === null || certPem === null ? null : { certPem, keyPem };
}

async function enforceKeyMode(keyPath: string, log: Logger): Promise<void> {
  await io(`checking the mode of ${keyPath}`, async () => {
    const mode = (await stat(keyPath)).mode & 0o777;
    if (mode !== KEY_MODE) {
      log.warn(`CA key ${keyPath} had mode ${mode.toString(8)}; resetting it to 600`);
      await chmod(keyPath, KEY_MODE);
    }
  });
}

/** Writes `data` to `path` with exactly `mode` via a synced temp file and rename(2). */
async function writeAtomic(path: string, data: string, mode: number): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  await io(`writing ${path}`, async () => {
    try {
      // 'wx': never follow or reuse a file someone planted at the temp name.
      const fh = await open(tmp, 'wx', mode);
      try {
        // The umask may have narrowed the creation mode; set it exactly.
        await fh.chmod(mode);
        await fh.writeFile(data, 'utf8');
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, path);
      // Persist the rename itself, not only the file contents (fsync(2) NOTES on directories).
      const dir = await open(dirname(path), 'r');
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  });
}

async function io(what: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof CaError) throw err;
    throw new CaError('io', `${what}: ${messageOf(err)}`, { cause: err });
  }
}
