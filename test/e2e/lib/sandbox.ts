/**
 * The trust-store sandbox from the test process's side. Design: each e2e test file calls
 * `await ensureTrustSandbox()` before registering tests; the first time, the process re-executes
 * itself (same node, same flags, same file) through `in-sandbox.sh`, which unshares a private
 * mount namespace and covers the system trust-store directories with tmpfs copies. The outer
 * process only relays its child's exit status and signals. So the test process, the helper and
 * every curl/node client (all started with `ip netns exec`, which copies the caller's mount
 * namespace) share one private view of /usr/local/share/ca-certificates and /etc/ssl/certs, and
 * of /run/netns (namespace names are private to the run).
 *
 * It must never mount anything itself and never run tests in the outer process; the shell script
 * is the only code that mounts, after checking it is in a new private mount namespace.
 */
import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

/** Wrapper script that creates the sandbox and execs its arguments inside it. */
export const IN_SANDBOX_SCRIPT = fileURLToPath(new URL('./in-sandbox.sh', import.meta.url));

/** Mount source name in-sandbox.sh gives its tmpfs mounts; visible in /proc/self/mountinfo. */
export const SANDBOX_MOUNT_SOURCE = 'tproxy-e2e-trust';

/** The trust directories the helper's Debian/Ubuntu branch writes; both must be sandboxed. */
export const REQUIRED_TRUST_DIRS: readonly string[] = ['/usr/local/share/ca-certificates', '/etc/ssl/certs'];

export type SandboxState = { inside: true } | { inside: false; reason: string };

/** Mount source name in-sandbox.sh gives the tmpfs over /run/netns (private netns names). */
export const SANDBOX_NETNS_SOURCE = 'tproxy-e2e-netns';

/** Mount points in this process's mount namespace whose tmpfs source is `source`. */
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

/** Trust-store directories in-sandbox.sh covered with a tmpfs in this mount namespace. */
export function sandboxedTrustDirs(mountinfo?: string): string[] {
  return mountsWithSource(SANDBOX_MOUNT_SOURCE, mountinfo);
}

/** True when this process runs inside the sandbox (checked against the kernel, not just the env). */
export function inTrustSandbox(): boolean {
  if (process.env.TPROXY_E2E_SANDBOX !== '1') return false;
  const mountinfo = readFileSync('/proc/self/mountinfo', 'utf8');
  const dirs = sandboxedTrustDirs(mountinfo);
  return REQUIRED_TRUST_DIRS.every((d) => dirs.includes(d)) && mountsWithSource(SANDBOX_NETNS_SOURCE, mountinfo).includes('/run/netns');
}

/**
 * A process outside the sandbox (the one that started it): `/proc/<pid>/root/...` resolves paths
 * in that process's mount namespace, i.e. what the host sees. Undefined outside the sandbox.
 */
export function hostViewPid(): number | undefined {
  const pid = Number(process.env.TPROXY_E2E_HOST_PID);
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}

/** `path` as seen from the host's mount namespace (through hostViewPid()'s /proc root link). */
export function hostViewPath(path: string): string {
  const pid = hostViewPid();
  if (pid === undefined) throw new Error('hostViewPath: not inside the trust sandbox (no TPROXY_E2E_HOST_PID)');
  return `/proc/${pid}/root${path}`;
}

let watchdog: NodeJS.Timeout | undefined;

/**
 * Inside: the sandbox's host-side parent normally outlives us; if it is killed (SIGKILL from a
 * runner timeout), exit so the 'exit' hooks (topology cleanup) run instead of lingering orphaned.
 */
function watchParent(): void {
  if (watchdog !== undefined) return;
  const parent = hostViewPid();
  if (parent === undefined || parent !== process.ppid) return;
  watchdog = setInterval(() => {
    if (process.ppid !== parent) {
      console.error(`trust sandbox: parent ${parent} is gone; exiting to clean up`);
      process.exit(1);
    }
  }, 1000);
  watchdog.unref();
}

/**
 * Makes sure the calling test file runs inside the trust sandbox. Inside: resolves `{ inside:
 * true }`. Without root or without mount-namespace support: resolves `{ inside: false, reason }`
 * so the file can skip its tests. Otherwise re-executes this process inside the sandbox and never
 * resolves: the outer process exits with the inner one's status (its stdout, including node:test's
 * reporter stream, is inherited unchanged).
 */
export async function ensureTrustSandbox(): Promise<SandboxState> {
  if (inTrustSandbox()) {
    watchParent();
    return { inside: true };
  }
  if (process.env.TPROXY_E2E_SANDBOX === '1') {
    return { inside: false, reason: 'TPROXY_E2E_SANDBOX=1 but the trust directories are not sandboxed mounts' };
  }
  if (process.getuid?.() !== 0) {
    return { inside: false, reason: `needs root to create network namespaces and the trust-store sandbox (uid ${process.getuid?.()})` };
  }
  try {
    await execFileP('unshare', ['--mount', '--propagation', 'private', '--', 'true'], { timeout: 10_000 });
  } catch (err) {
    return { inside: false, reason: `cannot create a private mount namespace (unshare --mount): ${(err as Error).message}` };
  }
  const child = spawn('/bin/sh', [IN_SANDBOX_SCRIPT, process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: process.env,
  });
  const forward = (signal: NodeJS.Signals) => () => {
    if (child.pid !== undefined && child.exitCode === null) child.kill(signal);
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, forward(signal));
  child.on('error', (err) => {
    console.error(`trust sandbox: could not start ${IN_SANDBOX_SCRIPT}: ${err.message}`);
    process.exit(125);
  });
  child.on('exit', (code, signal) => {
    // Shell convention for death by signal: 128 + signal number.
    process.exit(code ?? 128 + (signal ? signalNumber(signal) : 0));
  });
  return new Promise<never>(() => {});
}

function signalNumber(signal: NodeJS.Signals): number {
  return constants.signals[signal] ?? 1;
}
