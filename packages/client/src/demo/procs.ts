/**
 * Starting, watching and stopping the demo's processes (site, tproxy-helper, traffic generator).
 * Each is started inside a network namespace with `ip netns exec` (which execs in place, so the
 * pid we hold is the program's own pid), in a new session (a terminal's Ctrl-C reaches only the
 * dashboard, which decides), with its stdout and stderr appended to a log file in the demo's temp
 * dir: nothing a child prints may reach the terminal the dashboard draws on. Every signal goes to
 * a pid we started; every wait is bounded. argv builders are pure so tests check them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, closeSync, constants, existsSync, openSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { DEMO_ADDRS } from './network.js';

/** Files in the demo's temp dir. */
export interface DemoPaths {
  dir: string;
  socketPath: string;
  stateDir: string;
  siteReady: string;
  siteLog: string;
  helperLog: string;
  trafficLog: string;
}

export function demoPaths(dir: string): DemoPaths {
  return {
    dir,
    socketPath: join(dir, 'helper.sock'),
    stateDir: join(dir, 'state'),
    siteReady: join(dir, 'site.ready'),
    siteLog: join(dir, 'site.log'),
    helperLog: join(dir, 'helper.log'),
    trafficLog: join(dir, 'traffic.log'),
  };
}

/** packages/client, from this module's directory (src/demo under tsx, dist/demo when built). */
export function clientPackageRoot(moduleDir = dirname(fileURLToPath(import.meta.url))): string {
  return join(moduleDir, '..', '..');
}

/**
 * A demo program as compiled JS: always dist/demo/<name>.js, even when this module runs from src
 * under tsx (tests), because the demo never relies on tsx at runtime.
 */
export function builtDemoScript(name: 'site' | 'traffic', root = clientPackageRoot()): string {
  const file = join(root, 'dist', 'demo', `${name}.js`);
  if (!existsSync(file)) throw new Error(`${file} is missing: build first (npm run build)`);
  return file;
}

/**
 * tproxy-helper's entry script, found without importing helper code: the workspace's
 * node_modules/.bin/tproxy-helper (walking up from `fromDir`), else @tproxy/helper's package.json
 * `bin`. Resolved through symlinks, to be run with process.execPath.
 */
export function resolveHelperMain(fromDir = dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = fromDir, i = 0; i < 64; i++) {
    const bin = join(dir, 'node_modules', '.bin', 'tproxy-helper');
    if (existsSync(bin)) return realpathSync(bin);
    const pkg = join(dir, 'node_modules', '@tproxy', 'helper', 'package.json');
    if (existsSync(pkg)) {
      const { bin: bins } = JSON.parse(readFileSync(pkg, 'utf8')) as { bin?: string | Record<string, string> };
      const rel = typeof bins === 'string' ? bins : bins?.['tproxy-helper'];
      if (rel) {
        const main = join(dirname(realpathSync(pkg)), rel);
        if (existsSync(main)) return main;
      }
    }
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  throw new Error(`cannot find tproxy-helper (node_modules/.bin/tproxy-helper) above ${fromDir}: run npm install && npm run build`);
}

/** `ip netns exec <ns> argv...` */
export function nsArgv(ns: string, argv: readonly string[]): string[] {
  return ['ip', 'netns', 'exec', ns, ...argv];
}

export function siteArgv(node: string, script: string, cert: string, key: string, paths: DemoPaths, parentPid: number): string[] {
  return [node, script, '--cert', cert, '--key', key, '--host', DEMO_ADDRS.site4, '--host', DEMO_ADDRS.site6, '--port', '443',
    '--ready-file', paths.siteReady, '--parent-pid', String(parentPid)];
}

/**
 * tproxy-helper under `setpriv --pdeathsig TERM` when available: the helper does not watch its
 * parent, so without it a SIGKILLed demo would leave the helper running; with it the kernel sends
 * SIGTERM when we die and the helper reverts everything itself (prctl(2) PR_SET_PDEATHSIG survives
 * the exec of a non-setuid program).
 */
export function helperArgv(node: string, helperMain: string, paths: DemoPaths, upstreamCa: string, setpriv: string | undefined): string[] {
  const helper = [node, helperMain, '--socket', paths.socketPath, '--state-dir', paths.stateDir, '--upstream-ca', upstreamCa, '--log-level', 'info'];
  return setpriv ? [setpriv, '--pdeathsig', 'TERM', '--', ...helper] : helper;
}

