// An in-memory NativeNet for unprivileged tests of code that takes a NativeNet parameter. It
// checks arguments exactly like the addon (same TypeErrors), records every call, keeps socket
// marks in a map, and answers getPeerCredentials from configuration. It cannot mint real
// transparent or marked sockets, so createTransparentListener and connectMarked fail with ENOSYS
// unless the test supplies an implementation. It never touches the kernel.
import type { NativeNet, PeerCredentials, TcpSocketInfo } from './index.js';
import { errnoError } from './errors.js';

/** One recorded call, in order. */
export interface FakeCall {
  method: keyof NativeNet;
  args: unknown[];
}

export interface FakeNativeNetOptions {
  /** Answer for getPeerCredentials; default: this process (pid, uid, gid). */
  peerCredentials?: PeerCredentials | ((fd: number) => PeerCredentials);
  /** Runs after validation; default throws ENOSYS ("socket"). */
  createTransparentListener?: (ip: string, port: number, backlog: number) => number;
  /** Runs after validation; default rejects with ENOSYS ("connect"). */
  connectMarked?: (ip: string, port: number, mark: number, timeoutMs: number) => Promise<number>;
  /** Runs after validation; default answers null (no such socket). */
  findTcpSocket?: (localIp: string, localPort: number, remoteIp: string, remotePort: number) => TcpSocketInfo | null;
}

export interface FakeNativeNet extends NativeNet {
  /** Every call, including ones that threw. */
  readonly calls: FakeCall[];
  /** fd → mark as set by setSocketMark; getSocketMark reads it (0 when absent). */
  readonly marks: Map<number, number>;
}

const INT_MAX = 2 ** 31 - 1;
const UINT32_MAX = 2 ** 32 - 1;

function describe(value: unknown): string {
  if (typeof value === 'string') return `"${value}"`;
  if (typeof value === 'number' || typeof value === 'boolean' || value === undefined || value === null) {
    return String(value);
  }
  if (typeof value === 'bigint') return 'a bigint';
  if (typeof value === 'symbol') return 'a symbol';
  return typeof value === 'function' ? 'a function' : 'an object';
}

function integer(fn: string, name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number') throw new TypeError(`${fn}: ${name} must be a number, got ${describe(value)}`);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new TypeError(`${fn}: ${name} must be an integer in [${min}, ${max}], got ${describe(value)}`);
  }
  return value;
}

// Mirrors inet_pton's strictness closely enough for tests: dotted quads or v6 literals only.
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const IPV6 = /^[0-9a-fA-F:.]+$/;

function ipString(fn: string, value: unknown, name = 'ip'): string {
  if (typeof value !== 'string') throw new TypeError(`${fn}: ${name} must be a string, got ${describe(value)}`);
  return value;
}

// Checked after the numbers, as the addon does (it parses the address last).
function ipLiteral(fn: string, value: string): void {
  if (!IPV4.test(value) && !(value.includes(':') && IPV6.test(value))) {
    throw new TypeError(`${fn}: ip must be an IPv4 or IPv6 literal, got "${value}"`);
  }
}

function endpoint(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** A fresh fake with its own call log and marks. Prefer one per test. */
export function createFakeNativeNet(options: FakeNativeNetOptions = {}): FakeNativeNet {
  const calls: FakeCall[] = [];
  const marks = new Map<number, number>();
  const record = (method: keyof NativeNet, args: unknown[]): void => {
    calls.push({ method, args });
  };

  return {
    calls,
    marks,

    createTransparentListener(ip: string, port: number, backlog?: number): number {
      const fn = 'createTransparentListener';
      record(fn, [ip, port, backlog]);
      ipString(fn, ip);
      integer(fn, 'port', port, 0, 65535);
      const checkedBacklog = backlog === undefined ? 511 : integer(fn, 'backlog', backlog, 1, INT_MAX);
      ipLiteral(fn, ip);
      if (options.createTransparentListener) return options.createTransparentListener(ip, port, checkedBacklog);
      throw errnoError('ENOSYS', 'socket', endpoint(ip, port), 'fake NativeNet: no createTransparentListener configured');
    },

    connectMarked(ip: string, port: number, mark: number, timeoutMs: number): Promise<number> {
      const fn = 'connectMarked';
      record(fn, [ip, port, mark, timeoutMs]);
      // Like the addon: bad arguments throw synchronously, failures reject.
      ipString(fn, ip);
      integer(fn, 'port', port, 1, 65535);
      integer(fn, 'mark', mark, 1, UINT32_MAX);
      integer(fn, 'timeoutMs', timeoutMs, 1, INT_MAX);
      ipLiteral(fn, ip);
      if (options.connectMarked) return options.connectMarked(ip, port, mark, timeoutMs);
      return Promise.reject(
        errnoError('ENOSYS', 'connect', endpoint(ip, port), 'fake NativeNet: no connectMarked configured'),
      );
    },

    setSocketMark(fd: number, mark: number): void {
      record('setSocketMark', [fd, mark]);
      integer('setSocketMark', 'fd', fd, 0, INT_MAX);
      integer('setSocketMark', 'mark', mark, 0, UINT32_MAX);
      marks.set(fd, mark);
    },

    getSocketMark(fd: number): number {
      record('getSocketMark', [fd]);
      integer('getSocketMark', 'fd', fd, 0, INT_MAX);
      return marks.get(fd) ?? 0;
    },

    getPeerCredentials(fd: number): PeerCredentials {
      record('getPeerCredentials', [fd]);
      integer('getPeerCredentials', 'fd', fd, 0, INT_MAX);
      const creds = options.peerCredentials;
      if (typeof creds === 'function') return creds(fd);
      return creds ?? { pid: process.pid, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
    },

    findTcpSocket(localIp: string, localPort: number, remoteIp: string, remotePort: number): TcpSocketInfo | null {
      const fn = 'findTcpSocket';
      record(fn, [localIp, localPort, remoteIp, remotePort]);
      ipString(fn, localIp, 'localIp');
      integer(fn, 'localPort', localPort, 1, 65535);
      ipString(fn, remoteIp, 'remoteIp');
      integer(fn, 'remotePort', remotePort, 1, 65535);
      ipLiteral(fn, localIp);
      ipLiteral(fn, remoteIp);
      if (localIp.includes(':') !== remoteIp.includes(':')) {
        throw new TypeError(`${fn}: localIp and remoteIp must be the same family, got ${endpoint(localIp, localPort)} and ${endpoint(remoteIp, remotePort)}`);
      }
      return options.findTcpSocket ? options.findTcpSocket(localIp, localPort, remoteIp, remotePort) : null;
    },
  };
}

/** A shared default fake. Its call log and marks are shared by every user: reset or prefer createFakeNativeNet(). */
export const fakeNativeNet: FakeNativeNet = createFakeNativeNet();
