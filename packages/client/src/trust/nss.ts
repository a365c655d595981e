/**
 * Adds tproxy's CA to, and removes it from, an NSS database (`sql:` format): the store Chromium
 * (`~/.pki/nssdb`) and Firefox (its profile directory) read instead of the system bundle. mkcert's
 * truststore_nss.go does the same with certutil.
 *
 * Why here and not in the helper: the database belongs to a user and changing it needs no
 * privilege, while the helper is a root unit with ProtectHome= and a capability set trimmed to
 * CAP_NET_ADMIN, which can never write into home directories. So tproxyctl runs certutil itself,
 * as whoever invoked it; root installs for someone else with `sudo -u NAME -H tproxyctl ...`.
 *
 * Entries are found by nickname, `tproxy CA <first 8 hex digits of the SHA-256>`: install adds the
 * current CA's and then removes any other `tproxy CA *` (a rotated CA's), uninstall removes every
 * `tproxy CA *`. The argv builders and parsers are pure; the install/uninstall steps run through
 * an injected NssHost (nss-host.ts is the real one; tests pass a fake).
 */
import { isAbsolute, join, resolve } from 'node:path';

/** NSS "trusted CA for issuing server certificates" (certutil(1) -t: C = trusted CA, SSL only). */
export const NSS_TRUST_FLAGS = 'C,,';

/** Every nickname we ever give starts with this; uninstall removes exactly these. */
export const NICKNAME_PREFIX = 'tproxy CA ';

/** What to tell people when certutil is missing, per distribution family. */
export const CERTUTIL_HINT = 'install libnss3-tools (Debian/Ubuntu), nss-tools (Fedora/RHEL/openSUSE) or nss (Arch)';

/** Bound on delete rounds: several certificates may share a nickname, each -D removes one. */
const MAX_DELETE_ROUNDS = 8;

/** A command failure as the host reports it. */
export class NssCommandError extends Error {
  override readonly name = 'NssCommandError';
  constructor(
    readonly argv: readonly string[],
    /** Exit status, or null when the command did not start or was killed. */
    readonly exitCode: number | null,
    /** The command's stderr, verbatim. */
    readonly stderr: string,
    /** errno name when it could not start (ENOENT: not installed). */
    readonly errno?: string,
  ) {
    super(`${argv.join(' ')}: ${stderr.trim() || errno || `exit status ${exitCode}`}`);
  }
}

/** Where NSS commands and file checks happen: the real process (nss-host.ts) or a test fake. */
export interface NssHost {
  /** This process's uid: every file we touch must belong to it. */
  readonly uid: number;
  /** Runs argv (no shell), `input` on stdin; rejects with NssCommandError. */
  run(argv: readonly string[], input?: string): Promise<{ stdout: string; stderr: string }>;
  /** Owner uid of `path` (symlinks followed), or null when it does not exist. */
  ownerOf(path: string): Promise<number | null>;
  /** `mkdir -p` whose created directories are 0700 (the database holds the user's keys too). */
  makePrivateDir(path: string): Promise<void>;
}

/** Which database: `--nss-db DIR`, else `$HOME/.pki/nssdb`. */
export interface NssTarget {
  /** The database directory, absolute. */
  db: string;
  /** True for the default `~/.pki/nssdb`, which we create when missing; a named dir must exist. */
  isDefault: boolean;
}

/** The database Chromium and NSS tools use for a user (Chromium's docs/linux/cert_management.md). */
export function defaultNssDb(home: string): string {
  return join(home, '.pki', 'nssdb');
}

/** Our nickname for a CA: stable per certificate, different after a rotation. */
export function nssNickname(fingerprintSha256: string): string {
  return `${NICKNAME_PREFIX}${fingerprintSha256.replace(/:/g, '').slice(0, 8).toUpperCase()}`;
}

/** Resolves the target database from `--nss-db` (relative to `cwd`) or `HOME`. Pure. */
export function nssTarget(opts: { dbDir?: string; home?: string; cwd: string }): NssTarget {
  if (opts.dbDir !== undefined) {
    if (opts.dbDir.trim() === '') throw new Error('--nss-db needs a directory (e.g. a Firefox profile: ~/.mozilla/firefox/<name>.default-release)');
    return { db: resolve(opts.cwd, opts.dbDir), isDefault: false };
  }
  if (!opts.home) throw new Error('HOME is not set, so there is no ~/.pki/nssdb to use: set HOME, or name the database with --nss-db DIR');
  if (!isAbsolute(opts.home)) throw new Error(`HOME is not an absolute path (${JSON.stringify(opts.home)}): set HOME, or name the database with --nss-db DIR`);
  return { db: defaultNssDb(opts.home), isDefault: true };
}

/** `certutil -L`: the nicknames in `db`. */
export const listArgv = (db: string): string[] => ['certutil', '-L', '-d', `sql:${db}`];
/** `certutil -N`: a new database with an empty password (Chromium's own databases have none). */
export const createArgv = (db: string): string[] => ['certutil', '-N', '-d', `sql:${db}`, '--empty-password'];
/** `certutil -A`: add the certificate read from stdin (PEM) as a trusted CA under `nickname`. */
export const addArgv = (db: string, nickname: string): string[] => ['certutil', '-A', '-d', `sql:${db}`, '-n', nickname, '-t', NSS_TRUST_FLAGS];
/** `certutil -D`: delete one certificate named `nickname`. */
export const deleteArgv = (db: string, nickname: string): string[] => ['certutil', '-D', '-d', `sql:${db}`, '-n', nickname];

