/**
 * Owns every place the CA is trusted and the rule that keeps them consistent: the CA is in the OS
 * trust store while a capture runs OR while a persistent install (`ca.install`) exists, and it is
 * in exactly one anchor file then. Kinds are told apart by file name (trust/linux.ts):
 * - capture-scoped: added by capture start unless a persistent entry for this CA exists, removed
 *   by capture stop; recorded in applied.json first, so repair removes it after a crash.
 * - persistent: added by ca.install, recorded in trust.json (record.ts) first; survives stop,
 *   repair and restarts; removed by ca.uninstall. Installing while a capture runs retires the
 *   capture-scoped entry; uninstalling while one runs puts a capture-scoped entry back first.
 * rotate() and adopt() move the persistent entry to a new CA: the new entry first, then the old
 * one goes, so nothing trusted disappears half-way. It does not create or store the CA (ca/).
 * Users' NSS databases are not here: a root unit with ProtectHome= cannot write home directories,
 * and they need no privilege, so tproxyctl manages them as their user (client trust/nss.ts).
 */
import { readFile } from 'node:fs/promises';
import { updateRecord } from '../firewall/record.js';
import type { Exec } from '../exec.js';
import type { Logger } from '../log.js';
import { TrustStoreError } from './errors.js';
import { anchorPath, detectTrustStore, exists, findInstalledCas, installCa, LINUX_TRUST_STORES, uninstallCa, type TrustStore } from './linux.js';
import { readTrustRecord, writeTrustRecord, type PersistentAnchor, type TrustRecord } from './record.js';

/** The CA as trust entries need it: the public certificate and its names. */
export interface TrustedCa {
  certPem: string;
  serialHex: string;
  fingerprintSha256: string;
}

/** Where the CA is trusted, as ca.get and capture.status report it. */
export interface TrustState {
  /** In the OS trust store now (persistently or for the running capture). */
  installed: boolean;
  /** The anchor file: the persistent one when there is one. */
  trustStorePath?: string;
  persistent: boolean;
}

export interface TrustManagerOptions {
  exec: Exec;
  stateDir: string;
  log: Logger;
  /** OS trust store; detected when omitted, null for none. */
  trustStore?: TrustStore | null;
}

export class TrustManager {
  private record: TrustRecord;
  /** The capture-scoped anchor, while a capture added one. */
  private capturePath: string | null = null;
  private storePromise: Promise<TrustStore | null> | null = null;

  constructor(private readonly opts: TrustManagerOptions) {
    this.record = readTrustRecord(opts.stateDir, opts.log);
    if (opts.trustStore !== undefined) this.storePromise = Promise.resolve(opts.trustStore);
  }

  /** The OS trust store, detected once (anchor dir present and its refresh command installed). */
  trustStore(): Promise<TrustStore | null> {
    this.storePromise ??= detectTrustStore(undefined, this.opts.log);
    return this.storePromise;
  }

  /** Where the CA with `serialHex` (default: whatever is recorded) is trusted. */
  state(serialHex?: string): TrustState {
    const p = this.record.persistent;
    const persistentPath = p && (serialHex === undefined || p.serialHex === serialHex) ? p.path : null;
    const path = persistentPath ?? this.capturePath;
    return {
      installed: path !== null,
      ...(path ? { trustStorePath: path } : {}),
      persistent: persistentPath !== null,
    };
  }

  /**
   * Capture start: adds the capture-scoped anchor unless a persistent one holds this CA. Returns
   * the path it added (the caller undoes it with releaseForCapture), or null.
   */
  async acquireForCapture(ca: TrustedCa): Promise<string | null> {
    const { log } = this.opts;
    const store = await this.trustStore();
    if (!store) {
      log.warn('no supported OS trust store found; clients must trust the CA themselves (tproxyctl ca --pem)');
      return null;
    }
    const p = this.record.persistent;
    if (p && p.serialHex === ca.serialHex && (await exists(p.path))) {
      log.info(`the CA is installed persistently (${p.path}); capture adds no trust-store entry`);
      return null;
    }
    return this.installCaptureScoped(ca, store);
  }

  private async installCaptureScoped(ca: TrustedCa, store: TrustStore): Promise<string> {
    // Intent first: if we die before stop, the next helper's repair removes it.
    await updateRecord(this.opts.stateDir, { pid: process.pid, trust: { path: anchorPath(store, ca.serialHex), refresh: [...store.refresh] } });
    const path = await installCa(store, ca.certPem, ca.serialHex, this.opts.exec, this.opts.log);
    this.capturePath = path;
    this.opts.log.info(`installed the CA into the trust store for this capture: ${path}`);
    return path;
  }

  /** Capture stop: removes the capture-scoped anchor, if this capture added one. Never the persistent one. */
  async releaseForCapture(): Promise<void> {
    const store = await this.trustStore();
    if (!this.capturePath || !store) return;
    await uninstallCa(this.capturePath, store, this.opts.exec);
    this.opts.log.info(`removed the CA from the trust store: ${this.capturePath}`);
    this.capturePath = null;
  }

  /** ca.install: the persistent OS anchor (idempotent). */
  async install(ca: TrustedCa): Promise<void> {
    const store = await this.requireStore();
    const p = this.record.persistent;
    if (!(p && p.serialHex === ca.serialHex && (await holds(p.path, ca.certPem)))) {
      const entry: PersistentAnchor = { path: anchorPath(store, ca.serialHex, 'persistent'), serialHex: ca.serialHex, refresh: [...store.refresh] };
      const before = this.record;
      await this.save({ ...before, persistent: entry });
      try {
        await installCa(store, ca.certPem, ca.serialHex, this.opts.exec, this.opts.log, 'persistent');
      } catch (err) {
        await this.save(before).catch((e: Error) => this.opts.log.error(`restoring the trust record: ${e.message}`));
        throw err;
      }
      this.opts.log.info(`installed the CA persistently: ${entry.path}`);
      if (p && p.path !== entry.path) await this.bestEffort(`removing the stale persistent anchor ${p.path}`, () => uninstallCa(p.path, store, this.opts.exec));
    }
    if (this.capturePath) {
      // The persistent entry now covers the running capture: one anchor, and stop removes nothing.
      await this.releaseForCapture();
      await updateRecord(this.opts.stateDir, { trust: undefined });
    }
  }

