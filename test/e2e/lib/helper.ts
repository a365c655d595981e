/**
 * Starts the real tproxy-helper the way production does: under socket activation
 * (systemd-socket-activate stands in for systemd), inside the client namespace, with its own state
 * dir and socket path, trusting the test upstream CA through --upstream-ca. Also runs the real
 * tproxyctl as a process and reads the helper's resident memory for the streaming test.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TproxyClient } from '@tproxy/client';
import type { ProcHandle } from './proc.js';
import { runCommand, type RunResult } from './proc.js';
import { socketActivateArgv, waitForSocket } from './socket-activate.js';
import type { Topology } from './topology.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** The built bins; `npm test` builds before running tests. */
export const HELPER_MAIN = join(ROOT, 'packages/helper/dist/main.js');
export const TPROXYCTL_MAIN = join(ROOT, 'packages/client/dist/cli/main.js');
export const UI_MAIN = join(ROOT, 'packages/client/dist/ui/main.js');

export interface HelperHandle {
  proc: ProcHandle;
  socketPath: string;
  stateDir: string;
  /** A connected typed client (the first connection also execs the helper). */
  client: TproxyClient;
}

export interface StartHelperOptions {
  /** Reuse another helper's state dir (its applied record) with a fresh socket. Default: `name`. */
  stateName?: string;
  /** Bind the socket itself (0600, chowned to the first allowed uid) instead of socket activation. */
  selfBind?: boolean;
  allowUids?: number[];
  /** More helper flags (e.g. `--idle-exit 2`). */
  extraArgs?: readonly string[];
  /** Enter the client namespace with nsenter, keeping the host's /sys mounts (cgroups; see SpawnOptions.keepSysMounts). */
  keepSysMounts?: boolean;
  /** PATH for the helper (through env(1), which execs in place: the pid stays the activated one). */
  path?: string;
}

export async function startHelper(topo: Topology, dir: string, name: string, upstreamCa: string, opts: StartHelperOptions = {}): Promise<HelperHandle> {
  const socketPath = join(dir, `${name}.sock`);
  const stateDir = join(dir, `${opts.stateName ?? name}-state`);
  const helperArgv = [
    ...(opts.path !== undefined ? ['env', `PATH=${opts.path}`] : []),
    process.execPath,
    HELPER_MAIN,
    '--socket',
    socketPath,
    '--state-dir',
    stateDir,
    '--upstream-ca',
    upstreamCa,
    '--log-level',
    'debug',
    ...(opts.allowUids ?? []).flatMap((uid) => ['--allow-uid', String(uid)]),
    ...(opts.extraArgs ?? []),
  ];
  const proc = topo.spawn(topo.clientNs, opts.selfBind ? helperArgv : socketActivateArgv(socketPath, helperArgv, { fdName: 'rpc' }), opts.keepSysMounts ? { keepSysMounts: true } : {});
  await waitForSocket(socketPath);
  const client = await TproxyClient.connect({ socketPath, timeoutMs: 30_000 });
  return { proc, socketPath, stateDir, client };
}

/** Runs the real tproxyctl against `socketPath` (from the test's namespace: the socket is a file). */
export function tproxyctl(socketPath: string, args: readonly string[], timeoutMs = 30_000): Promise<RunResult> {
  return runCommand([process.execPath, TPROXYCTL_MAIN, '--socket', socketPath, ...args], { timeoutMs });
}

/** Resident set size of a process in bytes, from /proc (the helper's pid is the activator's). */
export function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}
