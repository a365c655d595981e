/**
 * `tproxyctl run -- CMD`, the helper's side: one capture scoped to a fresh cgroup that holds only
 * CMD and its children. A run belongs to the RPC connection that asked for it:
 *   begin: check the pid is the caller's waiting child, create `<parent>/run-<n>` under the cgroup2
 *          root, move the pid in, start the capture scoped to it (undoing both if that fails);
 *   end:   (capture.runEnd, or the connection closing) stop that capture if it is still the run's,
 *          and remove the cgroup. A cgroup still holding processes (daemonized children) is
 *          reported, never killed, and removed by a sweep once it is empty.
 * Operations are serialised so creating and removing cgroups never interleave.
 */
import { mkdir, readdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCode, RpcError, type CaptureConfig, type CaptureRunEndResult, type CaptureRunResult } from '@tproxy/protocol';
import type { Logger } from '../log.js';
import type { CaptureControl } from '../rpc/context.js';
import { cgroupCoordinates, findCgroup2Mount, type ResolvedCgroup } from './cgroup.js';
import { checkRunChild, parseProcCgroup, type Caller } from './run-child.js';
import type { ExchangeStore } from './store.js';

/** Default parent of run cgroups, relative to the cgroup2 root. */
export const DEFAULT_RUN_CGROUP_PARENT = 'tproxy';
/** How often cgroups that still held processes at the end of their run are retried. */
const SWEEP_INTERVAL_MS = 5_000;
/** Bound on `run-<n>` names tried when earlier ones exist (left by another helper). */
const MAX_NAME_TRIES = 1000;

export interface RunManagerOptions {
  capture: CaptureControl;
  store: Pick<ExchangeStore, 'subscribe'>;
  log: Logger;
  /** Parent of the run cgroups, relative to the cgroup2 root (`--run-cgroup-parent`). */
  parent?: string;
  /** Test seams: prefixes for /proc and the cgroup mount. */
  procRoot?: string;
  fsRoot?: string;
}

interface ActiveRun {
  readonly cgroup: ResolvedCgroup;
  readonly pid: number;
  /** `startedAt` of the run's capture: tells it apart from a capture someone started later. */
  readonly captureStartedAt: number | undefined;
  exchanges: number;
  unsubscribe: () => void;
}

export interface RunRemoval {
  removed: boolean;
  remainingPids: number[];
}

