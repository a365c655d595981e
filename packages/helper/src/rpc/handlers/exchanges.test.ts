/**
 * exchanges.clear / exchanges.export / filtered list and subscribe, through the real RpcServer on
 * a Unix socket in a temp dir (no root): params validation, access, filtered notifications, the
 * cleared notification, and an export to a reader that stops reading (backpressure, then the
 * stall bound).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { LineDecoder, type Har } from '@tproxy/protocol';
import { LiveExchange } from '../../capture/live-exchange.js';
import { ExchangeStore } from '../../capture/store.js';
import { silentLogger } from '../../log.js';
import type { RequestContext, Services } from '../context.js';
import { captureDouble, servicesDouble } from '../test-support.js';
import { Dispatcher } from '../dispatcher.js';
import { listenUnix } from '../listen.js';
import { RpcServer } from '../server.js';
import { routes } from './index.js';

function servicesFor(store: ExchangeStore, dir: string): Services {
  return servicesDouble({
    capture: captureDouble(),
    store,
    info: () => ({ name: 'tproxy-helper', version: '1.2.3', protocolVersion: 1, pid: 1, uptimeMs: 0, native: { available: true }, stateDir: dir }),
  });
}

/** Adds a complete exchange; `bodyBytes` of response body. */
function addExchange(store: ExchangeStore, method: string, url: string, statusCode: number, bodyBytes = 10): LiveExchange {
  const ex = new LiveExchange({
    client: { address: '198.18.0.1', port: 40000 },
    server: { address: '198.18.0.2', port: 443 },
    tls: { sni: 'upstream.test' },
    method,
    url,
    httpVersion: '1.1',
    headers: [['Host', 'upstream.test']],
    bodyCaptureLimit: 256 * 1024,
  });
  store.add(ex);
  ex.setResponse({ status: statusCode, statusMessage: '', httpVersion: '1.1', headers: [] });
  store.update(ex);
  ex.responseBody.add(Buffer.alloc(bodyBytes, 'r'));
  ex.complete();
  store.finish(ex);
  return ex;
}

interface Msg {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { code: number; message: string; data?: { code?: string } };
}

