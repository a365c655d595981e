/**
 * HttpProxy alone, on loopback: the client side is a plain TCP socket handed to `serve()` (TLS
 * towards the client is engine.ts's job and is tested there), the upstream side is the real pool
 * with verified TLS to a loopback HTTPS origin. Covered here: request-smuggling shapes refused
 * before the upstream sees anything, header count and size limits on requests and on upstream
 * responses, the client idle and slow-head deadline, and the WebSocket relay with its capture.
 *
 *   raw TCP client ──▶ front 127.0.0.1:<p> ──serve()──▶ HttpProxy ──UpstreamPool (TLS)──▶ origin 127.0.0.1:<q>
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type http from 'node:http';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { after, afterEach, before, describe, it, type TestContext } from 'node:test';
import tls from 'node:tls';
import { ENGINE_LIMIT_DEFAULTS, type Exchange } from '@tproxy/protocol';
import { ExchangeStore } from '../capture/store.js';
import { silentLogger } from '../log.js';
import { HttpProxy, type HttpProxyOptions } from './http-proxy.js';
import { EventLog, UPSTREAM_NAME, closeServer, createUpstreamPki, listenLoopback, loopbackConnector, startUpstream, within, type Upstream, type UpstreamPki } from './test-support.js';
import { UpstreamPool } from './upstream.js';

const escaped: unknown[] = [];
const onEscape = (err: unknown) => escaped.push(err);
process.on('uncaughtException', onEscape);
process.on('unhandledRejection', onEscape);
afterEach(() => assert.deepEqual(escaped.splice(0).map(String), [], 'an exception escaped the proxy'));
after(() => {
  process.off('uncaughtException', onEscape);
  process.off('unhandledRejection', onEscape);
});

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

let pki: UpstreamPki;
let upstream: Upstream;

/** Unmasked server frame. */
function serverFrame(opcode: number, payload: Buffer): Buffer {
  const len = payload.length < 126 ? Buffer.from([payload.length]) : Buffer.from([126, payload.length >> 8, payload.length & 0xff]);
  return Buffer.concat([Buffer.from([0x80 | opcode]), len, payload]);
}

/** Masked client frame. */
function clientFrame(opcode: number, payload: Buffer, fin = true): Buffer {
  const mask = Buffer.from([1, 2, 3, 4]);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i]! ^= mask[i & 3]!;
  const len = body.length < 126 ? Buffer.from([0x80 | body.length]) : Buffer.from([0x80 | 126, body.length >> 8, body.length & 0xff]);
  return Buffer.concat([Buffer.from([(fin ? 0x80 : 0) | opcode]), len, mask, body]);
}

/**
 * The origin's WebSocket echo, by hand (RFC 6455 §4.2.2 handshake; frames parsed just enough for
 * short test frames): each client message (fragments joined) comes back unmasked as one frame, a
 * ping gets a pong, a close is answered with a close and the connection ends.
 */
function acceptWebSocket(req: http.IncomingMessage, socket: net.Socket): void {
  const key = req.headers['sec-websocket-key'] ?? '';
  const accept = createHash('sha1').update(key + WS_GUID).digest('base64');
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
  let buf = Buffer.alloc(0);
  let message: { opcode: number; parts: Buffer[] } | undefined;
  socket.on('data', (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    for (;;) {
      if (buf.length < 2) return;
      let len = buf[1]! & 0x7f;
      let off = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        off = 4;
      }
      if (buf.length < off + 4 + len) return;
      const mask = buf.subarray(off, off + 4);
      const payload = Buffer.from(buf.subarray(off + 4, off + 4 + len));
      for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i & 3]!;
      const opcode = buf[0]! & 0x0f;
      const fin = (buf[0]! & 0x80) !== 0;
      buf = buf.subarray(off + 4 + len);
      if (opcode === 8) {
        socket.end(serverFrame(8, payload));
        return;
      }
      if (opcode === 9) {
        socket.write(serverFrame(10, payload));
        continue;
      }
      if (opcode !== 0) message = { opcode, parts: [] };
      message?.parts.push(payload);
      if (fin && message) {
        socket.write(serverFrame(message.opcode, Buffer.concat(message.parts)));
        message = undefined;
      }
    }
  });
  socket.on('error', () => {});
}