export function trafficArgv(node: string, script: string, parentPid: number): string[] {
  // --use-openssl-ca: trust the system store (the sandboxed one holding tproxy's CA), as curl does.
  return [node, '--use-openssl-ca', script, '--site', DEMO_ADDRS.site4, '--down', DEMO_ADDRS.down4, '--port', '443',
    '--interval-ms', '1500', '--parent-pid', String(parentPid)];
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process could not be started. */
  error?: Error;
}

export function describeExit(e: ExitInfo): string {
  if (e.error) return `could not start: ${e.error.message}`;
  return e.signal ? `killed by ${e.signal}` : `exit code ${e.code}`;
}

/** Last `bytes` of a log file, for error messages; empty when unreadable. */
export function tailFile(path: string, bytes = 2000): string {
  try {
    const text = readFileSync(path, 'utf8');
    return text.length > bytes ? `...${text.slice(-bytes)}` : text;
  } catch {
    return '';
  }
}

/** A process the demo started. */
export class DemoProcess {
  readonly pid: number;
  private exit: ExitInfo | undefined;
  private readonly exited: Promise<ExitInfo>;

  constructor(
    readonly name: string,
    readonly logFile: string,
    private readonly child: ChildProcess,
  ) {
    this.pid = child.pid ?? -1;
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exit ??= { code, signal };
        resolve(this.exit);
      });
      child.once('error', (error) => {
        this.exit ??= { code: null, signal: null, error };
        resolve(this.exit);
      });
    });
  }

  /** Undefined while running. */
  get exitInfo(): ExitInfo | undefined {
    return this.exit;
  }

  /** Resolves with the exit status whenever the process ends. */
  whenExited(): Promise<ExitInfo> {
    return this.exited;
  }

  /** Resolves with the exit status, or undefined after `timeoutMs`. */
  async waitForExit(timeoutMs: number): Promise<ExitInfo | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Signals this pid; false when it has already exited. */
  kill(signal: NodeJS.Signals): boolean {
    if (this.exit !== undefined || this.pid < 0) return false;
    try {
      process.kill(this.pid, signal);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
      throw err;
    }
  }

  /** SIGTERM, up to `graceMs`, then SIGKILL and up to 5 s more. Idempotent. */
  async stop(graceMs: number): Promise<ExitInfo | undefined> {
    if (this.exit !== undefined) return this.exit;
    this.kill('SIGTERM');
    const status = await this.waitForExit(graceMs);
    if (status !== undefined) return status;
    this.kill('SIGKILL');
    return this.waitForExit(5000);
  }
}

/**
 * Starts `argv` with stdout and stderr appended to `logFile`, stdin closed, in its own session.
 * The child does not keep our event loop alive: if the dashboard ends without stop(), the 'exit'
 * hook still kills it.
 */
export function spawnLogged(name: string, argv: readonly string[], logFile: string, env: NodeJS.ProcessEnv): DemoProcess {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error(`${name}: empty argv`);
  const fd = openSync(logFile, 'a', 0o600);
  try {
    const child = spawn(file, args, { stdio: ['ignore', fd, fd], env, detached: true });
    child.unref();
    return new DemoProcess(name, logFile, child);
  } finally {
    closeSync(fd);
  }
}

/**
 * Polls `check` every `intervalMs` until it returns true; rejects after `timeoutMs` with `what`, or
 * at once when `failFast` returns a reason (the process we wait for died).
 */
export async function pollUntil(
  what: string,
  check: () => boolean | Promise<boolean>,
  opts: { timeoutMs: number; intervalMs?: number; failFast?: () => string | undefined },
): Promise<void> {
  const interval = opts.intervalMs ?? 50;
  const deadline = performance.now() + opts.timeoutMs;
  const maxPolls = Math.ceil(opts.timeoutMs / interval) + 1;
  for (let i = 0; i < maxPolls && performance.now() < deadline; i++) {
    if (await check()) return;
    const failed = opts.failFast?.();
    if (failed !== undefined) throw new Error(`${what}: ${failed}`);
    await delay(interval);
  }
  throw new Error(`${what}: still not ready after ${opts.timeoutMs} ms`);
}

/** True when `path` is a Unix socket. */
export function isSocket(path: string): boolean {
  try {
    return statSync(path).isSocket();
  } catch {
    return false;
  }
}

/** Absolute path of executable `cmd` on PATH, or undefined. */
export function findOnPath(cmd: string, path = process.env.PATH ?? ''): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, cmd);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not in this directory.
    }
  }
  return undefined;
}
