import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LineDecoder } from '@tproxy/protocol';
import { ExchangeStore } from '../capture/store.js';
import { LiveExchange } from '../capture/live-exchange.js';
import { silentLogger } from '../log.js';
import type { PeerIdentity } from './context.js';
import { STOPPED_STATUS, captureDouble, servicesDouble } from './test-support.js';
import { Dispatcher } from './dispatcher.js';
import { routes } from './handlers/index.js';
import { SocketInUseError, listenUnix } from './listen.js';
import { RpcServer } from './server.js';

const capture = captureDouble({ start: async () => STOPPED_STATUS });

interface Served {
  path: string;
  store: ExchangeStore;
  rpc: RpcServer;
  close(): Promise<void>;
}

async function serve(dir: string, name: string, peer: PeerIdentity, opts: { maxLineBytes?: number; maxQueuedBytes?: number } = {}): Promise<Served> {
  const store = new ExchangeStore();
  const rpc = new RpcServer({
    dispatcher: new Dispatcher(routes, silentLogger),
    services: servicesDouble({ capture, store }),
    log: silentLogger,
    allowedUids: [1000],
    peerCredentials: () => peer,
    ...opts,
  });
  const server = net.createServer();
  rpc.attach(server);
  const path = join(dir, `${name}.sock`);
  await listenUnix(server, path);
  return {
    path,
    store,
    rpc,
    close: () => {
      rpc.closeAll();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

/** A raw NDJSON client: send lines, read parsed messages. */
async function rawClient(path: string) {
  const socket = net.connect(path);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const decoder = new LineDecoder(64 * 1024 * 1024);
  const messages: unknown[] = [];
  const waiters: (() => void)[] = [];
  socket.on('data', (chunk) => {
    for (const f of decoder.push(chunk)) if (f.kind === 'line') messages.push(JSON.parse(f.line));
    waiters.splice(0).forEach((w) => w());
  });
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  return {
    socket,
    closed,
    send: (text: string) => socket.write(text),
    async next(count = 1, timeoutMs = 5000): Promise<unknown[]> {
      const deadline = Date.now() + timeoutMs;
      while (messages.length < count) {
        if (Date.now() > deadline) throw new Error(`expected ${count} messages, have ${messages.length}`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 50);
        });
      }
      return messages.splice(0, count);
    },
  };
}

describe('RpcServer', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tproxy-rpc-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('refuses a uid that is neither root nor allowed, with an access-denied error, before reading anything', async () => {
    const s = await serve(dir, 'refuse', { uid: 1234, gid: 1234, pid: 99 });
    try {
      const c = await rawClient(s.path);
      c.send('{"jsonrpc":"2.0","id":1,"method":"capture.start"}\n');
      const [msg] = (await c.next()) as [{ id: null; error: { code: number; message: string; data: { code: string } } }];
      assert.equal(msg.id, null);
      assert.equal(msg.error.code, -32001);
      assert.equal(msg.error.data.code, 'access-denied');
      assert.match(msg.error.message, /--allow-uid 1234/);
      await c.closed;
      assert.equal(s.rpc.clientCount, 0);
    } finally {
      await s.close();
    }
  });

  it('serves an allowed operator uid, answers an oversize line with an error and closes that connection', async () => {
    const s = await serve(dir, 'oversize', { uid: 1000, gid: 1000, pid: 99 }, { maxLineBytes: 1024 });
    try {
      const c = await rawClient(s.path);
      c.send('{"jsonrpc":"2.0","id":2,"method":"helper.info"}\n');
      const [ok] = (await c.next(1)) as [{ id: number; result: { name: string; peer: { uid: number } } }];
      assert.equal(ok.id, 2);
      assert.equal(ok.result.name, 'tproxy-helper');
      assert.deepEqual(ok.result.peer, { uid: 1000, pid: 99 });
      c.send(`{"jsonrpc":"2.0","id":1,"method":"helper.info","params":{"pad":"${'x'.repeat(5000)}"}}\n`);
      const [tooBig] = (await c.next(1)) as [{ id: null; error: { code: number; message: string } }];
      assert.equal(tooBig.id, null);
      assert.equal(tooBig.error.code, -32600);
      assert.match(tooBig.error.message, /1024 bytes per line; closing the connection/);
      await c.closed;
      assert.equal(s.rpc.clientCount, 0);
      // Others are still served.
      const d = await rawClient(s.path);
      d.send('{"jsonrpc":"2.0","id":3,"method":"helper.info"}\n');
      assert.equal(((await d.next(1)) as [{ id: number }])[0].id, 3);
      d.socket.destroy();
    } finally {
      await s.close();
    }
  });

  it('answers malformed JSON and wrong types with JSON-RPC errors and keeps the connection', async () => {
    const s = await serve(dir, 'malformed', { uid: 0, gid: 0, pid: 1 });
    try {
      const c = await rawClient(s.path);
      c.send('{"jsonrpc":"2.0","id":1,\n');
      c.send('{"jsonrpc":"2.0","id":2,"method":"exchanges.list","params":{"limit":"ten"}}\n');
      c.send('[]\n');
      c.send('{"jsonrpc":"2.0","id":3,"method":"capture.status"}\n');
      // Requests are handled concurrently, so answers may come in any order: match them by id.
      const msgs = (await c.next(4)) as { id: unknown; error?: { code: number }; result?: unknown }[];
      const errorCodes = msgs.filter((m) => m.id === null).map((m) => m.error?.code).sort();
      assert.deepEqual(errorCodes, [-32700, -32600].sort());
      assert.equal(msgs.find((m) => m.id === 2)?.error?.code, -32602);
      assert.ok(msgs.find((m) => m.id === 3)?.result);
      c.socket.destroy();
    } finally {
      await s.close();
    }
  });

  it('streams notifications to subscribers and disconnects one that stops reading', async () => {
    const s = await serve(dir, 'slow', { uid: 0, gid: 0, pid: 1 }, { maxQueuedBytes: 64 * 1024 });
    try {
      const c = await rawClient(s.path);
      c.send('{"jsonrpc":"2.0","id":1,"method":"exchanges.subscribe"}\n');
      await c.next();
      const ex = () =>
        new LiveExchange({
          client: { address: '127.0.0.1', port: 1 },
          server: { address: '127.0.0.1', port: 443 },
          tls: {},
          method: 'GET',
          url: `https://a.test/${'p'.repeat(2000)}`,
          httpVersion: '1.1',
          headers: [],
          bodyCaptureLimit: 0,
        });
      s.store.add(ex());
      const [started] = (await c.next()) as [{ method: string }];
      assert.equal(started.method, 'exchange.started');
      c.socket.pause(); // stop reading: the kernel buffers fill, then our queue
      for (let i = 0; i < 2000 && !c.socket.destroyed && s.rpc.clientCount > 0; i++) {
        s.store.add(ex());
        if (i % 100 === 0) await new Promise((r) => setImmediate(r));
      }
      assert.equal(s.rpc.clientCount, 0, 'the stuck subscriber was dropped, not buffered without end');
    } finally {
      await s.close();
    }
  });
});