  /**
   * ca.uninstall: the persistent anchor (any `tproxy-persistent-*` file, recorded or not).
   * Idempotent. While a capture runs (`captureRunning`) the CA stays trusted for it through a
   * capture-scoped entry.
   */
  async uninstall(ca: TrustedCa, captureRunning: boolean): Promise<void> {
    const store = await this.trustStore();
    if (!store) return;
    const files = new Set(await findInstalledCas(store, 'persistent'));
    if (this.record.persistent) files.add(this.record.persistent.path);
    // The running capture keeps a trusted CA: its own entry goes in before the persistent one goes.
    if (files.size > 0 && captureRunning && !this.capturePath) await this.installCaptureScoped(ca, store);
    for (const path of files) {
      await uninstallCa(path, store, this.opts.exec, this.opts.log);
      this.opts.log.info(`removed the persistent CA install ${path}`);
    }
    await this.save(withoutPersistent(this.record));
  }

  /**
   * Moves the recorded persistent entry to `next`: installs the new entry, then runs `commit`
   * (which makes `next` the stored CA), then removes the old entry. A failure before commit
   * removes the new entry again and leaves everything as it was.
   */
  async rotate(next: TrustedCa, commit: () => Promise<void>): Promise<void> {
    const { log, exec } = this.opts;
    const old = this.record;
    const undo: Array<{ what: string; run: () => Promise<unknown> }> = [];
    let persistent: PersistentAnchor | undefined;
    try {
      if (old.persistent) {
        const store = await this.requireStore();
        const path = await installCa(store, next.certPem, next.serialHex, exec, log, 'persistent');
        if (path !== old.persistent.path) undo.push({ what: `removing ${path}`, run: () => uninstallCa(path, store, exec) });
        persistent = { path, serialHex: next.serialHex, refresh: [...store.refresh] };
      }
      await commit();
    } catch (err) {
      for (const step of undo.reverse()) await this.bestEffort(`undoing the rotation: ${step.what}`, step.run);
      throw err;
    }
    await this.save({ version: 1, ...(persistent ? { persistent } : {}) });
    const store = await this.trustStore();
    if (old.persistent && store && old.persistent.path !== persistent?.path) {
      const path = old.persistent.path;
      await this.bestEffort(`removing the old CA's anchor ${path}`, () => uninstallCa(path, store, exec, log));
    }
  }

  /**
   * Brings entries recorded for another CA (the stored CA was regenerated: expired, corrupt, or a
   * rotation interrupted after commit) to `ca`. Failures are logged; ca.get then shows them absent.
   */
  async adopt(ca: TrustedCa): Promise<void> {
    const stale = this.record.persistent && this.record.persistent.serialHex !== ca.serialHex;
    if (!stale) return;
    this.opts.log.warn(`the CA changed since it was installed persistently; moving the recorded trust entries to serial ${ca.serialHex}`);
    await this.bestEffort('moving the persistent trust entries to the current CA', () => this.rotate(ca, async () => {}));
  }

  /**
   * Start-up and --cleanup repair: removes capture-scoped anchors (by name, plus the one a killed
   * helper recorded) and persistent anchors other than the recorded one. Returns what it removed.
   */
  async repair(recordedCapturePath?: string): Promise<string[]> {
    const store = await this.trustStore();
    if (!store) return [];
    const keep = new Set([this.record.persistent?.path, this.capturePath ?? undefined]);
    const leftovers = new Set(await findInstalledCas(store, 'capture'));
    if (recordedCapturePath) leftovers.add(recordedCapturePath);
    for (const path of await findInstalledCas(store, 'persistent')) leftovers.add(path);
    const done: string[] = [];
    for (const path of leftovers) {
      if (keep.has(path)) continue;
      try {
        await uninstallCa(path, store, this.opts.exec, this.opts.log);
        done.push(`trust-store entry ${path}`);
      } catch (err) {
        this.opts.log.error(`repair: removing ${path}: ${(err as Error).message}`);
      }
    }
    return done;
  }

  private async requireStore(): Promise<TrustStore> {
    const store = await this.trustStore();
    if (store) return store;
    throw new TrustStoreError(
      'no-trust-store',
      `no supported OS trust store on this host (looked for ${LINUX_TRUST_STORES.map((s) => `${s.anchorDir} with ${s.refresh[0]}`).join(', ')}); install ca-certificates`,
    );
  }

  private async save(record: TrustRecord): Promise<void> {
    await writeTrustRecord(this.opts.stateDir, record);
    this.record = record;
  }

  private async bestEffort(what: string, run: () => Promise<unknown>): Promise<void> {
    try {
      await run();
    } catch (err) {
      this.opts.log.error(`${what}: ${(err as Error).message}`);
    }
  }
}

function withoutPersistent(record: TrustRecord): TrustRecord {
  const { persistent: _, ...rest } = record;
  return rest;
}

/** Whether the anchor at `path` holds exactly `pem` (someone may have edited or removed it). */
async function holds(path: string, pem: string): Promise<boolean> {
  try {
    return (await readFile(path, 'utf8')).trim() === pem.replace(/\r\n/g, '\n').trim();
  } catch {
    return false;
  }
}