export class RunManager {
  private readonly runs = new Map<number, ActiveRun>();
  /** Absolute cgroup dirs whose removal is pending (they still held processes). */
  private readonly leftovers = new Set<string>();
  private sweepTimer: NodeJS.Timeout | null = null;
  private seq = 0;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: RunManagerOptions) {}

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn, fn);
    this.chain = next.catch(() => undefined);
    return next;
  }

  private get fs(): string {
    return this.opts.fsRoot ?? '';
  }

  /** Starts a run for connection `conn`; `config.scope.uids` is already the policy's decision. */
  begin(conn: number, caller: Caller, pid: number, config: CaptureConfig): Promise<CaptureRunResult> {
    return this.serial(async () => {
      await this.sweep();
      if (this.runs.has(conn)) throw new RpcError(ErrorCode.CaptureAlreadyRunning, 'this connection already has a run; end it with capture.runEnd first');
      const before = this.opts.capture.status();
      if (before.running) {
        throw new RpcError(ErrorCode.CaptureAlreadyRunning, 'a capture is already running; capture.run starts its own scoped capture, so stop the running one first (tproxyctl stop)');
      }
      await checkRunChild(pid, caller, this.opts.procRoot);
      const mount = await findCgroup2Mount({ fsRoot: this.opts.fsRoot });
      const original = parseProcCgroup(await readFile(`${this.opts.procRoot ?? '/proc'}/${pid}/cgroup`, 'utf8').catch(() => ''));
      const cgroup = await this.createCgroup(cgroupCoordinates(mount, this.opts.parent ?? DEFAULT_RUN_CGROUP_PARENT));
      const { log } = this.opts;
      try {
        await this.movePid(cgroup.dir, pid);
        const scope = { ...config.scope, cgroup: cgroup.path };
        const status = await this.opts.capture.start({ ...config, scope });
        const run: ActiveRun = { cgroup, pid, captureStartedAt: status.startedAt, exchanges: 0, unsubscribe: () => undefined };
        run.unsubscribe = this.opts.store.subscribe((event) => {
          if (event === 'started') run.exchanges++;
        });
        this.runs.set(conn, run);
        log.info(`run: pid ${pid} of uid ${caller.uid} moved into cgroup ${cgroup.path}; capture scoped to ${cgroup.path}${scope.uids ? ` and uids ${scope.uids.join(',')}` : ''}`);
        return { cgroup: cgroup.path, status };
      } catch (err) {
        // Put the process back where it was so the cgroup can go, then remove it.
        if (original !== null) await this.movePid(join(mount.mountPoint, original), pid).catch(() => undefined);
        await this.remove(cgroup);
        throw err;
      }
    });
  }

  /** Ends connection `conn`'s run. */
  end(conn: number): Promise<CaptureRunEndResult> {
    return this.serial(async () => {
      const run = this.runs.get(conn);
      if (!run) throw new RpcError(ErrorCode.CaptureNotRunning, 'this connection has no run to end (capture.run was not called on it, or it already ended)');
      return this.finish(conn, run);
    });
  }

  /** The connection closed (tproxyctl exited or was killed): end its run, if any. */
  connectionClosed(conn: number): void {
    // Queued behind a begin still in progress for this connection, so that run is ended too.
    void this.serial(async () => {
      const run = this.runs.get(conn);
      if (!run) return;
      this.opts.log.warn(`run: connection ${conn} closed before ending its run; stopping its capture and removing its cgroup`);
      await this.finish(conn, run);
    }).catch((err: Error) => this.opts.log.error(`run: ending the run of closed connection ${conn}: ${err.message}`));
  }

  /**
   * Start-up: the run cgroups a killed helper left under our parent. Empty ones are removed now;
   * ones still holding processes are swept once they are empty. Never throws (no cgroup2 → nothing).
   */
  adoptLeftovers(): Promise<string[]> {
    return this.serial(async () => {
      const removed: string[] = [];
      let parent: ResolvedCgroup;
      let names: string[];
      try {
        parent = cgroupCoordinates(await findCgroup2Mount({ fsRoot: this.opts.fsRoot }), this.opts.parent ?? DEFAULT_RUN_CGROUP_PARENT);
        names = (await readdir(`${this.fs}${parent.dir}`, { withFileTypes: true })).filter((d) => d.isDirectory() && /^run-\d+$/.test(d.name)).map((d) => d.name);
      } catch {
        return removed;
      }
      for (const name of names) {
        const cgroup = { ...parent, path: `${parent.path}/${name}`, dir: join(parent.dir, name) };
        const result = await this.remove(cgroup);
        if (result.removed) removed.push(cgroup.path);
        else this.opts.log.warn(`run: cgroup ${cgroup.path} left by a previous helper still holds pids ${result.remainingPids.join(',')}; removed once they exit`);
      }
      return removed;
    });
  }

  /** Helper shutdown: end every run and try the leftovers once more. */
  shutdown(): Promise<void> {
    return this.serial(async () => {
      for (const [conn, run] of [...this.runs]) await this.finish(conn, run).catch((err: Error) => this.opts.log.error(`run: shutdown: ${err.message}`));
      await this.sweep();
      if (this.sweepTimer) clearInterval(this.sweepTimer);
      this.sweepTimer = null;
      for (const dir of this.leftovers) this.opts.log.warn(`run: cgroup ${dir} still holds processes; left in place`);
    });
  }

  private async finish(conn: number, run: ActiveRun): Promise<CaptureRunEndResult> {
    this.runs.delete(conn);
    run.unsubscribe();
    const now = this.opts.capture.status();
    let status = now;
    // Only the run's own capture: someone may have stopped it and started an unrelated one.
    if (now.running && now.startedAt === run.captureStartedAt && now.config?.scope?.cgroup === run.cgroup.path) {
      status = await this.opts.capture.stop();
    }
    const removal = await this.remove(run.cgroup);
    this.opts.log.info(
      `run: cgroup ${run.cgroup.path} ended after ${run.exchanges} exchange(s); ${removal.removed ? 'removed' : `still holds pids ${removal.remainingPids.join(',')}, removed once they exit`}`,
    );
    return { cgroup: run.cgroup.path, exchanges: run.exchanges, cgroupRemoved: removal.removed, remainingPids: removal.remainingPids, status };
  }

  private async createCgroup(parent: ResolvedCgroup): Promise<ResolvedCgroup> {
    try {
      await mkdir(`${this.fs}${parent.dir}`, { recursive: true });
    } catch (err) {
      throw new RpcError(ErrorCode.ScopeUnavailable, `cannot create the cgroup ${parent.dir}: ${(err as Error).message} (is /sys/fs/cgroup read-only, e.g. systemd ProtectControlGroups=yes?)`);
    }
    for (let i = 0; i < MAX_NAME_TRIES; i++) {
      const name = `run-${++this.seq}`;
      const cgroup: ResolvedCgroup = {
        ...parent,
        path: `${parent.path}/${name}`,
        level: parent.level + 1,
        nftPath: `${parent.nftPath}/${name}`,
        dir: join(parent.dir, name),
      };
      try {
        await mkdir(`${this.fs}${cgroup.dir}`);
        return cgroup;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new RpcError(ErrorCode.ScopeUnavailable, `cannot create the cgroup ${cgroup.dir}: ${(err as Error).message}`);
      }
    }
    throw new RpcError(ErrorCode.ScopeUnavailable, `cannot find a free run-<n> name under ${parent.dir} (${MAX_NAME_TRIES} tried); remove old ones`);
  }

  private async movePid(dir: string, pid: number): Promise<void> {
    try {
      await writeFile(`${this.fs}${dir}/cgroup.procs`, `${pid}\n`);
    } catch (err) {
      throw new RpcError(ErrorCode.ScopeUnavailable, `cannot move process ${pid} into the cgroup ${dir}: ${(err as Error).message}`);
    }
  }

  /** Removes a cgroup; one that still holds processes is kept and swept later. */
  private async remove(cgroup: ResolvedCgroup): Promise<RunRemoval> {
    const result = await this.tryRemove(cgroup.dir);
    if (!result.removed) {
      this.leftovers.add(cgroup.dir);
      this.sweepTimer ??= setInterval(() => void this.serial(() => this.sweep()), SWEEP_INTERVAL_MS);
      this.sweepTimer.unref();
    }
    return result;
  }

  private async tryRemove(dir: string): Promise<RunRemoval> {
    try {
      await rmdir(`${this.fs}${dir}`);
      return { removed: true, remainingPids: [] };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return { removed: true, remainingPids: [] };
      const procs = await readFile(`${this.fs}${dir}/cgroup.procs`, 'utf8').catch(() => '');
      const remainingPids = procs.split('\n').filter((l) => /^\d+$/.test(l)).map(Number);
      if (code !== 'EBUSY') this.opts.log.error(`run: removing cgroup ${dir}: ${(err as Error).message}`);
      return { removed: false, remainingPids };
    }
  }

  /** Retries the removal of leftover cgroups (at each begin, end and every SWEEP_INTERVAL_MS). */
  private async sweep(): Promise<void> {
    for (const dir of [...this.leftovers]) {
      if ((await this.tryRemove(dir)).removed) {
        this.leftovers.delete(dir);
        this.opts.log.info(`run: removed cgroup ${dir}, now empty`);
      }
    }
    if (this.leftovers.size === 0 && this.sweepTimer) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = null;
    }
  }
}
