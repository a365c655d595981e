/**
 * Installs and removes our CA in the Linux system trust store. The supported layouts are one table
 * (anchor directory, file extension, refresh command), probed in mkcert's truststore_linux.go order;
 * adding a distribution is adding a row. Install writes `<anchorDir>/tproxy-<serial><ext>` (an entry
 * for one capture) or `<anchorDir>/tproxy-persistent-<serial><ext>` (`ca.install`, kept across
 * captures) and runs the refresh; the name alone tells repair which kind a leftover file is.
 * Uninstall removes exactly that file and refreshes; both are all-or-nothing and report
 * the command's stderr. Commands go through an `Exec` and detection through a `TrustProbe`, so tests
 * never touch the real store. It must not touch any file but its own `tproxy-*` anchors, and it
 * does not manage NSS databases (browsers' own stores; a separate, optional concern).
 */
import { X509Certificate } from 'node:crypto';
import { constants } from 'node:fs';
import { access, chmod, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { basename, delimiter, dirname, join, resolve } from 'node:path';
import { ExecError, realExec, type Exec } from '../exec.js';
import { silentLogger, type Logger } from '../log.js';
import { TrustStoreError } from './errors.js';

/** One distribution family's way of adding a trust anchor. */
export interface TrustStore {
  /** Family name, for logs and status output. */
  family: string;
  /** Directory the refresh command reads administrator-added anchors from. */
  anchorDir: string;
  /** Extension the refresh command requires (update-ca-certificates(8) only reads `*.crt`). */
  fileExt: '.crt' | '.pem';
  /** argv that rebuilds the system bundle from the anchor directory. */
  refresh: readonly string[];
}

/**
 * Known layouts, in the order mkcert probes them (truststore_linux.go: Fedora, Debian, Arch; SUSE
 * last). Each family's directory rarely exists elsewhere, and the refresh command must exist too.
 */
export const LINUX_TRUST_STORES: readonly TrustStore[] = [
  // update-ca-trust(8): "add it as a new file to /etc/pki/ca-trust/source/anchors/".
  { family: 'fedora-rhel', anchorDir: '/etc/pki/ca-trust/source/anchors', fileExt: '.pem', refresh: ['update-ca-trust', 'extract'] },
  // update-ca-certificates(8): local certificates "in /usr/local/share/ca-certificates" with ".crt".
  { family: 'debian-ubuntu', anchorDir: '/usr/local/share/ca-certificates', fileExt: '.crt', refresh: ['update-ca-certificates'] },
  // Arch wiki "Transport Layer Security": trust-source/anchors + `trust extract-compat` (p11-kit).
  { family: 'arch', anchorDir: '/etc/ca-certificates/trust-source/anchors', fileExt: '.crt', refresh: ['trust', 'extract-compat'] },
  // openSUSE update-ca-certificates(8): /etc/pki/trust/anchors is the administrator's directory;
  // /usr/share/pki/trust/anchors belongs to packages (and is read-only under ProtectSystem=).
  { family: 'suse', anchorDir: '/etc/pki/trust/anchors', fileExt: '.pem', refresh: ['update-ca-certificates'] },
];

/** What detection needs to know about the machine; tests inject answers. */
export interface TrustProbe {
  dirExists(path: string): Promise<boolean>;
  /** True when `command` is an executable file somewhere in PATH. */
  commandExists(command: string): Promise<boolean>;
}

/** systemd's default PATH for services (systemd.exec(5) "Environment variables in spawned processes"). */
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export const realTrustProbe: TrustProbe = {
  async dirExists(path) {
    try {
      return (await stat(path)).isDirectory();
    } catch {
      return false;
    }
  },
  async commandExists(command) {
    for (const dir of (process.env.PATH || DEFAULT_PATH).split(delimiter)) {
      if (!dir) continue;
      try {
        const candidate = join(dir, command);
        await access(candidate, constants.X_OK);
        if ((await stat(candidate)).isFile()) return true;
      } catch {
        // Not in this PATH entry; keep looking.
      }
    }
    return false;
  },
};

/** The first table row whose anchor directory and refresh command both exist, or null (logged either way). */
export async function detectTrustStore(
  probe: TrustProbe = realTrustProbe,
  log: Logger = silentLogger,
  stores: readonly TrustStore[] = LINUX_TRUST_STORES,
): Promise<TrustStore | null> {
  for (const store of stores) {
    if (!(await probe.dirExists(store.anchorDir))) {
      log.debug(`trust store ${store.family}: no ${store.anchorDir}`);
      continue;
    }
    const command = store.refresh[0]!;
    if (!(await probe.commandExists(command))) {
      log.info(`trust store ${store.family}: ${store.anchorDir} exists but ${command} is not in PATH; skipping`);
      continue;
    }
    log.info(`trust store: ${store.family} (${store.anchorDir}, refresh with ${store.refresh.join(' ')})`);
    return store;
  }
  log.warn(`no supported system trust store found (tried ${stores.map((s) => s.anchorDir).join(', ')})`);
  return null;
}

/** Mode of the anchor file: the CA certificate is public, and refresh tools may run unprivileged readers. */
const ANCHOR_MODE = 0o644;
/** A serial as material.ts prints it: hex, at most 20 octets (RFC 5280 §4.1.2.2). */
const SERIAL_HEX = /^[0-9a-f]{1,40}$/;
/** File names of our anchors, by kind: the only files uninstallCa will delete. */
const ANCHOR_NAMES: Readonly<Record<AnchorKind, RegExp>> = {
  capture: /^tproxy-[0-9a-f]{1,40}\.(crt|pem)$/,
  persistent: /^tproxy-persistent-[0-9a-f]{1,40}\.(crt|pem)$/,
};

/**
 * `capture`: added by capture.start and removed by capture.stop, and by repair when a killed helper
 * left it. `persistent`: added by ca.install, removed only by ca.uninstall (or rotated).
 */
export type AnchorKind = 'capture' | 'persistent';

/** Where the CA with `serialHex` lives in `store`: `<anchorDir>/tproxy-[persistent-]<serial><ext>`. */
export function anchorPath(store: TrustStore, serialHex: string, kind: AnchorKind = 'capture'): string {
  const serial = serialHex.toLowerCase();
  if (!SERIAL_HEX.test(serial)) {
    throw new TrustStoreError('invalid-argument', `naming the trust anchor file: ${JSON.stringify(serialHex)} is not a hex serial`);
  }
  return join(store.anchorDir, `tproxy-${kind === 'persistent' ? 'persistent-' : ''}${serial}${store.fileExt}`);
}

/** The kind of anchor `path` names, or null when it is not one of our anchor file names. */
export function anchorKind(path: string): AnchorKind | null {
  const name = basename(path);
  for (const kind of ['capture', 'persistent'] as const) if (ANCHOR_NAMES[kind].test(name)) return kind;
  return null;
}

/**
 * Installs the CA certificate `pem` as a trust anchor and refreshes the system bundle; returns the
 * anchor file's path (keep it: uninstallCa needs it). If the refresh fails, a file this call
 * created is removed again, so the store is left as it was.
 */
export async function installCa(
  store: TrustStore,
  pem: string,
  serialHex: string,
  exec: Exec = realExec,
  log: Logger = silentLogger,
  kind: AnchorKind = 'capture',
): Promise<string> {
  const what = `installing the CA into ${store.anchorDir}`;
  const path = anchorPath(store, serialHex, kind);
  assertCaPem(pem, what);
  const existed = await exists(path);

  try {
    // LF only: update-ca-certificates concatenates anchors verbatim into the system bundle.
    const text = pem.replace(/\r\n/g, '\n');
    await writeFile(path, text.endsWith('\n') ? text : `${text}\n`, { mode: ANCHOR_MODE });
    // writeFile's mode is filtered by the umask and ignored for an existing file.
    await chmod(path, ANCHOR_MODE);
  } catch (err) {
    const cleanup = existed ? '' : await removeQuietly(path);
    throw new TrustStoreError('io', `${what}: writing ${path}: ${messageOf(err)}${cleanup}`, { cause: err });
  }

  try {
    await exec.run(store.refresh[0]!, store.refresh.slice(1));
  } catch (err) {
    const cleanup = existed ? '' : await removeQuietly(path);
    throw refreshError(what, err, cleanup);
  }
  log.info(`installed CA ${path} and ran ${store.refresh.join(' ')}`);
  return path;
}

/**
 * Removes the anchor file installCa returned and refreshes the bundle. Idempotent: a missing file
 * is fine and the refresh still runs (a previous attempt may have removed the file and then failed).
 */
export async function uninstallCa(path: string, store: TrustStore, exec: Exec = realExec, log: Logger = silentLogger): Promise<void> {
  const what = `uninstalling the CA from ${store.anchorDir}`;
  // Only ever delete our own anchor files, whatever path a caller or a state file hands us.
  if (dirname(resolve(path)) !== resolve(store.anchorDir) || anchorKind(path) === null) {
    throw new TrustStoreError('invalid-argument', `${what}: ${path} is not a tproxy anchor file in that directory`);
  }
  try {
    await rm(path, { force: true });
  } catch (err) {
    throw new TrustStoreError('io', `${what}: removing ${path}: ${messageOf(err)}`, { cause: err });
  }
  try {
    await exec.run(store.refresh[0]!, store.refresh.slice(1));
  } catch (err) {
    throw refreshError(what, err, '');
  }
  log.info(`removed CA ${path} and ran ${store.refresh.join(' ')}`);
}

/**
 * Our anchor files of `kind` currently in `store`. Capture-scoped ones outside a running capture
 * were left by a helper that crashed before uninstalling; repair removes them with uninstallCa
 * and keeps the persistent ones.
 */
export async function findInstalledCas(store: TrustStore, kind: AnchorKind = 'capture'): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(store.anchorDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new TrustStoreError('io', `listing tproxy anchors in ${store.anchorDir}: ${messageOf(err)}`, { cause: err });
  }
  return names.filter((n) => ANCHOR_NAMES[kind].test(n) && n.endsWith(store.fileExt)).sort().map((n) => join(store.anchorDir, n));
}

function assertCaPem(pem: string, what: string): void {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch (err) {
    throw new TrustStoreError('invalid-argument', `${what}: the PEM is not a certificate: ${messageOf(err)}`, { cause: err });
  }
  // Installing a leaf (or anything that cannot sign) as an anchor would be a silent no-op at best.
  if (!cert.ca) throw new TrustStoreError('invalid-argument', `${what}: ${cert.subject.replace(/\n/g, ', ')} is not a CA certificate`);
}

function refreshError(what: string, err: unknown, cleanup: string): TrustStoreError {
  // ExecError's message is already "<argv>: <stderr or reason>".
  const stderr = err instanceof ExecError ? err.stderr : undefined;
  return new TrustStoreError('refresh-failed', `${what}: ${messageOf(err)}${cleanup}`, { cause: err, ...(stderr !== undefined ? { stderr } : {}) });
}

/** Removes a file we created; returns '' or a message suffix saying the removal failed too (never silent). */
async function removeQuietly(path: string): Promise<string> {
  try {
    await rm(path, { force: true });
    return '';
  } catch (err) {
    return ` (and removing ${path} again failed: ${messageOf(err)})`;
  }
}

/** Whether something is at `path` (shared by the trust modules). */
export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
