/**
 * Process plumbing for the e2e harness: start argv arrays (never a shell) on the host or inside a
 * network namespace through `ip netns exec`, keep a bounded copy of their output, wait for exit or
 * for output with a deadline, and signal them by pid. Readiness is found by polling (`ss` for
 * listeners, the output streams for a line), never by sleeping a fixed time.
 *
 * It owns no namespaces and no cleanup policy: topology.ts tracks what it started and stops it.
 * Children get cleanEnv() unless the caller passes an env, and namespace children are refused
 * outside the trust sandbox (unless `mountSandbox: false`) so nothing they do can reach the host's
 * trust store.
 */
import { spawn } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { cleanEnv } from './env.js';
import { inTrustSandbox } from './sandbox.js';

/** Default cap on retained output per stream; enough for logs, bounded for 1 GiB downloads. */
export const DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024;

/** Keeps the first and the last `limit / 2` bytes of a stream and counts what it dropped. */
export class BoundedOutput {
  private readonly head: Buffer[] = [];
  private headBytes = 0;
  private tail: Buffer[] = [];
  private tailBytes = 0;
  private dropped = 0;
  /** Every byte ever pushed, kept or not. */
  total = 0;

  constructor(private readonly limit = DEFAULT_MAX_OUTPUT_BYTES) {}

  push(chunk: Buffer): void {
    this.total += chunk.length;
    const half = Math.floor(this.limit / 2);
    if (this.headBytes < half) {
      const take = Math.min(half - this.headBytes, chunk.length);
      this.head.push(chunk.subarray(0, take));
      this.headBytes += take;
      chunk = chunk.subarray(take);
      if (chunk.length === 0) return;
    }
    this.tail.push(chunk);
    this.tailBytes += chunk.length;
    while (this.tailBytes > this.limit - half) {
      const first = this.tail[0];
      if (first === undefined) break;
      const excess = this.tailBytes - (this.limit - half);
      if (first.length <= excess) {
        this.tail.shift();
        this.tailBytes -= first.length;
        this.dropped += first.length;
      } else {
        this.tail[0] = first.subarray(excess);
        this.tailBytes -= excess;
        this.dropped += excess;
      }
    }
  }

  toString(): string {
    const head = Buffer.concat(this.head).toString('utf8');
    const tail = Buffer.concat(this.tail).toString('utf8');
    return this.dropped > 0 ? `${head}\n[... ${this.dropped} bytes dropped ...]\n${tail}` : head + tail;
  }
}

export interface SpawnOptions {
  /** Child environment. Default: cleanEnv() (no trust, proxy or test-runner variables). */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Retained bytes per stream (first half + last half). Default DEFAULT_MAX_OUTPUT_BYTES. */
  maxOutputBytes?: number;
  /** Written to stdin, which is then closed. Without it stdin is /dev/null unless `stdin: 'pipe'`. */
  input?: string | Buffer;
  /** 'pipe' keeps stdin open as `handle.stdin` (for streaming uploads). */
  stdin?: 'ignore' | 'pipe';
  /** Sees every stdout chunk (e.g. to hash a download) in addition to the bounded copy. */
  onStdout?: (chunk: Buffer) => void;
  /**
   * Namespace children only: true (default) refuses to start unless this process is inside the
   * trust sandbox (sandbox.ts), so a helper or `update-ca-certificates` can never write the
   * host's trust store. Pass false only for read-only probes such as `ss`.
   */
  mountSandbox?: boolean;
  /**
   * Namespace children only: enter the network namespace with `nsenter --net` instead of `ip netns
   * exec`, which remounts /sys for the namespace and so leaves /sys/fs/cgroup empty. For a helper
   * that must create cgroups and have nft resolve cgroup paths (scope.test.ts).
   */
  keepSysMounts?: boolean;
}

export interface ExitStatus {
  /** Exit code, or null when killed by a signal or never started. */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process could not be started at all (ENOENT, EACCES). */
  error?: Error;
}

export interface ProcHandle {
  readonly pid: number;
  readonly argv: readonly string[];
  /** Open only with `stdin: 'pipe'`. */
  readonly stdin: Writable | null;
  /** Undefined while running. */
  readonly exitStatus: ExitStatus | undefined;
  /** Retained stdout/stderr text so far. */
  output(): { stdout: string; stderr: string };
  /** Total bytes seen on stdout (including dropped ones). */
  stdoutBytes(): number;
  /** Resolves once stdout or stderr matches; rejects on exit or after `timeoutMs`. */
  waitForOutput(pattern: RegExp | string, timeoutMs: number): Promise<void>;
  /** Resolves with the exit status; rejects after `timeoutMs` (the process is left running). */
  waitForExit(timeoutMs: number): Promise<ExitStatus>;
  /** Sends `signal` (default SIGTERM) to this pid; false if it already exited. */
  kill(signal?: NodeJS.Signals): boolean;
  /** SIGTERM, wait up to `graceMs`, then SIGKILL and wait again; idempotent. */
  stop(graceMs?: number): Promise<ExitStatus>;
}