before(async () => {
  pki = await createUpstreamPki();
  upstream = await startUpstream({ key: pki.keyPem, cert: pki.good }, (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/many-headers') {
      const raw: [string, string][] = Array.from({ length: 40 }, (_, i) => [`X-H${i}`, 'v']);
      res.writeHead(200, raw.flat());
      res.end('many');
      return;
    }
    if (path === '/wait') {
      setTimeout(() => res.writeHead(200, { 'content-type': 'text/plain' }).end('waited'), 1500).unref();
      return;
    }
    if (path === '/big-head') {
      res.writeHead(200, { 'x-big': 'b'.repeat(8000) });
      res.end('big');
      return;
    }
    // A WebSocket handshake reaching a route that does not upgrade: an ordinary refusal.
    if (path === '/not-ws') {
      res.writeHead(403, { 'content-type': 'text/plain', 'content-length': 6 });
      res.end('no ws!');
      return;
    }
    req.resume();
    req.once('end', () => res.writeHead(200, { 'content-type': 'text/plain' }).end(`ok ${req.url}`));
  });
  upstream.server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
    upstream.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders });
    // Accepts the upgrade request and never answers it.
    if (req.url === '/ws-silent') return void socket.on('error', () => {});
    if (req.url === '/not-ws') {
      socket.end('HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nno ws!');
      return;
    }
    acceptWebSocket(req, socket);
  });
});
after(() => upstream.close());

interface Harness {
  port: number;
  store: ExchangeStore;
  events: EventLog;
  /** Server-side client sockets still open. */
  open(): number;
}

async function harness(t: TestContext, limits: Partial<NonNullable<HttpProxyOptions['limits']>> = {}): Promise<Harness> {
  const store = new ExchangeStore();
  const events = new EventLog(store);
  const pool = new UpstreamPool({ connect: loopbackConnector(upstream.port).connect, trust: tls.createSecureContext({ ca: pki.caPem }) });
  const proxy = new HttpProxy({ pool, store, bodyCaptureLimit: 64, log: silentLogger, limits: { ...ENGINE_LIMIT_DEFAULTS, ...limits } });
  const sockets = new Set<net.Socket>();
  const front = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    proxy.serve(socket, {
      client: { address: '127.0.0.1', port: socket.remotePort ?? 0 },
      server: { address: '127.0.0.1', port: 443 },
      tls: { sni: UPSTREAM_NAME },
    });
  });
  const port = await listenLoopback(front);
  t.after(async () => {
    events.unsubscribe();
    proxy.close();
    for (const s of sockets) s.destroy();
    pool.destroy();
    await closeServer(front);
  });
  return { port, store, events, open: () => sockets.size };
}

/** Writes `payload` (chunks in turn, `gapMs` apart), collects the reply until the front closes. */
function exchangeRaw(port: number, payload: string | Buffer | (string | Buffer)[], gapMs = 0, ms = 5000): Promise<{ text: string; closedAfterMs: number }> {
  const started = performance.now();
  const done = new Promise<{ text: string; closedAfterMs: number }>((resolve) => {
    const chunks: Buffer[] = [];
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      const parts = Array.isArray(payload) ? payload : [payload];
      let i = 0;
      const next = () => {
        if (i >= parts.length || socket.destroyed) return;
        socket.write(parts[i++]!);
        if (gapMs > 0) setTimeout(next, gapMs).unref();
        else next();
      };
      next();
    });
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => {});
    socket.once('close', () => resolve({ text: Buffer.concat(chunks).toString('latin1'), closedAfterMs: performance.now() - started }));
    setTimeout(() => socket.destroy(), ms).unref();
  });
  return within(done, 'the proxy to close the connection', ms + 1000);
}

const HOST = `Host: ${UPSTREAM_NAME}\r\n`;

