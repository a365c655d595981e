/**
 * The trust-store sandbox from the Node side: detect whether this process runs inside it, and
 * re-execute the process through `scripts/trust-sandbox.sh` when it does not. The script (the only
 * code that mounts anything) unshares a private mount namespace, covers every system trust-store
 * directory with a tmpfs copy of itself and /run/netns with an empty tmpfs, then execs us again.
 * Whatever tproxy-helper installs there (its CA, a rebuilt /etc/ssl/certs) and every network
 * namespace name created there vanish with the mount namespace; the host's store is never written.
 *
 * Two users: `tproxy-ui --demo` (ensureDemoSandbox in ./index.ts) and the e2e suite
 * (test/e2e/lib/sandbox.ts imports this module through `@tproxy/client/trust-sandbox`). The code
 * lives here because the demo ships with the product and product code must never import test
 * code; tests may import product code. This module never mounts, and the outer process it leaves
 * behind after a re-exec only relays signals and the exit status.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

/** Set to 1 by the script inside the sandbox (a hint only: inTrustSandbox() checks the mounts). */
export const SANDBOX_ENV = 'TPROXY_TRUST_SANDBOX';
/** A pid in the original mount namespace; `/proc/<pid>/root/...` is the host's view of a path. */
export const SANDBOX_HOST_PID_ENV = 'TPROXY_SANDBOX_HOST_PID';
/** Mount source name the script gives its trust-store tmpfs mounts (visible in mountinfo). */
export const SANDBOX_MOUNT_SOURCE = 'tproxy-sandbox-trust';
/** Mount source name of the tmpfs over /run/netns (network namespace names private to the run). */
export const SANDBOX_NETNS_SOURCE = 'tproxy-sandbox-netns';
/** Where the script lives, relative to the repository root. */
export const TRUST_SANDBOX_SCRIPT_PATH = 'scripts/trust-sandbox.sh';

/** The trust directories the helper's Debian/Ubuntu branch writes; both must be sandboxed. */
export const REQUIRED_TRUST_DIRS: readonly string[] = ['/usr/local/share/ca-certificates', '/etc/ssl/certs'];

export type SandboxState = { inside: true } | { inside: false; reason: string };

/**
 * `scripts/trust-sandbox.sh`, found by walking up from `fromDir` (this module's directory: works
 * from src/ under tsx and from dist/); undefined when no ancestor has it.
 */