/** What the harness names in errors: argv plus the tail of both streams. */
function describeProc(argv: readonly string[], out: { stdout: string; stderr: string }): string {
  const tail = (s: string) => (s.length > 4000 ? `...${s.slice(-4000)}` : s);
  return `${argv.join(' ')}\n--- stdout ---\n${tail(out.stdout)}\n--- stderr ---\n${tail(out.stderr)}`;
}

/** Starts `argv` in this network namespace. */
export function spawnProcess(argv: readonly string[], opts: SpawnOptions = {}): ProcHandle {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error('spawnProcess: empty argv');
  const stdout = new BoundedOutput(opts.maxOutputBytes);
  const stderr = new BoundedOutput(opts.maxOutputBytes);
  const wantStdin = opts.input !== undefined || opts.stdin === 'pipe';
  const child = spawn(file, args, {
    env: opts.env ?? cleanEnv(),
    cwd: opts.cwd,
    stdio: [wantStdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
  });
  let status: ExitStatus | undefined;
  const exitWaiters = new Set<(s: ExitStatus) => void>();
  const outputWaiters = new Set<() => void>();
  const settle = (s: ExitStatus) => {
    if (status !== undefined) return;
    status = s;
    for (const w of exitWaiters) w(s);
    for (const w of outputWaiters) w();
  };
  // Piped above, so both exist; the conditional stdin keeps TypeScript from seeing that.
  const childStdout = child.stdout as Readable;
  const childStderr = child.stderr as Readable;
  childStdout.on('data', (chunk: Buffer) => {
    stdout.push(chunk);
    opts.onStdout?.(chunk);
    for (const w of outputWaiters) w();
  });
  childStderr.on('data', (chunk: Buffer) => {
    stderr.push(chunk);
    for (const w of outputWaiters) w();
  });
  // 'close' (not 'exit') so the streams are drained before anyone reads the final output.
  child.on('close', (code, signal) => settle({ code, signal }));
  child.on('error', (error) => settle({ code: null, signal: null, error }));
  child.stdin?.on('error', () => {
    // The child may exit without reading stdin; its exit status tells the story.
  });
  if (opts.input !== undefined) child.stdin?.end(opts.input);

  const output = () => ({ stdout: stdout.toString(), stderr: stderr.toString() });
  const handle: ProcHandle = {
    pid: child.pid ?? -1,
    argv: [...argv],
    stdin: opts.stdin === 'pipe' ? child.stdin : null,
    get exitStatus() {
      return status;
    },
    output,
    stdoutBytes: () => stdout.total,
    waitForOutput(pattern, timeoutMs) {
      const matches = () => {
        const o = output();
        return typeof pattern === 'string'
          ? o.stdout.includes(pattern) || o.stderr.includes(pattern)
          : pattern.test(o.stdout) || pattern.test(o.stderr);
      };
      return new Promise<void>((resolve, reject) => {
        const check = () => {
          if (matches()) finish();
          else if (status !== undefined) finish(new Error(`exited (${fmtStatus(status)}) before printing ${pattern}: ${describeProc(argv, output())}`));
        };
        const timer = setTimeout(
          () => finish(new Error(`no ${pattern} within ${timeoutMs} ms: ${describeProc(argv, output())}`)),
          timeoutMs,
        );
        const finish = (err?: Error) => {
          clearTimeout(timer);
          outputWaiters.delete(check);
          if (err) reject(err);
          else resolve();
        };
        outputWaiters.add(check);
        check();
      });
    },
    waitForExit(timeoutMs) {
      if (status !== undefined) return Promise.resolve(status);
      return new Promise<ExitStatus>((resolve, reject) => {
        const done = (s: ExitStatus) => {
          clearTimeout(timer);
          resolve(s);
        };
        const timer = setTimeout(() => {
          exitWaiters.delete(done);
          reject(new Error(`still running after ${timeoutMs} ms (pid ${handle.pid}): ${describeProc(argv, output())}`));
        }, timeoutMs);
        exitWaiters.add(done);
      });
    },
    kill(signal = 'SIGTERM') {
      if (status !== undefined || handle.pid < 0) return false;
      try {
        process.kill(handle.pid, signal);
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
        throw err;
      }
    },
    async stop(graceMs = 3000) {
      if (status !== undefined) return status;
      handle.kill('SIGTERM');
      try {
        return await handle.waitForExit(graceMs);
      } catch {
        handle.kill('SIGKILL');
        return handle.waitForExit(5000);
      }
    },
  };
  return handle;
}

function fmtStatus(s: ExitStatus): string {
  if (s.error) return `could not start: ${s.error.message}`;
  return s.signal ? `signal ${s.signal}` : `code ${s.code}`;
}

/** `ip netns exec <ns> argv...`: ip setns()es and execs, so the handle's pid is argv's own pid. */
export function nsArgv(ns: string, argv: readonly string[]): string[] {
  return ['ip', 'netns', 'exec', ns, ...argv];
}

/** `nsenter --net=/run/netns/<ns> argv...`: the network namespace only, every mount as it is here. */
export function nsenterArgv(ns: string, argv: readonly string[]): string[] {
  return ['nsenter', `--net=/run/netns/${ns}`, ...argv];
}

/** Starts `argv` inside network namespace `ns` (see SpawnOptions.mountSandbox). */
export function spawnInNs(ns: string, argv: readonly string[], opts: SpawnOptions = {}): ProcHandle {
  if ((opts.mountSandbox ?? true) && !inTrustSandbox()) {
    throw new Error(
      `spawnInNs(${ns}, ${argv[0]}): this process is not inside the trust-store sandbox; ` +
        'call `await ensureTrustSandbox()` at the top of the test file (or pass mountSandbox: false for read-only probes)',
    );
  }
  return spawnProcess(opts.keepSysMounts ? nsenterArgv(ns, argv) : nsArgv(ns, argv), opts);
}

export interface RunOptions extends SpawnOptions {
  /** Kill (SIGKILL) and reject after this long. Default 30 s. */
  timeoutMs?: number;
}

export interface RunResult extends ExitStatus {
  stdout: string;
  stderr: string;
  /** Total stdout bytes, including any beyond the retained copy. */
  stdoutBytes: number;
  durationMs: number;
}

async function runHandle(start: () => ProcHandle, timeoutMs: number): Promise<RunResult> {
  const t0 = performance.now();
  const handle = start();
  let status: ExitStatus;
  try {
    status = await handle.waitForExit(timeoutMs);
  } catch (err) {
    handle.kill('SIGKILL');
    await handle.waitForExit(5000).catch(() => undefined);
    throw err;
  }
  if (status.error) throw new Error(`${handle.argv.join(' ')}: could not start: ${status.error.message}`);
  return { ...status, ...handle.output(), stdoutBytes: handle.stdoutBytes(), durationMs: performance.now() - t0 };
}

/** Runs `argv` in this network namespace to completion (bounded by `timeoutMs`). */
export function runCommand(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return runHandle(() => spawnProcess(argv, opts), opts.timeoutMs ?? 30_000);
}

/** Runs `argv` inside `ns` to completion; rejects on timeout (after killing it) or if it cannot start. */
export function runInNs(ns: string, argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return runHandle(() => spawnInNs(ns, argv, opts), opts.timeoutMs ?? 30_000);
}

export interface Listener {
  /** Local address as ss prints it without brackets or scope: "198.18.0.2", "::", "*". */
  address: string;
  port: number;
}

/** Parses `ss -Hltn` / `ss -Hlun` output into local addresses and ports. */
export function parseSsListeners(text: string): Listener[] {
  const out: Listener[] = [];
  for (const line of text.split('\n')) {
    // Columns: State Recv-Q Send-Q Local:Port Peer:Port [Process]
    const local = line.trim().split(/\s+/)[3];
    if (local === undefined) continue;
    const colon = local.lastIndexOf(':');
    if (colon < 0) continue;
    const port = Number(local.slice(colon + 1));
    // "[fd00::2]" -> "fd00::2"; "198.18.0.2%tpu1" (bound to a device) -> "198.18.0.2".
    const address = local.slice(0, colon).replace(/^\[(.*)\]$/, '$1').replace(/%.*$/, '');
    if (Number.isInteger(port)) out.push({ address, port });
  }
  return out;
}

export interface WaitForListenOptions {
  /** All of these must be listening (exact local address); default: any address will do. */
  addresses?: readonly string[];
  /** Pause between polls. Default 50 ms. */
  intervalMs?: number;
}

/**
 * Polls `ss` inside `ns` until something listens on `port` (and on every `addresses` entry);
 * resolves with the listeners found, rejects with the last `ss` output after `timeoutMs`.
 */
export async function waitForListen(
  ns: string,
  port: number,
  proto: 'tcp' | 'udp' = 'tcp',
  timeoutMs = 10_000,
  opts: WaitForListenOptions = {},
): Promise<Listener[]> {
  const interval = opts.intervalMs ?? 50;
  const deadline = performance.now() + timeoutMs;
  const maxPolls = Math.ceil(timeoutMs / interval) + 1;
  let last = '';
  for (let poll = 0; poll < maxPolls && performance.now() < deadline; poll++) {
    const r = await runInNs(ns, ['ss', proto === 'tcp' ? '-Hltn' : '-Hlun'], {
      mountSandbox: false,
      timeoutMs: Math.max(1000, Math.min(5000, deadline - performance.now())),
    });
    last = r.stdout + r.stderr;
    if (r.code !== 0) throw new Error(`ss failed in ${ns}: ${last}`);
    const found = parseSsListeners(r.stdout).filter((l) => l.port === port);
    const want = opts.addresses ?? [];
    if (found.length > 0 && want.every((a) => found.some((l) => l.address === a))) return found;
    await delay(interval);
  }
  throw new Error(
    `nothing listening on ${proto} port ${port}${opts.addresses ? ` at ${opts.addresses.join(', ')}` : ''} in ${ns} ` +
      `after ${timeoutMs} ms; last ss output:\n${last}`,
  );
}