describe('HttpProxy: requests that could be read two ways are refused before the upstream', () => {
  const cases: { name: string; payload: string; code?: RegExp; recorded?: RegExp }[] = [
    { name: 'Content-Length with Transfer-Encoding', payload: `POST /s HTTP/1.1\r\n${HOST}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n${HOST}\r\n` },
    { name: 'two Content-Length fields', payload: `POST /s HTTP/1.1\r\n${HOST}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhelloo` },
    { name: 'two equal Content-Length fields', payload: `POST /s HTTP/1.1\r\n${HOST}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello` },
    { name: 'a Content-Length list', payload: `POST /s HTTP/1.1\r\n${HOST}Content-Length: 5, 5\r\n\r\nhello` },
    { name: 'Transfer-Encoding not ending in chunked', payload: `POST /s HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n` },
    { name: 'two Transfer-Encoding fields', payload: `POST /s HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n` },
    { name: 'Transfer-Encoding in HTTP/1.0', payload: `POST /s HTTP/1.0\r\n${HOST}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, recorded: /Transfer-Encoding in an HTTP\/1\.0 request/ },
    { name: 'a malformed chunk size', payload: `POST /s HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n`, recorded: /HPE_INVALID_CHUNK_SIZE|invalid HTTP/ },
    { name: 'a chunk size with trailing space', payload: `POST /s HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n` },
    { name: 'an overflowing chunk size', payload: `POST /s HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\nabc\r\n0\r\n\r\n` },
    { name: 'a header name with a space', payload: `GET /s HTTP/1.1\r\n${HOST}Bad Name: x\r\n\r\n` },
    { name: 'a space before the colon', payload: `GET /s HTTP/1.1\r\n${HOST}Content-Length : 0\r\n\r\n` },
    { name: 'a control character in a value', payload: `GET /s HTTP/1.1\r\n${HOST}X-A: a\x01b\r\n\r\n` },
    { name: 'NUL in a value', payload: `GET /s HTTP/1.1\r\n${HOST}X-A: a\x00b\r\n\r\n` },
    { name: 'an obs-fold continuation line', payload: `GET /s HTTP/1.1\r\n${HOST}X-A: a\r\n b\r\n\r\n` },
    { name: 'a bare CR in a value', payload: `GET /s HTTP/1.1\r\n${HOST}X-A: a\rb\r\n\r\n` },
    { name: 'two Host fields', payload: `GET /s HTTP/1.1\r\n${HOST}Host: evil.test\r\n\r\n`, recorded: /more than one Host/ },
  ];
  for (const c of cases) {
    it(`answers 400 to ${c.name}`, async (t) => {
      const h = await harness(t);
      const seen = upstream.requests.length;
      const { text } = await exchangeRaw(h.port, c.payload);
      assert.match(text, /^HTTP\/1\.1 400 Bad Request\r\n/);
      assert.equal(text.match(/HTTP\/1\.1 /g)?.length, 1, 'exactly one response: nothing after the refused request was read as a request');
      assert.match(text, /Connection: close\r\n/i);
      assert.equal(upstream.requests.length, seen, 'nothing reached the upstream');
      if (c.recorded) {
        const [id] = await h.events.waitFor(() => (h.events.startedIds().length ? h.events.startedIds() : undefined), 'the refused exchange');
        const ex = await h.events.completed(id!);
        assert.equal(ex.error?.kind, 'client-protocol');
        assert.match(ex.error?.message ?? '', c.recorded);
        assert.equal(ex.response?.status, 400);
      }
    });
  }

  it('still relays a well-formed chunked request with an extension', async (t) => {
    const h = await harness(t);
    const { text } = await exchangeRaw(h.port, `POST /fine HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n3;x=y\r\nabc\r\n0\r\n\r\n`);
    assert.match(text, /^HTTP\/1\.1 200 OK/);
    assert.match(text, /ok \/fine/);
  });
});

describe('HttpProxy: header limits', () => {
  const fields = (n: number) => Array.from({ length: n }, (_, i) => `X-F${i}: v\r\n`).join('');

  it('relays a request with exactly maxHeaderCount fields and refuses one more with 431', async (t) => {
    const h = await harness(t, { maxHeaderCount: 10 });
    const seen = upstream.requests.length;
    const ok = await exchangeRaw(h.port, `GET /count-ok HTTP/1.1\r\n${HOST}Connection: close\r\n${fields(8)}\r\n`);
    assert.match(ok.text, /^HTTP\/1\.1 200 /);
    const bad = await exchangeRaw(h.port, `GET /count-bad HTTP/1.1\r\n${HOST}${fields(10)}\r\n`);
    assert.match(bad.text, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
    assert.match(bad.text, /more than 10 header fields/);
    assert.deepEqual(upstream.requests.slice(seen).map((r) => r.url), ['/count-ok']);
    const ids = h.events.startedIds();
    const ex = await h.events.completed(ids[ids.length - 1]!);
    assert.equal(ex.response?.status, 431);
    assert.equal(ex.error?.kind, 'client-protocol');
  });

  it('refuses a request head over maxHeaderBytes with 431 and relays nothing', async (t) => {
    const h = await harness(t, { maxHeaderBytes: 2048 });
    const seen = upstream.requests.length;
    const { text } = await exchangeRaw(h.port, `GET /big HTTP/1.1\r\n${HOST}X-Big: ${'a'.repeat(3000)}\r\n\r\n`);
    assert.match(text, /^HTTP\/1\.1 431 /);
    assert.equal(upstream.requests.length, seen);
    const fine = await exchangeRaw(h.port, `GET /small HTTP/1.1\r\n${HOST}Connection: close\r\nX-Big: ${'a'.repeat(1500)}\r\n\r\n`);
    assert.match(fine.text, /^HTTP\/1\.1 200 /);
  });

  it('answers 502 to an upstream response with more than maxHeaderCount fields', async (t) => {
    const h = await harness(t, { maxHeaderCount: 20 });
    const { text } = await exchangeRaw(h.port, `GET /many-headers HTTP/1.1\r\n${HOST}\r\n`);
    assert.match(text, /^HTTP\/1\.1 502 Bad Gateway\r\n/);
    assert.doesNotMatch(text, /X-H1:/i, 'none of the upstream head reached the client');
    const [id] = h.events.startedIds();
    const ex = await h.events.completed(id!);
    assert.equal(ex.error?.kind, 'upstream-protocol');
    assert.match(ex.error?.message ?? '', /more than 20 header fields/);
  });

  it('answers 502 to an upstream head over maxHeaderBytes', async (t) => {
    const h = await harness(t, { maxHeaderBytes: 4096 });
    const { text } = await exchangeRaw(h.port, `GET /big-head HTTP/1.1\r\n${HOST}\r\n`);
    assert.match(text, /^HTTP\/1\.1 502 Bad Gateway\r\n/);
    const [id] = h.events.startedIds();
    const ex = await h.events.completed(id!);
    assert.equal(ex.error?.kind, 'upstream-protocol');
    assert.equal(ex.error?.code, 'HPE_HEADER_OVERFLOW');
  });
});

describe('HttpProxy: client idle and slow-head deadline', () => {
  it('closes a kept-alive connection idle for clientIdleTimeoutSeconds, without a 408', async (t) => {
    const h = await harness(t, { clientIdleTimeoutSeconds: 1 });
    const { text, closedAfterMs } = await exchangeRaw(h.port, `GET /keep HTTP/1.1\r\n${HOST}\r\n`);
    assert.match(text, /^HTTP\/1\.1 200 /);
    assert.doesNotMatch(text, /408/);
    assert.ok(closedAfterMs >= 900 && closedAfterMs < 3000, `closed after ${Math.round(closedAfterMs)} ms`);
  });

  it('closes a connection that never sends anything', async (t) => {
    const h = await harness(t, { clientIdleTimeoutSeconds: 1 });
    const { text, closedAfterMs } = await exchangeRaw(h.port, []);
    assert.equal(text, '');
    assert.ok(closedAfterMs >= 900 && closedAfterMs < 3000, `closed after ${Math.round(closedAfterMs)} ms`);
  });

  it('answers 408 to a head that trickles in (slowloris) and relays nothing', async (t) => {
    const h = await harness(t, { clientIdleTimeoutSeconds: 1 });
    const seen = upstream.requests.length;
    // One byte every 100 ms: the head would take 6 s; the deadline does not move with each byte.
    const head = `GET /slow-head HTTP/1.1\r\n${HOST}X-Pad: ${'p'.repeat(20)}\r\n\r\n`;
    const { text, closedAfterMs } = await exchangeRaw(h.port, head.split(''), 100, 6000);
    assert.match(text, /^HTTP\/1\.1 408 Request Timeout\r\n/);
    assert.ok(closedAfterMs < 3000, `closed after ${Math.round(closedAfterMs)} ms`);
    assert.equal(upstream.requests.length, seen);
  });

  it('answers 408 to a request body that stops arriving (slow POST)', async (t) => {
    const h = await harness(t, { clientIdleTimeoutSeconds: 1 });
    const parts = [`POST /stalled-body HTTP/1.1\r\n${HOST}Content-Length: 10\r\n\r\nabc`];
    const { text, closedAfterMs } = await exchangeRaw(h.port, parts, 0, 6000);
    assert.match(text, /^HTTP\/1\.1 408 Request Timeout\r\n/);
    assert.ok(closedAfterMs >= 900 && closedAfterMs < 3000, `closed after ${Math.round(closedAfterMs)} ms`);
    const [id] = h.events.startedIds();
    const ex = await h.events.completed(id!);
    assert.equal(ex.error?.kind, 'client-protocol');
    assert.match(ex.error?.message ?? '', /request body stalled/);
    assert.equal(ex.request.body.size, 3);
  });

  it('leaves a client waiting longer than the deadline for its response alone', async (t) => {
    const h = await harness(t, { clientIdleTimeoutSeconds: 1 });
    const { text } = await exchangeRaw(h.port, `GET /wait HTTP/1.1\r\n${HOST}Connection: close\r\n\r\n`, 0, 6000);
    assert.match(text, /^HTTP\/1\.1 200 /);
    assert.match(text, /\r\nwaited\r\n/);
  });

  it('does not cut a request body that keeps arriving slowly', async (t) => {
    const h = await harness(t, { clientIdleTimeoutSeconds: 1 });
    // A request body sent over 1.5 s: the request is in flight, so the deadline is off.
    const parts = [`POST /slow-body HTTP/1.1\r\n${HOST}Connection: close\r\nContent-Length: 3\r\n\r\n`, 'a', 'b', 'c'];
    const { text } = await exchangeRaw(h.port, parts, 500, 6000);
    assert.match(text, /^HTTP\/1\.1 200 /);
    assert.match(text, /ok \/slow-body/);
  });
});

describe('HttpProxy: WebSocket', () => {
  /** Opens a WebSocket through the proxy and returns helpers to talk over it. */
  async function openWs(port: number, path = '/ws'): Promise<{ socket: net.Socket; head: string; read(n: number): Promise<Buffer>; closed: Promise<void> }> {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.on('error', () => {});
    let buf = Buffer.alloc(0);
    let wake: (() => void) | undefined;
    socket.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      wake?.();
    });
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    await within(new Promise((r) => socket.once('connect', r)), 'connect');
    socket.write(`GET ${path} HTTP/1.1\r\n${HOST}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    const take = (pred: () => number) =>
      within(
        new Promise<Buffer>((resolve) => {
          const check = () => {
            const n = pred();
            if (n > 0) {
              const out = buf.subarray(0, n);
              buf = buf.subarray(n);
              wake = undefined;
              resolve(out);
            }
          };
          wake = check;
          check();
        }),
        'bytes from the proxy',
      );
    const head = (await take(() => (buf.indexOf('\r\n\r\n') >= 0 ? buf.indexOf('\r\n\r\n') + 4 : 0))).toString('latin1');
    return { socket, head, read: (n) => take(() => (buf.length >= n ? n : 0)), closed };
  }

  it('relays the handshake and frames both ways and records counts and text', async (t) => {
    const h = await harness(t);
    const ws = await openWs(h.port);
    assert.match(ws.head, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
    assert.match(ws.head, /Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=\r\n/);
    // A fragmented text message with a ping in the middle, then a binary one.
    ws.socket.write(Buffer.concat([clientFrame(1, Buffer.from('hel'), false), clientFrame(9, Buffer.from('p')), clientFrame(0, Buffer.from('lo'))]));
    const echoed = await ws.read(3 + 7);
    assert.deepEqual([...echoed], [0x8a, 1, 0x70, 0x81, 5, ...Buffer.from('hello')], 'the pong, then the whole message');
    ws.socket.write(clientFrame(2, Buffer.from([0, 1, 2, 255])));
    assert.deepEqual([...(await ws.read(6))], [0x82, 4, 0, 1, 2, 255]);
    // Announced while the tunnel is still open (coalesced updates), not only at the end.
    const live = await h.events.waitFor(() => h.events.entries.find((e) => e.event === 'updated' && e.exchange.websocket?.messagesDown === 2), 'a live update with both echoes');
    assert.equal(live.exchange.state, 'in-flight');
    ws.socket.write(clientFrame(8, Buffer.from([0x03, 0xe8])));
    await ws.read(4);
    await within(ws.closed, 'the tunnel to close');

    const [id] = h.events.startedIds();
    const ex: Exchange = await h.events.completed(id!);
    assert.equal(ex.state, 'complete');
    assert.equal(ex.response?.status, 101);
    const info = ex.websocket!;
    assert.equal(info.messagesUp, 2);
    assert.equal(info.messagesDown, 2);
    assert.equal(info.closeCode, 1000);
    assert.equal(info.error, undefined);
    assert.deepEqual(
      info.messages.map((m) => [m.dir, m.opcode, m.size, m.text]),
      [
        ['up', 9, 1, undefined],
        ['up', 1, 5, 'hello'],
        ['down', 10, 1, undefined],
        ['down', 1, 5, 'hello'],
        ['up', 2, 4, undefined],
        ['down', 2, 4, undefined],
        ['up', 8, 2, undefined],
        ['down', 8, 2, undefined],
      ],
    );
    assert.ok(info.bytesUp > 0 && info.bytesDown > 0);
  });

  it('relays a refused upgrade as an ordinary response and closes', async (t) => {
    const h = await harness(t);
    const ws = await openWs(h.port, '/not-ws');
    assert.match(ws.head, /^HTTP\/1\.1 403 Forbidden\r\n/);
    assert.match(ws.head, /Connection: close\r\n/);
    assert.equal((await ws.read(6)).toString(), 'no ws!');
    await within(ws.closed, 'the connection to close');
    const [id] = h.events.startedIds();
    const ex = await h.events.completed(id!);
    assert.equal(ex.response?.status, 403);
    assert.equal(ex.websocket, undefined);
  });

  it('refuses an upgrade request that carries a body, before the upstream', async (t) => {
    const h = await harness(t);
    const seen = upstream.requests.length;
    const { text } = await exchangeRaw(h.port, `POST /ws HTTP/1.1\r\n${HOST}Upgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 5\r\n\r\nhello`);
    assert.match(text, /^HTTP\/1\.1 400 Bad Request\r\n/);
    assert.match(text, /upgrade request with a body/);
    assert.equal(upstream.requests.length, seen);
    // The socket Node handed over is closed on our side too, not left paused and open.
    for (let i = 0; i < 40 && h.open() > 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(h.open(), 0);
  });

  it('refuses an upgrade request with two Host fields', async (t) => {
    const h = await harness(t);
    const seen = upstream.requests.length;
    const { text } = await exchangeRaw(h.port, `GET /ws HTTP/1.1\r\n${HOST}Host: evil.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n`);
    assert.match(text, /^HTTP\/1\.1 400 Bad Request\r\n/);
    assert.equal(upstream.requests.length, seen);
    const [id] = h.events.startedIds();
    assert.equal((await h.events.completed(id!)).error?.kind, 'client-protocol');
  });

  it('answers 504 when the upstream never answers the upgrade', async (t) => {
    const h = await harness(t, { clientIdleTimeoutSeconds: 1 });
    const ws = await openWs(h.port, '/ws-silent');
    assert.match(ws.head, /^HTTP\/1\.1 504 Gateway Timeout\r\n/);
    await within(ws.closed, 'the connection to close');
    const [id] = h.events.startedIds();
    const ex = await h.events.completed(id!);
    assert.equal(ex.error?.kind, 'upstream-aborted');
    assert.match(ex.error?.message ?? '', /did not answer the upgrade/);
  });

  it('closes a silent tunnel after clientIdleTimeoutSeconds', async (t) => {
    const h = await harness(t, { clientIdleTimeoutSeconds: 1 });
    const ws = await openWs(h.port);
    assert.match(ws.head, /^HTTP\/1\.1 101 /);
    const t0 = performance.now();
    await within(ws.closed, 'the idle tunnel to close', 4000);
    assert.ok(performance.now() - t0 >= 900);
    const [id] = h.events.startedIds();
    assert.equal((await h.events.completed(id!)).response?.status, 101);
  });
});