async function serve(dir: string, name: string, store: ExchangeStore, maxStallMs?: number) {
  const rpc = new RpcServer({
    dispatcher: new Dispatcher(routes, silentLogger),
    services: servicesFor(store, dir),
    log: silentLogger,
    allowedUids: [],
    peerCredentials: () => ({ uid: 0, gid: 0, pid: 1 }),
    ...(maxStallMs !== undefined ? { maxStallMs } : {}),
  });
  const server = net.createServer();
  rpc.attach(server);
  const path = join(dir, `${name}.sock`);
  await listenUnix(server, path);
  return {
    path,
    rpc,
    close: () => {
      rpc.closeAll();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

async function client(path: string) {
  const socket = net.connect(path);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const decoder = new LineDecoder(64 * 1024 * 1024);
  const messages: Msg[] = [];
  socket.on('data', (chunk) => {
    for (const f of decoder.push(chunk)) if (f.kind === 'line') messages.push(JSON.parse(f.line) as Msg);
  });
  let nextId = 1;
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  const waitFor = async (pred: (m: Msg) => boolean, timeoutMs = 10_000): Promise<Msg> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = messages.find(pred);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no matching message within ${timeoutMs} ms; have ${messages.length}`);
      await sleep(10);
    }
  };
  return {
    socket,
    messages,
    closed,
    waitFor,
    send(method: string, params?: unknown): number {
      const id = nextId++;
      socket.write(`${JSON.stringify({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) })}\n`);
      return id;
    },
    async call(method: string, params?: unknown): Promise<Msg> {
      const id = this.send(method, params);
      return waitFor((m) => m.id === id);
    },
  };
}

describe('exchanges.* handlers over the RPC socket', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tproxy-exchanges-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('validates params and names the field', async () => {
    const store = new ExchangeStore();
    const s = await serve(dir, 'params', store);
    const c = await client(s.path);
    try {
      const cases: [string, unknown, RegExp][] = [
        ['exchanges.export', {}, /format: format must be 'har' or 'jsonl'/],
        ['exchanges.export', { format: 'xml' }, /format: format must be 'har' or 'jsonl'/],
        ['exchanges.export', { format: 'har', includeBodies: 'yes' }, /includeBodies/],
        ['exchanges.export', { format: 'har', filter: { status: { min: 500, max: 400 } } }, /filter.status: status.min must not be greater than status.max/],
        ['exchanges.list', { filter: { method: 'GET POST' } }, /filter.method/],
        ['exchanges.list', { filter: { host: '' } }, /filter.host: host must not be empty/],
        ['exchanges.subscribe', { filter: { colour: 'red' } }, /colour/],
        ['exchanges.clear', { all: true }, /all/],
      ];
      for (const [method, params, message] of cases) {
        const r = await c.call(method, params);
        assert.equal(r.error?.code, -32602, `${method} ${JSON.stringify(params)}`);
        assert.equal(r.error?.data?.code, 'invalid-params');
        assert.match(r.error!.message, message);
      }
    } finally {
      c.socket.destroy();
      await s.close();
    }
  });

  it('exchanges.clear needs write access', async () => {
    const store = new ExchangeStore();
    addExchange(store, 'GET', 'https://a.test/', 200);
    const d = new Dispatcher(routes, silentLogger);
    const ctx = {
      peer: { uid: 1000, gid: 1000, pid: 1 },
      permissions: { read: true, write: false },
      connection: { id: 1, subscribed: false, subscribe() {}, unsubscribe() {}, notify: async () => {} },
      services: servicesFor(store, dir),
      log: silentLogger,
    } as unknown as RequestContext;
    const r = (await d.receive('{"jsonrpc":"2.0","id":1,"method":"exchanges.clear"}', ctx)) as Msg;
    assert.equal(r.error?.code, -32001);
    assert.equal(store.count, 1);
  });

  it('filters list and subscribe; clear empties the buffer and tells subscribers whatever their filter', async () => {
    const store = new ExchangeStore();
    const s = await serve(dir, 'filters', store);
    const sub = await client(s.path);
    const all = await client(s.path);
    try {
      assert.deepEqual((await sub.call('exchanges.subscribe', { filter: { method: 'POST', status: { min: 400, max: 499 } } })).result, { subscribed: true });
      await all.call('exchanges.subscribe', {});
      addExchange(store, 'GET', 'https://a.test/1', 404);
      const post = addExchange(store, 'POST', 'https://a.test/2', 404);
      addExchange(store, 'POST', 'https://a.test/3', 200);
      await all.waitFor((m) => m.method === 'exchange.completed' && (m.params?.exchange as { id: number }).id === 3);
      const seen = sub.messages.filter((m) => m.method?.startsWith('exchange.')).map((m) => [m.method, (m.params?.exchange as { id: number }).id]);
      // started (status unknown) never matches a status range; the update carrying 404 is the first.
      assert.deepEqual(seen, [
        ['exchange.updated', post.id],
        ['exchange.completed', post.id],
      ]);

      const page = await all.call('exchanges.list', { filter: { host: '*.TEST', text: '/2' } });
      assert.deepEqual((page.result?.exchanges as { id: number }[]).map((e) => e.id), [post.id]);

      const cleared = await all.call('exchanges.clear');
      assert.deepEqual(cleared.result, { removed: 3 });
      for (const c of [sub, all]) {
        const n = await c.waitFor((m) => m.method === 'exchanges.cleared');
        assert.deepEqual(n.params, { removed: 3, throughId: 3 });
      }
      assert.deepEqual((await all.call('exchanges.list', {})).result, { exchanges: [] });
    } finally {
      sub.socket.destroy();
      all.socket.destroy();
      await s.close();
    }
  });

  it('streams an export in order, answers with totals, and refuses a second one on the same connection', async () => {
    const store = new ExchangeStore();
    for (let i = 0; i < 30; i++) addExchange(store, i % 3 === 0 ? 'POST' : 'GET', `https://a.test/${i}`, 200, 50_000);
    const s = await serve(dir, 'export', store);
    const c = await client(s.path);
    try {
      const first = c.send('exchanges.export', { format: 'har' });
      const second = await c.call('exchanges.export', { format: 'jsonl' });
      assert.equal(second.error?.code, -32600);
      assert.match(second.error!.message, /already running on this connection/);
      const done = await c.waitFor((m) => m.id === first);
      const chunks = c.messages.filter((m) => m.method === 'exchanges.exportChunk').map((m) => m.params as { exportId: number; seq: number; data: string });
      assert.ok(chunks.length > 1, 'more than one chunk');
      assert.deepEqual(chunks.map((ch) => ch.seq), chunks.map((_, i) => i));
      assert.ok(chunks.every((ch) => ch.exportId === done.result?.exportId));
      const text = chunks.map((ch) => ch.data).join('');
      assert.deepEqual(done.result, { exportId: done.result?.exportId, count: 30, bytes: Buffer.byteLength(text), chunks: chunks.length });
      const har = JSON.parse(text) as Har;
      assert.equal(har.log.entries.length, 30);
      assert.deepEqual(har.log.creator, { name: 'tproxy-helper', version: '1.2.3' });
      assert.equal(har.log.entries[0]!.response.content.text, 'r'.repeat(50_000));
      // The response came after every chunk of its export.
      assert.ok(c.messages.indexOf(done) > c.messages.lastIndexOf(c.messages.find((m) => m.params?.seq === chunks.length - 1)!));
      const filtered = await c.call('exchanges.export', { format: 'jsonl', includeBodies: false, filter: { method: 'POST' } });
      assert.equal(filtered.result?.count, 10);
    } finally {
      c.socket.destroy();
      await s.close();
    }
  });

  it('waits for a reader that stops reading, reading little ahead, then drops it after the stall bound', async (t) => {
    const store = new ExchangeStore({ maxCount: 1000, maxBytes: 1e12 });
    const exchanges = Array.from({ length: 200 }, (_, i) => addExchange(store, 'GET', `https://a.test/${i}`, 200, 200_000));
    let reads = 0;
    const get = store.get.bind(store);
    store.get = (id: number) => (reads++, get(id));
    const s = await serve(dir, 'stall', store, 1500);
    const c = await client(s.path);
    try {
      c.socket.pause(); // never read: the kernel buffer fills, then the helper's socket buffer
      c.send('exchanges.export', { format: 'jsonl' });
      await sleep(800);
      const readWhilePaused = reads;
      await sleep(400);
      assert.equal(reads, readWhilePaused, 'no progress while the reader reads nothing');
      t.diagnostic(`exchanges read while the reader was paused: ${reads} of ${exchanges.length}`);
      assert.ok(reads > 0 && reads < 20, `the export waited for the reader (read ${reads} of ${exchanges.length} exchanges, ~270 KB each in base64)`);
      // Stall bound (1.5 s): the helper drops the connection. (Our paused socket would not see the
      // close until it read the queued data, so watch the server side.)
      const deadline = Date.now() + 10_000;
      while (s.rpc.clientCount > 0 && Date.now() < deadline) await sleep(50);
      assert.equal(s.rpc.clientCount, 0, 'the stalled reader was disconnected');
      assert.ok(reads < exchanges.length);
    } finally {
      c.socket.destroy();
      await s.close();
    }
  });
});
