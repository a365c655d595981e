/**
 * Starting a daemon the way systemd's tproxy-helper.socket does, for e2e tests (STYLE.md rule 24):
 * `systemd-socket-activate` binds the Unix socket, waits for the first connection, then execs the
 * daemon in place (same pid) with the socket as fd 3 and LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES set.
 * Facts the callers rely on (systemd-socket-activate(1), checked by topology.test.ts):
 *   - the child's environment is only TERM, PATH, HOME, LISTEN_* and the `-E` pairs: pass anything
 *     else (NODE_EXTRA_CA_CERTS, a state dir) through `env`;
 *   - the socket is created with the process umask (0644 here), not SocketMode=0600;
 *   - the daemon starts on the first connection, so "socket exists" is readiness for the RPC, and
 *     anything the daemon listens on itself appears only after someone has connected.
 * Pure argv building plus one bounded poll; it starts nothing itself.
 */
import { stat } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';

export interface SocketActivateOptions {
  /** LISTEN_FDNAMES value (the unit's FileDescriptorName=). */
  fdName?: string;
  /** Environment for the daemon, passed as `-E NAME=VALUE` (the only way through). */
  env?: Readonly<Record<string, string>>;
}

/** argv for `systemd-socket-activate -l <socketPath> ... <argv>`. */
export function socketActivateArgv(socketPath: string, argv: readonly string[], opts: SocketActivateOptions = {}): string[] {
  const out = ['systemd-socket-activate', '--listen', socketPath];
  if (opts.fdName !== undefined) out.push(`--fdname=${opts.fdName}`);
  for (const [name, value] of Object.entries(opts.env ?? {})) out.push('--setenv', `${name}=${value}`);
  return [...out, ...argv];
}

/** Polls until `path` is a Unix socket; rejects after `timeoutMs`. */
export async function waitForSocket(path: string, timeoutMs = 10_000, intervalMs = 25): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  const maxPolls = Math.ceil(timeoutMs / intervalMs) + 1;
  for (let poll = 0; poll < maxPolls && performance.now() < deadline; poll++) {
    const s = await stat(path).catch(() => undefined);
    if (s?.isSocket()) return;
    await delay(intervalMs);
  }
  throw new Error(`no Unix socket at ${path} after ${timeoutMs} ms`);
}
