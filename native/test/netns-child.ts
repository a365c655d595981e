// The privileged half of native.test.ts. The parent creates a network namespace, builds the
// topology below inside it (from TOPOLOGY / nftScript / ipCommands exported here, so the layout
// lives in one file), then runs this script in it via `ip netns exec`. Each check prints one JSON
// line {check, ok, detail}; the parent turns each line into a test. This script must never run in
// the host's namespace: it refuses unless TPN_NATIVE_NETNS names the namespace it was put in.
//
//   ┌───────────────────────────── netns tpn-native-<pid> ─────────────────────────────┐
//   │ lo  127.0.0.1/8 ::1        listeners and echo servers under test                 │
//   │ v0  198.18.99.2/24         veth to v1 (up, no address, nobody answers): a route  │
//   │     198.18.50.0/24 dev v0  for "remote" addresses that leads nowhere. (A veth,   │
//   │                            not a dummy: CONFIG_DUMMY is often missing in VMs.)   │
//   │ 203.0.113.0/24             no route at all (ENETUNREACH)                         │
//   │                                                                                  │
//   │ nft inet tpn out  (filter output):  ip daddr 198.18.99.1 drop   (ETIMEDOUT)      │
//   │                                     meta mark 0xc0ffee drop     (mark on the SYN)│
//   │ nft ip tpn reroute (route output):  198.18.50.0/24 tcp 443 → mark 0x1, reroute   │
//   │ ip rule fwmark 0x1 lookup 100;      table 100: local 0.0.0.0/0 dev lo            │
//   │ nft ip tpn pre    (prerouting):     198.18.50.0/24 tcp 443 tproxy to 127.0.0.1:7443
//   └──────────────────────────────────────────────────────────────────────────────────┘
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readdirSync, statSync } from 'node:fs';
import net from 'node:net';
import { constants } from 'node:os';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

import { ADDON_PATH, isErrnoError, loadNative, socketFd, type NativeNet } from '../lib/index.js';

export const TOPOLOGY = {
  vethCidr: '198.18.99.2/24',
  /** Routed via v0 and dropped by nft: connects to it can only time out. */
  droppedIp: '198.18.99.1',
  /** TEST-NET-3 (RFC 5737), deliberately unrouted in the namespace. */
  unroutedIp: '203.0.113.1',
  tproxyCidr: '198.18.50.0/24',
  tproxyTarget: '198.18.50.1',
  tproxyPort: 7443,
  /**
   * Routes via table 100, whose `local 0.0.0.0/0` makes every destination local. connect()'s own
   * route lookup already honours SO_MARK, so a socket marked with this fails with ENETUNREACH:
   * the checks use {@link TOPOLOGY.plainMark} for ordinary marked connects.
   */
  tproxyMark: 0x1,
  /** A mark no rule or route matches. */
  plainMark: 0x2,
  tproxyTable: 100,
  /** Packets carrying this mark are dropped on output. */
  dropMark: 0xc0ffee,
} as const;

/** `ip -n <ns> …` argument lists, in order. */
export function ipCommands(): string[][] {
  const t = TOPOLOGY;
  return [
    ['link', 'set', 'lo', 'up'],
    ['link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1'],
    ['addr', 'add', t.vethCidr, 'dev', 'v0'],
    ['link', 'set', 'v1', 'up'],
    ['link', 'set', 'v0', 'up'],
    ['route', 'add', t.tproxyCidr, 'dev', 'v0'],
    ['rule', 'add', 'fwmark', String(t.tproxyMark), 'lookup', String(t.tproxyTable)],
    ['route', 'add', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', String(t.tproxyTable)],
  ];
}

/** Input for `nft -f -` inside the namespace. */
export function nftScript(): string {
  const t = TOPOLOGY;
  return `
table inet tpn {
  chain out {
    type filter hook output priority 0; policy accept;
    ip daddr ${t.droppedIp} drop
    meta mark ${t.dropMark} drop
  }
}
table ip tpn {
  chain reroute {
    type route hook output priority mangle; policy accept;
    ip daddr ${t.tproxyCidr} tcp dport 443 meta mark set ${t.tproxyMark}
  }
  chain pre {
    type filter hook prerouting priority mangle; policy accept;
    ip daddr ${t.tproxyCidr} tcp dport 443 tproxy to 127.0.0.1:${t.tproxyPort} accept
  }
}
`;
}

/** One result line on stdout. */
export interface CheckResult {
  check: string;
  ok: boolean;
  detail: string;
}

const CHECK_TIMEOUT_MS = 5_000;
const CONNECT_TIMEOUT_MS = 300;

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

/** `{ fd }` is Node's listen(handle) form, which @types/node types as `any`. */
async function listening(server: net.Server, options: net.ListenOptions | { fd: number }): Promise<number> {
  server.listen(options);
  await once(server, 'listening');
  const address = server.address();
  assert.ok(address && typeof address === 'object', 'server has an address');
  return address.port;
}

const acceptedBy = new WeakMap<net.Server, Set<net.Socket>>();

function echoServer(): net.Server {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.pipe(socket);
  });
  acceptedBy.set(server, sockets);
  return server;
}

