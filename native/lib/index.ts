// The typed front door of @tproxy/native: the NativeNet interface the helper codes against, the
// one loader that finds the compiled addon and says plainly why capture is impossible when it is,
// and the single audited reach into Node internals for a socket's fd. It owns no sockets: every
// fd the addon returns belongs to the caller. It must never throw at import time or from
// loadNative(), because the helper has to start (and report the reason) even without the addon.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Server, type Socket } from 'node:net';
import { basename, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export { errnoError, isErrnoError, type ErrnoError } from './errors.js';

/** The identity of the process at the other end of a Unix socket, as recorded by the kernel. */
export interface PeerCredentials {
  /** Peer pid at connect() time (the process may have exited since). */
  pid: number;
  /** Peer effective uid at connect() time, in our user namespace. */
  uid: number;
  /** Peer effective gid at connect() time, in our user namespace. */
  gid: number;
}

/**
 * The Linux socket calls Node lacks. Every method validates its arguments and throws a TypeError
 * for wrong types or out-of-range values; syscall failures are {@link ErrnoError}s
 * (`code` 'EPERM', 'EADDRINUSE', ...). Returned fds belong to the caller.
 */
export interface NativeNet {
  /**
   * Opens a listening TCP socket with IP_TRANSPARENT (IPV6_TRANSPARENT plus IPV6_V6ONLY for v6)
   * and SO_REUSEADDR, bound to `ip:port`, so TPROXY rules can deliver connections addressed to
   * other hosts to it. Adopt it with `net.createServer().listen({ fd })`.
   * @param ip IPv4 or IPv6 literal (no names, no %scope); its syntax picks the family.
   * @param port 0..65535; 0 lets the kernel choose (read it back with `server.address()`).
   * @param backlog listen(2) backlog, default 511 (Node's default); the kernel caps it at somaxconn.
   * @returns the listening fd (non-blocking, close-on-exec).
   * @throws ErrnoError EPERM without CAP_NET_ADMIN, EADDRINUSE, EADDRNOTAVAIL, ... The fd is closed.
   */
  createTransparentListener(ip: string, port: number, backlog?: number): number;

  /**
   * Connects a new TCP socket to `ip:port` with SO_MARK = `mark` set before connect(), so the SYN
   * and every later packet carry the mark (this is how the proxy's own upstream traffic bypasses
   * its capture rules). Waits on the event loop, not the threadpool.
   * Adopt the fd with `new net.Socket({ fd, readable: true, writable: true })`.
   * @param mark 1..0xffffffff (0 would be indistinguishable from unmarked traffic).
   * @param timeoutMs 1..2^31-1; the promise rejects with ETIMEDOUT when it elapses.
   * @throws TypeError synchronously for bad arguments.
   * @returns a promise of the connected fd; rejects with an ErrnoError (ECONNREFUSED,
   *   ETIMEDOUT, ENETUNREACH, EHOSTUNREACH, EPERM from setsockopt without CAP_NET_ADMIN, ...),
   *   in which case the socket was already closed.
   */
  connectMarked(ip: string, port: number, mark: number, timeoutMs: number): Promise<number>;

  /**
   * Sets SO_MARK on an existing socket; 0 clears it. Needs CAP_NET_ADMIN (EPERM otherwise).
   * @throws ErrnoError EBADF, ENOTSOCK, EPERM.
   */
  setSocketMark(fd: number, mark: number): void;

  /**
   * Reads SO_MARK of a socket (0 when unmarked). Needs no privilege.
   * @throws ErrnoError EBADF, ENOTSOCK.
   */
  getSocketMark(fd: number): number;

  /**
   * SO_PEERCRED of a connected Unix socket: who called connect() (or, on the client side, who
   * called listen()). An unconnected Unix socket yields the kernel's "nobody": pid 0 and
   * uid/gid 4294967295.
   * @throws TypeError when the fd is not an AF_UNIX socket (Linux would answer with those
   *   placeholders for TCP too); ErrnoError EBADF / ENOTSOCK.
   */
  getPeerCredentials(fd: number): PeerCredentials;

  /**
   * One sock_diag (inet_diag) query for the TCP socket whose local end is `localIp:localPort` and
   * remote end `remoteIp:remotePort`, in the caller's network namespace: its owner and inode, the
   * two facts process attribution needs, without reading /proc/net/tcp{,6}. A v4 4-tuple also
   * finds a dual-stack v6 socket using those v4 addresses. Synchronous (the kernel answers in the
   * send call).
   * @returns null when no such socket exists (it closed already).
   * @throws TypeError for bad arguments or mixed families; ErrnoError when the kernel lacks
   *   sock_diag for TCP (tcp_diag) or refuses the query.
   */
  findTcpSocket(localIp: string, localPort: number, remoteIp: string, remotePort: number): TcpSocketInfo | null;
}

/** What sock_diag reports of one TCP socket. */
export interface TcpSocketInfo {
  /** Owner uid (the creating process's fsuid, as in /proc/net/tcp). */
  uid: number;
  /** Socket inode: `socket:[inode]` among /proc/<pid>/fd/* names the process holding it; 0 for TIME_WAIT. */
  inode: number;
  /** TCP state as the kernel numbers it (1 ESTABLISHED, ...). */
  state: number;
}

/** What loadNative() found. */
export interface NativeStatus {
  /** The addon loaded (Linux, built). null when not. */
  native: NativeNet | null;
  /** Transparent capture is possible: addon loaded AND the process has CAP_NET_ADMIN (CapEff bit 12 in /proc/self/status). */
  captureAvailable: boolean;
  /** Why not, when captureAvailable is false. A sentence an operator can act on. */
  reason?: string;
}

/** Everything loadNative() reads from the outside world; tests pass their own to probeNative(). */
export interface NativeEnvironment {
  /** `process.platform`. */
  platform: NodeJS.Platform;
  /** Absolute path of the compiled addon. */
  addonPath: string;
  exists(path: string): boolean;
  /** Loads the addon (throws like `require` does). */
  load(path: string): unknown;
  /** Text of /proc/self/status (throws when unreadable). */
  readProcStatus(): string;
}

/** capabilities(7): CAP_NET_ADMIN, needed for IP_TRANSPARENT, SO_MARK and the firewall. */
const CAP_NET_ADMIN = 12n;

const NATIVE_METHODS = [
  'createTransparentListener',
  'connectMarked',
  'setSocketMark',
  'getSocketMark',
  'getPeerCredentials',
  'findTcpSocket',
] as const satisfies readonly (keyof NativeNet)[];

// This module runs compiled from dist/lib/ and, under tsx, from lib/; both sit under the package
// root that node-gyp builds into.
const here = dirname(fileURLToPath(import.meta.url));
const packageRoot = basename(dirname(here)) === 'dist' ? resolve(here, '../..') : resolve(here, '..');

/** Where `node-gyp rebuild` (run by `npm install`) puts the addon. */
export const ADDON_PATH = resolve(packageRoot, 'build/Release/tproxy_native.node');

/**
 * Whether a /proc/<pid>/status text grants CAP_NET_ADMIN in CapEff; undefined when it has no
 * parseable CapEff line.
 */
export function hasCapNetAdmin(procStatus: string): boolean | undefined {
  const match = /^CapEff:\s*([0-9a-fA-F]+)\s*$/m.exec(procStatus);
  if (!match?.[1]) return undefined;
  return ((BigInt(`0x${match[1]}`) >> CAP_NET_ADMIN) & 1n) === 1n;
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** loadNative() with its inputs injected. Never throws. */
export function probeNative(environment: NativeEnvironment): NativeStatus {
  const { platform, addonPath } = environment;
  if (platform !== 'linux') {
    return { native: null, captureAvailable: false, reason: `tproxy native addon is only built for Linux (this is ${platform})` };
  }
  let native: NativeNet;
  try {
    if (!environment.exists(addonPath)) {
      return {
        native: null,
        captureAvailable: false,
        reason: `native addon not built: ${addonPath} missing; run npm install (needs g++, make, python3)`,
      };
    }
    const loaded = environment.load(addonPath) as Partial<Record<string, unknown>> | null;
    const missing = NATIVE_METHODS.filter((name) => typeof loaded?.[name] !== 'function');
    if (missing.length > 0) {
      return {
        native: null,
        captureAvailable: false,
        reason: `native addon at ${addonPath} lacks ${missing.join(', ')} (stale build? run npm install)`,
      };
    }
    native = loaded as unknown as NativeNet;
  } catch (e) {
    return { native: null, captureAvailable: false, reason: `native addon failed to load from ${addonPath}: ${messageOf(e)}` };
  }

  let procStatus: string;
  try {
    procStatus = environment.readProcStatus();
  } catch (e) {
    return { native, captureAvailable: false, reason: `could not read /proc/self/status to check CAP_NET_ADMIN: ${messageOf(e)}` };
  }
  const capable = hasCapNetAdmin(procStatus);
  if (capable === undefined) {
    return { native, captureAvailable: false, reason: 'could not check CAP_NET_ADMIN: /proc/self/status has no CapEff line' };
  }
  if (!capable) {
    return {
      native,
      captureAvailable: false,
      reason: 'the helper lacks CAP_NET_ADMIN: run it as root (or with AmbientCapabilities=CAP_NET_ADMIN)',
    };
  }
  return { native, captureAvailable: true };
}

let memo: NativeStatus | undefined;

/** Loads the addon once per process and reports whether capture is possible. Never throws. */
export function loadNative(): NativeStatus {
  memo ??= probeNative({
    platform: process.platform,
    addonPath: ADDON_PATH,
    exists: existsSync,
    load: (path) => createRequire(import.meta.url)(path) as unknown,
    readProcStatus: () => readFileSync('/proc/self/status', 'utf8'),
  });
  return memo;
}

/**
 * The ONE audited place that reads Node's private `_handle.fd`. Node has no public API for a
 * socket's fd, and the addon needs one for SO_PEERCRED / SO_MARK on sockets Node created. Valid
 * while the socket or server is open; do not close the fd yourself (Node owns it).
 * @throws Error when there is no fd: not yet connected/listening, already closed, or a handle
 *   that does not wrap one (e.g. a TLS socket: pass its underlying net.Socket instead).
 */
export function socketFd(handle: Socket | Server): number {
  const kind = handle instanceof Server ? 'server' : 'socket';
  const internal = (handle as unknown as { _handle?: { fd?: unknown } | null })._handle;
  if (!internal) {
    throw new Error(`socketFd: ${kind} has no handle (not connected or listening yet, or already closed)`);
  }
  const fd = internal.fd;
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0) {
    throw new Error(`socketFd: ${kind} handle has no file descriptor (fd ${String(fd)}); only TCP and Unix-socket handles have one`);
  }
  return fd;
}