export function findTrustSandboxScript(fromDir = dirname(fileURLToPath(import.meta.url))): string | undefined {
  // Bounded by the depth of the path: dirname('/') === '/'.
  for (let dir = fromDir, i = 0; i < 64; i++) {
    const candidate = join(dir, TRUST_SANDBOX_SCRIPT_PATH);
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
  return undefined;
}

/** Mount points in `mountinfo` (default: this process's) whose tmpfs source is `source`. */
export function mountsWithSource(source: string, mountinfo = readFileSync('/proc/self/mountinfo', 'utf8')): string[] {
  const dirs: string[] = [];
  for (const line of mountinfo.split('\n')) {
    // proc(5): "... mount-point options [optional fields] - fstype source super-options".
    const [left, right] = line.split(' - ');
    if (left === undefined || right === undefined) continue;
    const [fstype, src] = right.split(' ');
    const mountPoint = left.split(' ')[4];
    if (fstype === 'tmpfs' && src === source && mountPoint !== undefined) {
      dirs.push(mountPoint.replace(/\\040/g, ' '));
    }
  }
  return dirs;
}

/** Trust-store directories the script covered with a tmpfs in this mount namespace. */
export function sandboxedTrustDirs(mountinfo?: string): string[] {
  return mountsWithSource(SANDBOX_MOUNT_SOURCE, mountinfo);
}

/** True when this process runs inside the sandbox (checked against the kernel, not just the env). */
export function inTrustSandbox(env: NodeJS.ProcessEnv = process.env, mountinfo?: string): boolean {
  if (env[SANDBOX_ENV] !== '1') return false;
  const info = mountinfo ?? readFileSync('/proc/self/mountinfo', 'utf8');
  const dirs = sandboxedTrustDirs(info);
  return REQUIRED_TRUST_DIRS.every((d) => dirs.includes(d)) && mountsWithSource(SANDBOX_NETNS_SOURCE, info).includes('/run/netns');
}

/** The host-side pid the script exported, or undefined outside the sandbox. */
export function hostViewPid(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const pid = Number(env[SANDBOX_HOST_PID_ENV]);
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}

/** Why this process cannot enter the sandbox, or undefined when it can (root, unshare works, script found). */
export async function sandboxUnavailableReason(script = findTrustSandboxScript()): Promise<string | undefined> {
  if (process.env[SANDBOX_ENV] === '1') {
    return `${SANDBOX_ENV}=1 but the trust directories are not sandboxed mounts (was the variable inherited from elsewhere?)`;
  }
  if (process.getuid?.() !== 0) {
    return `needs root to create the private mount namespace and network namespaces (uid ${process.getuid?.()})`;
  }
  if (script === undefined) return `cannot find ${TRUST_SANDBOX_SCRIPT_PATH} above ${dirname(fileURLToPath(import.meta.url))}`;
  try {
    await execFileP('unshare', ['--mount', '--propagation', 'private', '--', 'true'], { timeout: 10_000 });
  } catch (err) {
    return `cannot create a private mount namespace (unshare --mount): ${(err as Error).message}`;
  }
  return undefined;
}

/** This process's own command line: the same node, node flags, script and arguments. */
export function selfArgv(): string[] {
  return [process.execPath, ...process.execArgv, ...process.argv.slice(1)];
}

/** argv that runs `argv` inside the sandbox. */
export function sandboxArgv(script: string, argv: readonly string[]): string[] {
  return ['/bin/sh', script, ...argv];
}

/** Shell convention for death by signal: 128 + signal number. */
export function exitCodeFor(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  return 128 + (signal ? (constants.signals[signal] ?? 1) : 0);
}

/**
 * Runs `argv` inside the sandbox with this process's stdio, and turns this process into a relay:
 * SIGINT/SIGTERM/SIGHUP are forwarded to the child, and this process exits with the child's status
 * (128 + n when killed by signal n). Never resolves.
 */
export function reexecInSandbox(script: string, argv: readonly string[] = selfArgv()): Promise<never> {
  const [file, ...args] = sandboxArgv(script, argv);
  const child = spawn(file as string, args, { stdio: 'inherit', env: process.env });
  const forward = (signal: NodeJS.Signals) => () => {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, forward(signal));
  child.on('error', (err) => {
    process.stderr.write(`trust sandbox: could not start ${script}: ${err.message}\n`);
    process.exit(125);
  });
  child.on('exit', (code, signal) => process.exit(exitCodeFor(code, signal)));
  return new Promise<never>(() => {});
}

/**
 * Inside the sandbox: resolves `{ inside: true }`. Cannot enter (not root, no unshare, no script):
 * resolves `{ inside: false, reason }`. Otherwise re-executes this process inside the sandbox and
 * never resolves (see reexecInSandbox).
 */
export async function enterTrustSandbox(script = findTrustSandboxScript()): Promise<SandboxState> {
  if (inTrustSandbox()) return { inside: true };
  const reason = await sandboxUnavailableReason(script);
  if (reason !== undefined || script === undefined) return { inside: false, reason: reason ?? 'no sandbox script' };
  return reexecInSandbox(script);
}

let watchdog: NodeJS.Timeout | undefined;

/**
 * Inside the sandbox, the host-side relay that started us normally outlives us. If it is killed
 * (SIGKILL from a runner timeout, a closed terminal), call `onGone` (which should exit, so 'exit'
 * hooks clean up) instead of lingering orphaned. Polls once a second; the timer does not keep the
 * process alive. No-op outside the sandbox or when our parent is not the relay.
 */
export function watchSandboxParent(onGone: (parentPid: number) => void): void {
  if (watchdog !== undefined) return;
  const parent = hostViewPid();
  if (parent === undefined || parent !== process.ppid) return;
  watchdog = setInterval(() => {
    if (process.ppid !== parent) {
      clearInterval(watchdog);
      onGone(parent);
    }
  }, 1000);
  watchdog.unref();
}