/** Closes a server and destroys what it accepted, so a failed check cannot hang on close(). */
async function closed(server: net.Server): Promise<void> {
  const done = new Promise<void>((resolve) => server.close(() => resolve()));
  for (const socket of acceptedBy.get(server) ?? []) socket.destroy();
  await done;
}

async function connected(socket: net.Socket): Promise<net.Socket> {
  await once(socket, 'connect');
  return socket;
}

async function roundTrip(socket: net.Socket, payload: string): Promise<string> {
  socket.setEncoding('utf8');
  socket.write(payload);
  let received = '';
  for await (const chunk of socket) {
    received += String(chunk);
    if (received.length >= payload.length) break;
  }
  return received;
}

function assertErrno(e: unknown, code: string, syscall: string, message?: RegExp): true {
  assert.ok(isErrnoError(e), `expected an errno error, got ${String(e)}`);
  assert.equal(e.code, code, e.message);
  assert.equal(e.syscall, syscall, e.message);
  assert.equal(e.errno, (constants.errno as Record<string, number>)[code]);
  if (message) assert.match(e.message, message);
  return true;
}

async function adoptedEchoOn(native: NativeNet, ip: string, port = 0): Promise<{ server: net.Server; port: number }> {
  const server = echoServer();
  const bound = await listening(server, { fd: native.createTransparentListener(ip, port) });
  return { server, port: bound };
}