/** Nicknames in `certutil -L` output: "<nickname, padded>  <trust flags like C,,>" per line. Pure. */
export function parseNicknames(listing: string): string[] {
  const names: string[] = [];
  for (const line of listing.split('\n')) {
    const m = /^(\S.*?)\s+([A-Za-z]*,[A-Za-z]*,[A-Za-z]*)\s*$/.exec(line);
    if (m && m[1] !== 'Certificate Nickname') names.push(m[1]!);
  }
  return names;
}

/** Ours: the current CA's and any rotated one's. */
export const isOurNickname = (name: string): boolean => name.startsWith(NICKNAME_PREFIX);

export interface NssInstallResult {
  /** The database directory (used as `sql:<db>`). */
  db: string;
  /** The nickname the CA now has there. */
  nickname: string;
  /** Whether the database had to be created (`certutil -N`). */
  created: boolean;
  /** Older `tproxy CA *` nicknames (a rotated CA) that were removed. */
  removed: string[];
}

export interface NssUninstallResult {
  db: string;
  /** The `tproxy CA *` nicknames removed; empty when there were none (or no database). */
  removed: string[];
}

/**
 * Adds the CA `pem` (nickname from its fingerprint, trust C,,) to the target database, creating
 * `~/.pki/nssdb` (0700) and an empty-password database when missing, then removes any other
 * `tproxy CA *` entry. Adding first means the browser never sees a moment with no tproxy CA.
 */
export async function installNss(host: NssHost, target: NssTarget, pem: string, fingerprintSha256: string): Promise<NssInstallResult> {
  const { db } = target;
  const nickname = nssNickname(fingerprintSha256);
  await checkOwner(host, target);
  if (target.isDefault) await wrap(`creating ${db}`, () => host.makePrivateDir(db));
  let created = false;
  // cert9.db is the sql: database; certutil -L on a missing one fails like on a broken one, so ask the file system.
  if ((await host.ownerOf(join(db, 'cert9.db'))) === null) {
    await certutil(host, createArgv(db));
    created = true;
  }
  await certutil(host, addArgv(db, nickname), pem);
  const names = await listNicknames(host, db);
  if (!names.includes(nickname)) throw new Error(`certutil reported success but ${JSON.stringify(nickname)} is not listed in ${db}`);
  const removed = await deleteAll(host, db, (n) => isOurNickname(n) && n !== nickname, names);
  return { db, nickname, created, removed };
}

/** Removes every `tproxy CA *` entry from the target database. No database or no entry: nothing to do. */
export async function uninstallNss(host: NssHost, target: NssTarget): Promise<NssUninstallResult> {
  const { db } = target;
  if (target.isDefault && (await host.ownerOf(db)) === null) return { db, removed: [] };
  await checkOwner(host, target);
  if ((await host.ownerOf(join(db, 'cert9.db'))) === null) return { db, removed: [] };
  const removed = await deleteAll(host, db, isOurNickname, await listNicknames(host, db));
  return { db, removed };
}

/** Deletes the nicknames `which` selects until none is listed (bounded); returns them, unique. */
async function deleteAll(host: NssHost, db: string, which: (name: string) => boolean, listing: string[]): Promise<string[]> {
  const removed = new Set<string>();
  let names = listing.filter(which);
  for (let round = 0; names.length > 0; round++) {
    if (round === MAX_DELETE_ROUNDS) throw new Error(`${db} still lists ${names.join(', ')} after ${MAX_DELETE_ROUNDS} rounds of certutil -D`);
    for (const name of new Set(names)) {
      await certutil(host, deleteArgv(db, name));
      removed.add(name);
    }
    names = (await listNicknames(host, db)).filter(which);
  }
  return [...removed];
}

async function listNicknames(host: NssHost, db: string): Promise<string[]> {
  return parseNicknames((await certutil(host, listArgv(db))).stdout);
}

/**
 * The database (or, for the default one before it exists, HOME) must belong to us. Root with
 * another user's HOME (sudo without -H) would otherwise leave root-owned files that break that
 * user's browser; anyone else would just get "permission denied" from certutil.
 */
async function checkOwner(host: NssHost, target: NssTarget): Promise<void> {
  const { db } = target;
  const dbOwner = await host.ownerOf(db);
  if (dbOwner === null && !target.isDefault) {
    throw new Error(`--nss-db ${db}: no such directory (name an existing NSS database directory, e.g. a Firefox profile)`);
  }
  const [path, owner] = dbOwner !== null ? [db, dbOwner] : [join(db, '..', '..'), await host.ownerOf(join(db, '..', '..'))];
  if (owner === null) throw new Error(`${path} does not exist: set HOME to your home directory, or name the database with --nss-db DIR`);
  if (owner !== host.uid) {
    throw new Error(
      `${resolve(path)} belongs to uid ${owner}, not to this process (uid ${host.uid}): NSS databases must be changed by their owner; ` +
        `run tproxyctl as that user (sudo -u <user> -H tproxyctl ca ... --nss)`,
    );
  }
}

async function certutil(host: NssHost, argv: string[], input?: string): Promise<{ stdout: string; stderr: string }> {
  try {
    return await host.run(argv, input);
  } catch (err) {
    if (err instanceof NssCommandError && err.errno === 'ENOENT') throw new Error(`certutil is not installed: ${CERTUTIL_HINT}`, { cause: err });
    throw err;
  }
}

async function wrap<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw new Error(`${what}: ${(err as Error).message}`, { cause: err });
  }
}