describe('listenUnix', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tproxy-listen-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('creates the socket 0600 in a new 0755 directory', async () => {
    const server = net.createServer();
    const path = join(dir, 'run', 'helper.sock');
    await listenUnix(server, path);
    try {
      assert.equal((await stat(path)).mode & 0o777, 0o600);
      assert.equal((await stat(join(dir, 'run'))).mode & 0o777, 0o755);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it('refuses a path where another server answers, and replaces a stale socket', async () => {
    const path = join(dir, 'live.sock');
    const live = net.createServer();
    await listenUnix(live, path);
    await assert.rejects(listenUnix(net.createServer(), path), SocketInUseError);
    // A server that died without unlinking leaves a stale socket file behind.
    await new Promise((r) => live.close(r));
    const stale = net.createServer();
    await new Promise<void>((r) => stale.listen(path, r));
    (stale as unknown as { _handle: { close(): void } | null })._handle?.close(); // closes the fd, keeps the file
    const next = net.createServer();
    await listenUnix(next, path);
    await new Promise((r) => next.close(r));
  });

  it('refuses to replace a file that is not a socket', async () => {
    const path = join(dir, 'plain');
    await writeFile(path, 'data');
    await assert.rejects(listenUnix(net.createServer(), path), /not a socket/);
  });
});