function checks(native: NativeNet): Record<string, () => Promise<void>> {
  const t = TOPOLOGY;
  return {
    'loadNative reports capture available (root in the namespace)': async () => {
      const status = loadNative();
      assert.equal(status.captureAvailable, true, status.reason);
    },

    'v4 transparent listener adopted by net.Server accepts a plain connect': async () => {
      const { server, port } = await adoptedEchoOn(native, '127.0.0.1');
      try {
        const accepted = once(server, 'connection');
        const client = await connected(net.connect(port, '127.0.0.1'));
        assert.equal(await roundTrip(client, 'ping4'), 'ping4');
        await accepted;
      } finally {
        await closed(server);
      }
    },

    'TPROXY delivers a foreign destination to the transparent listener, not to a plain one': async () => {
      // Same port, plain socket: nft's tproxy only hands packets to IP_TRANSPARENT listeners, so
      // the SYN falls through to local delivery, finds no socket on 198.18.50.1:443, and the RST
      // cannot be sent either (its source is not a local address): the connect just hangs.
      const plain = echoServer();
      await listening(plain, { host: '127.0.0.1', port: t.tproxyPort });
      const client = net.connect(443, t.tproxyTarget);
      client.on('error', () => {});
      try {
        let sawConnection = false;
        plain.on('connection', () => (sawConnection = true));
        const outcome = await Promise.race([
          connected(client).then(() => 'connected'),
          new Promise((resolve) => setTimeout(resolve, CONNECT_TIMEOUT_MS, 'still waiting')),
        ]);
        assert.equal(outcome, 'still waiting');
        assert.equal(sawConnection, false, 'a plain listener must not receive tproxied connections');
      } finally {
        client.destroy();
        await closed(plain);
      }
      const { server } = await adoptedEchoOn(native, '127.0.0.1', t.tproxyPort);
      try {
        const accepted = once(server, 'connection') as Promise<[net.Socket]>;
        const client = await connected(net.connect(443, t.tproxyTarget));
        const [inbound] = await accepted;
        assert.equal(inbound.localAddress, t.tproxyTarget, 'accepted socket keeps the original destination');
        assert.equal(inbound.localPort, 443);
        assert.equal(await roundTrip(client, 'tproxied'), 'tproxied');
      } finally {
        await closed(server);
      }
    },

    'a second listener on the same address fails with EADDRINUSE and leaks no fd': async () => {
      const { server, port } = await adoptedEchoOn(native, '127.0.0.1');
      try {
        const before = openFds();
        assert.throws(
          () => native.createTransparentListener('127.0.0.1', port),
          (e) => assertErrno(e, 'EADDRINUSE', 'bind', /^bind 127\.0\.0\.1:\d+: EADDRINUSE \(Address already in use\)$/),
        );
        assert.equal(openFds(), before);
      } finally {
        await closed(server);
      }
    },

    'v6 transparent listener on ::1 accepts a plain connect': async () => {
      const { server, port } = await adoptedEchoOn(native, '::1');
      try {
        const accepted = once(server, 'connection');
        const client = await connected(net.connect(port, '::1'));
        assert.equal(await roundTrip(client, 'ping6'), 'ping6');
        await accepted;
      } finally {
        await closed(server);
      }
    },

    'IPV6_V6ONLY: v4 and v6 wildcard listeners share one port': async () => {
      const v4 = await adoptedEchoOn(native, '0.0.0.0');
      try {
        // Without V6ONLY, "::" would also claim v4 on this port and bind would fail.
        const v6 = await adoptedEchoOn(native, '::', v4.port);
        try {
          const seen4 = once(v4.server, 'connection');
          const seen6 = once(v6.server, 'connection');
          assert.equal(await roundTrip(await connected(net.connect(v4.port, '127.0.0.1')), 'a'), 'a');
          assert.equal(await roundTrip(await connected(net.connect(v4.port, '::1')), 'b'), 'b');
          await Promise.all([seen4, seen6]);
        } finally {
          await closed(v6.server);
        }
      } finally {
        await closed(v4.server);
      }
    },

    'connectMarked resolves an fd that net.Socket can use, and it carries the mark': async () => {
      const server = echoServer();
      const port = await listening(server, { host: '127.0.0.1', port: 0 });
      try {
        const accepted = once(server, 'connection') as Promise<[net.Socket]>;
        const fd = await native.connectMarked('127.0.0.1', port, 0x2a, 1_000);
        assert.equal(native.getSocketMark(fd), 0x2a);
        const socket = new net.Socket({ fd, readable: true, writable: true });
        const [inbound] = await accepted;
        assert.equal(inbound.remotePort, socket.localPort, 'the server saw this very connection');
        assert.equal(await roundTrip(socket, 'marked'), 'marked');
      } finally {
        await closed(server);
      }
    },

    'connectMarked works over IPv6 (::1)': async () => {
      const server = echoServer();
      const port = await listening(server, { host: '::1', port: 0 });
      try {
        const fd = await native.connectMarked('::1', port, 0x2b, 1_000);
        assert.equal(native.getSocketMark(fd), 0x2b);
        assert.equal(await roundTrip(new net.Socket({ fd, readable: true, writable: true }), 'v6'), 'v6');
      } finally {
        await closed(server);
      }
    },

    'connectMarked to a closed port rejects ECONNREFUSED and closes its socket': async () => {
      const server = net.createServer();
      const port = await listening(server, { host: '127.0.0.1', port: 0 });
      await closed(server);
      const before = openFds();
      await assert.rejects(native.connectMarked('127.0.0.1', port, t.plainMark, 1_000), (e) =>
        assertErrno(e, 'ECONNREFUSED', 'connect', new RegExp(`^connect 127\\.0\\.0\\.1:${port}: ECONNREFUSED \\(Connection refused\\)$`)),
      );
      assert.equal(openFds(), before);
    },

    'connectMarked with no route rejects ENETUNREACH': async () => {
      const before = openFds();
      await assert.rejects(native.connectMarked(t.unroutedIp, 443, t.plainMark, 1_000), (e) => assertErrno(e, 'ENETUNREACH', 'connect'));
      assert.equal(openFds(), before);
    },

    'connectMarked to a dropped address rejects ETIMEDOUT while the event loop keeps ticking': async () => {
      let ticks = 0;
      const ticker = setInterval(() => ticks++, 10);
      try {
        const before = openFds();
        const started = performance.now();
        await assert.rejects(native.connectMarked(t.droppedIp, 443, t.plainMark, CONNECT_TIMEOUT_MS), (e) =>
          assertErrno(e, 'ETIMEDOUT', 'connect', /^connect 198\.18\.99\.1:443: ETIMEDOUT \(Connection timed out\)$/),
        );
        const elapsed = performance.now() - started;
        assert.ok(elapsed >= CONNECT_TIMEOUT_MS - 20 && elapsed < 2_000, `timed out after ${elapsed.toFixed(0)} ms`);
        assert.ok(ticks >= 10, `event loop ticked only ${ticks} times in ${elapsed.toFixed(0)} ms`);
        assert.equal(openFds(), before);
      } finally {
        clearInterval(ticker);
      }
    },

    'the SYN carries the mark: nft drops mark 0xc0ffee, so only that connect stalls': async () => {
      const server = echoServer();
      const port = await listening(server, { host: '127.0.0.1', port: 0 });
      try {
        const fd = await native.connectMarked('127.0.0.1', port, t.dropMark + 1, 1_000);
        new net.Socket({ fd, readable: true, writable: true }).destroy();
        await assert.rejects(native.connectMarked('127.0.0.1', port, t.dropMark, CONNECT_TIMEOUT_MS), (e) =>
          assertErrno(e, 'ETIMEDOUT', 'connect'),
        );
      } finally {
        await closed(server);
      }
    },

    '20 concurrent connects time out together (event loop, not the 4-thread pool)': async () => {
      const started = performance.now();
      const results = await Promise.allSettled(
        Array.from({ length: 20 }, (_, i) => native.connectMarked(t.droppedIp, 1000 + i, t.plainMark, CONNECT_TIMEOUT_MS)),
      );
      const elapsed = performance.now() - started;
      for (const r of results) {
        assert.equal(r.status, 'rejected');
        if (r.status === 'rejected') assertErrno(r.reason, 'ETIMEDOUT', 'connect');
      }
      // Queued 4 at a time on the threadpool this would take >= 5 × 300 ms.
      assert.ok(elapsed < 1_000, `20 timeouts took ${elapsed.toFixed(0)} ms`);
    },

    'setSocketMark / getSocketMark round-trip on a Node socket via socketFd': async () => {
      const server = echoServer();
      const port = await listening(server, { host: '127.0.0.1', port: 0 });
      try {
        const client = await connected(net.connect(port, '127.0.0.1'));
        const fd = socketFd(client);
        assert.equal(native.getSocketMark(fd), 0);
        native.setSocketMark(fd, 0xdeadbeef);
        assert.equal(native.getSocketMark(fd), 0xdeadbeef);
        native.setSocketMark(fd, 0);
        assert.equal(native.getSocketMark(fd), 0);
        client.destroy();
      } finally {
        await closed(server);
      }
    },

    'terminating a worker with a connect in flight releases the socket without crashing': async () => {
      const before = openFds();
      const worker = new Worker(
        `const { parentPort, workerData } = require('node:worker_threads');
         const native = require(workerData.addon);
         native.connectMarked(workerData.ip, 443, workerData.mark, 30000).catch(() => {});
         parentPort.postMessage('pending');`,
        { eval: true, workerData: { addon: ADDON_PATH, ip: t.droppedIp, mark: t.plainMark } },
      );
      const [message] = (await once(worker, 'message')) as [string];
      assert.equal(message, 'pending');
      await worker.terminate();
      assert.equal(openFds(), before, 'the worker loop and its pending socket are gone');
    },
  };
}

async function withTimeout(run: () => Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`check did not finish within ${ms} ms`)), ms);
  });
  try {
    await Promise.race([run(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Names of every check, in run order; the parent expects one result line per name. */
export const CHECK_NAMES: readonly string[] = Object.keys(checks({} as NativeNet));

async function main(): Promise<void> {
  // Same inode as /run/netns/<name> means we really are inside that namespace.
  const namespace = process.env.TPN_NATIVE_NETNS;
  if (!namespace || statSync(`/run/netns/${namespace}`).ino !== statSync('/proc/self/ns/net').ino) {
    throw new Error('netns-child.ts only runs inside the namespace native.test.ts creates (TPN_NATIVE_NETNS)');
  }
  const { native, reason } = loadNative();
  if (!native) throw new Error(`native addon unavailable: ${reason}`);
  for (const [check, run] of Object.entries(checks(native))) {
    let result: CheckResult;
    try {
      await withTimeout(run, CHECK_TIMEOUT_MS);
      result = { check, ok: true, detail: '' };
    } catch (e) {
      result = { check, ok: false, detail: e instanceof Error ? (e.stack ?? e.message) : String(e) };
    }
    process.stdout.write(`${JSON.stringify(result)}\n`);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    () => process.exit(0),
    (e: unknown) => {
      process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exit(1);
    },
  );
}
