/**
 * The decrypt engine end to end, in process and on loopback only: a client trusting our CA talks
 * TLS to a plain listener whose sockets go to Engine.handleConnection, exactly as the transparent
 * listener's would; the engine terminates TLS with a minted leaf and HttpProxy relays each request
 * over a verified UpstreamPool connection to a loopback HTTPS upstream signed by a separate test CA.
 *
 *   client ──TLS(our CA, SNI upstream.test)──▶ front 127.0.0.1:<p> ─▶ Engine ─▶ HttpProxy
 *                                                                         │ UpstreamPool (test CA)
 *                                                                         ▼
 *                                   loopback connector (ignores the original destination)
 *                                                                         ▼
 *                                                      upstream 127.0.0.1:<q> (https / bare TLS)
 *
 * Each test asserts both what the client got on the wire and what the capture recorded. Waits are
 * on events, each bounded by `within`; the only deliberate delays are the 100-continue upstream's
 * decision time and the upstream handshake timeout, both the very thing under test.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { after, afterEach, before, describe, it, type TestContext } from 'node:test';
import tls from 'node:tls';
import type { Exchange } from '@tproxy/protocol';
import type { H2Server } from './engine.js';
import {
  UPSTREAM_NAME,
  closeServer,
  closedPort,
  createInterceptionPki,
  createUpstreamPki,
  fetchVia,
  listenLoopback,
  loopbackConnector,
  rawTcp,
  rawTls,
  startEngine,
  startTlsSink,
  startUpstream,
  within,
  type EngineHarness,
  type EngineHarnessOptions,
  type InterceptionPki,
  type Upstream,
  type UpstreamPki,
} from './test-support.js';

const BODY_CAPTURE_LIMIT = 1024;
/** How long the 100-continue upstream deliberates before answering 100: long enough to order events. */
const CONTINUE_DECISION_MS = 100;

// Anything thrown from a socket callback would surface here rather than in a test: fail loudly.
const escaped: unknown[] = [];
const onEscape = (err: unknown) => escaped.push(err);
process.on('uncaughtException', onEscape);
process.on('unhandledRejection', onEscape);
afterEach(() => {
  assert.deepEqual(escaped.splice(0).map(String), [], 'an exception escaped the engine');
});
after(() => {
  process.off('uncaughtException', onEscape);
  process.off('unhandledRejection', onEscape);
});

let pki: UpstreamPki;
let ours: InterceptionPki;
let upstream: Upstream;

/** Hooks the upstream handler calls so a test can follow or steer a long response. */
const hooks: {
  /** '/slow': called when the upstream's response closes, with whether it was finished. */
  slowClosed?: (finished: boolean) => void;
  /** '/reset': the upstream hands over a function that sends a TCP RST on its connection. */
  resetReady?: (reset: () => void) => void;
  /** '/continue': when the upstream decided to send 100. */
  continueDecidedAt?: number;
} = {};

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', reject);
  });
}

/** The good upstream: one route per behaviour under test. */
function route(req: http.IncomingMessage, res: http.ServerResponse, up: Upstream): void {
  const path = (req.url ?? '/').split('?')[0];
  switch (path) {
    case '/echo':
      void readBody(req).then((body) => {
        res.writeHead(200, {
          'content-type': 'application/octet-stream',
          'content-length': body.length,
          'x-seen-te': req.headers['transfer-encoding'] ?? '',
          'x-seen-cl': req.headers['content-length'] ?? '',
        });
        res.end(body);
      });
      return;
    case '/headers':
      res.writeHead(200, { 'content-type': 'application/json', 'set-cookie': 'session=ZYXWVUTSRQPONMLK; Path=/; HttpOnly' });
      res.end(JSON.stringify({ authorization: req.headers.authorization, cookie: req.headers.cookie, apiKey: req.headers['x-api-key'] }));
      return;
    case '/chunked':
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('one,');
      res.write('two,');
      res.end('three');
      return;
    case '/head':
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 11 });
      res.end(req.method === 'HEAD' ? undefined : 'hello world');
      return;
    case '/no-content':
      res.writeHead(204, { 'x-kind': 'no-content' }).end();
      return;
    case '/not-modified':
      res.writeHead(304, { etag: '"v1"' }).end();
      return;
    case '/trailers':
      res.writeHead(200, { 'content-type': 'text/plain', trailer: 'X-Checksum' });
      res.write('body with a trailer');
      res.addTrailers({ 'X-Checksum': 'abc123' });
      res.end();
      return;
    case '/continue':
      void readBody(req).then((body) => res.writeHead(200, { 'content-length': body.length }).end(body));
      return;
    case '/slow':
      // 64 KiB now, the other ~10 MB never: only a client abort ends this response.
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 10 * 1024 * 1024 });
      res.write(Buffer.alloc(64 * 1024, 0x61));
      res.once('close', () => hooks.slowClosed?.(res.writableFinished));
      return;
    case '/reset':
    case '/reset-chunked':
      // With a length the client could tell a short body anyway; chunked, only a destroyed
      // connection (no last-chunk) tells it the body was cut.
      res.writeHead(200, { 'content-type': 'application/octet-stream', ...(path === '/reset' ? { 'content-length': 100_000 } : {}) });
      res.write(Buffer.alloc(1000, 0x62), () => {
        const raw = up.rawSocketFor(req.socket);
        assert.ok(raw, 'the raw TCP socket under the upstream TLS connection');
        hooks.resetReady?.(() => raw.resetAndDestroy());
      });
      return;
    default:
      res.writeHead(200, { 'content-type': 'text/plain' }).end(`ok ${path}`);
  }
}

/** A checkContinue handler that deliberates before letting the body come. */
function onCheckContinue(req: http.IncomingMessage, res: http.ServerResponse, up: Upstream): void {
  setTimeout(() => {
    hooks.continueDecidedAt = performance.now();
    res.writeContinue();
    route(req, res, up);
  }, CONTINUE_DECISION_MS);
}

before(async () => {
  [pki, ours] = await Promise.all([createUpstreamPki(), createInterceptionPki()]);
  upstream = await startUpstream({ key: pki.keyPem, cert: pki.good }, route, onCheckContinue);
});

after(async () => {
  await upstream?.close();
  await ours?.dispose();
});

/** A fresh engine for one test, torn down after it; dials `port` (the good upstream by default). */
async function harness(t: TestContext, port = upstream.port, extra: Partial<EngineHarnessOptions> = {}): Promise<EngineHarness & { calls: { address: string; port: number }[] }> {
  const connector = loopbackConnector(port);
  const h = await startEngine({ certs: ours.certs, connect: connector.connect, upstreamCaPem: pki.caPem, bodyCaptureLimit: BODY_CAPTURE_LIMIT, ...extra });
  t.after(() => h.close());
  return { ...h, calls: connector.calls };
}

function keepAliveAgent(t: TestContext): https.Agent {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  return agent;
}

/** The only exchange the store holds, once completed. */
async function onlyExchange(h: EngineHarness): Promise<Exchange> {
  const [id] = await h.events.waitFor(() => (h.events.startedIds().length > 0 ? h.events.startedIds() : undefined), 'an exchange to start');
  assert.equal(h.events.startedIds().length, 1, 'exactly one exchange');
  return h.events.completed(id!);
}

function header(ex: Exchange, side: 'request' | 'response', name: string): string | undefined {
  const headers = side === 'request' ? ex.request.headers : ex.response?.headers;
  return headers?.find(([k]) => k.toLowerCase() === name)?.[1];
}

describe('Engine + HttpProxy: ordinary exchanges', () => {
  it('relays two GETs over one kept-alive client connection and records each', async (t) => {
    const h = await harness(t);
    const agent = keepAliveAgent(t);
    const t0 = Date.now();

    const first = await fetchVia(h.port, ours.ca.certPem, { path: '/one?x=1', agent });
    const second = await fetchVia(h.port, ours.ca.certPem, { path: '/two', agent });
    const afterBoth = Date.now();

    assert.equal(first.status, 200);
    assert.equal(first.body.toString(), 'ok /one');
    assert.equal(second.body.toString(), 'ok /two');
    assert.equal(first.reusedSocket, false);
    assert.equal(second.reusedSocket, true, 'the second request reused the client connection');
    assert.equal(second.localPort, first.localPort);
    assert.equal(h.engine.connectionCount, 1);
    // The leaf the client accepted was minted for its SNI by our CA.
    assert.equal(first.peerCertificate.subjectaltname, `DNS:${UPSTREAM_NAME}`);

    const ids = h.events.startedIds();
    assert.equal(ids.length, 2);
    const exchanges = await Promise.all(ids.map((id) => h.events.completed(id)));
    for (const [i, ex] of exchanges.entries()) {
      assert.equal(ex.state, 'complete');
      assert.equal(ex.request.method, 'GET');
      assert.equal(ex.request.url, i === 0 ? 'https://upstream.test/one?x=1' : 'https://upstream.test/two');
      assert.equal(ex.request.httpVersion, '1.1');
      assert.equal(ex.response?.status, 200);
      assert.deepEqual(ex.tls, { sni: UPSTREAM_NAME, clientVersion: 'TLSv1.3', upstreamVersion: 'TLSv1.3', alpn: 'http/1.1', clientAlpn: ['http/1.1'] });
      assert.deepEqual(ex.client, { address: '127.0.0.1', port: first.localPort });
      assert.deepEqual(ex.server, { address: '127.0.0.1', port: h.port }, 'the original destination (here: the front itself)');
      const { startedAt, upstreamConnected, firstByte, end } = ex.timing;
      assert.ok(startedAt >= t0 - 1 && startedAt <= afterBoth + 1, 'startedAt is wall-clock');
      assert.ok(upstreamConnected !== undefined && firstByte !== undefined && end !== undefined, JSON.stringify(ex.timing));
      assert.ok(0 <= upstreamConnected && upstreamConnected <= firstByte && firstByte <= end, JSON.stringify(ex.timing));
      assert.deepEqual(h.events.eventsFor(ex.id), ['started', 'updated', 'completed']);
      assert.equal(ex.response?.body.size, i === 0 ? 'ok /one'.length : 'ok /two'.length);
    }
    assert.ok(exchanges[1]!.id > exchanges[0]!.id);
    assert.deepEqual(h.store.list(10).exchanges.map((e) => e.id), [...ids].reverse());
    // The pool asked for the original destination once and kept the upstream connection alive.
    assert.deepEqual(h.calls, [{ address: '127.0.0.1', port: h.port }]);
    assert.deepEqual(upstream.requests.slice(-2).map((r) => [r.url, r.headers.host]), [
      ['/one?x=1', UPSTREAM_NAME],
      ['/two', UPSTREAM_NAME],
    ]);
  });

  it('masks secrets in the capture while the upstream and the client see them intact', async (t) => {
    const h = await harness(t);
    const res = await fetchVia(h.port, ours.ca.certPem, {
      path: '/headers',
      headers: { authorization: 'Bearer abcdefghijklmnop', cookie: 'sid=0123456789abcdef; theme=dark', 'x-api-key': 'key-1234567890' },
    });

    assert.deepEqual(JSON.parse(res.body.toString()), { authorization: 'Bearer abcdefghijklmnop', cookie: 'sid=0123456789abcdef; theme=dark', apiKey: 'key-1234567890' });
    assert.deepEqual(res.headers['set-cookie'], ['session=ZYXWVUTSRQPONMLK; Path=/; HttpOnly']);

    const ex = await onlyExchange(h);
    assert.equal(header(ex, 'request', 'authorization'), 'Bearer abcd…[masked 16]');
    assert.equal(header(ex, 'request', 'cookie'), 'sid=0123…[masked 16]; theme=d…[masked 4]');
    assert.equal(header(ex, 'request', 'x-api-key'), 'key…[masked 14]');
    assert.equal(header(ex, 'response', 'set-cookie'), 'session=ZYXW…[masked 16]; Path=/; HttpOnly');
    const everything = JSON.stringify(h.events.entries);
    for (const secret of ['abcdefghijklmnop', '0123456789abcdef', 'ZYXWVUTSRQPONMLK', 'key-1234567890']) {
      assert.ok(!everything.includes(secret), `${secret} leaked into an event`);
    }
  });

  it('streams a POST body past the capture limit and keeps only its first 1024 bytes', async (t) => {
    const h = await harness(t);
    const body = randomBytes(3000);
    const res = await fetchVia(h.port, ours.ca.certPem, { method: 'POST', path: '/echo', body, headers: { 'content-type': 'application/octet-stream' } });

    assert.equal(res.status, 200);
    assert.ok(res.body.equals(body), 'the echo is the whole body');
    assert.equal(res.headers['x-seen-cl'], '3000');

    const snap = await onlyExchange(h);
    assert.equal(snap.request.method, 'POST');
    assert.deepEqual(snap.request.body, { size: 3000, captured: BODY_CAPTURE_LIMIT, truncated: true });
    assert.deepEqual(snap.response?.body, { size: 3000, captured: BODY_CAPTURE_LIMIT, truncated: true });
    const ex = h.store.get(snap.id);
    assert.ok(ex);
    assert.ok(ex.requestBody.bytes().equals(body.subarray(0, BODY_CAPTURE_LIMIT)));
    assert.ok(ex.responseBody.bytes().equals(body.subarray(0, BODY_CAPTURE_LIMIT)));
  });

  it('relays a chunked request body and a chunked response', async (t) => {
    const h = await harness(t);
    const up = await fetchVia(h.port, ours.ca.certPem, { method: 'POST', path: '/echo', body: ['part1-', 'part2-', 'part3'] });
    assert.equal(up.body.toString(), 'part1-part2-part3');
    assert.equal(up.headers['x-seen-te'], 'chunked', 'the upstream got a chunked body');
    assert.equal(up.headers['x-seen-cl'], '');
    const upEx = await onlyExchange(h);
    assert.equal(header(upEx, 'request', 'transfer-encoding'), 'chunked');
    assert.deepEqual(upEx.request.body, { size: 17, captured: 17, truncated: false });
    assert.ok(h.store.get(upEx.id)?.requestBody.bytes().equals(Buffer.from('part1-part2-part3')));

    const down = await fetchVia(h.port, ours.ca.certPem, { path: '/chunked' });
    assert.equal(down.headers['transfer-encoding'], 'chunked');
    assert.equal(down.headers['content-length'], undefined);
    assert.equal(down.body.toString(), 'one,two,three');
    const downEx = await h.events.completed(h.events.startedIds()[1]!);
    assert.deepEqual(downEx.response?.body, { size: 13, captured: 13, truncated: false });
  });

  it('keeps HEAD, 204 and 304 bodiless and the connection in step', async (t) => {
    const h = await harness(t);
    const agent = keepAliveAgent(t);

    const head = await fetchVia(h.port, ours.ca.certPem, { method: 'HEAD', path: '/head', agent });
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], '11', 'HEAD keeps the length of the body it did not send');
    assert.equal(head.body.length, 0);

    const noContent = await fetchVia(h.port, ours.ca.certPem, { path: '/no-content', agent });
    assert.equal(noContent.status, 204);
    assert.equal(noContent.headers['x-kind'], 'no-content');
    assert.equal(noContent.body.length, 0);

    const notModified = await fetchVia(h.port, ours.ca.certPem, { path: '/not-modified', agent, headers: { 'if-none-match': '"v1"' } });
    assert.equal(notModified.status, 304);
    assert.equal(notModified.headers.etag, '"v1"');
    assert.equal(notModified.body.length, 0);

    // Had any of them been framed wrongly, this response would be garbled or hang.
    const next = await fetchVia(h.port, ours.ca.certPem, { path: '/after', agent });
    assert.equal(next.body.toString(), 'ok /after');
    assert.equal(next.reusedSocket, true);
    assert.equal(h.engine.connectionCount, 1);

    const ids = h.events.startedIds();
    const snaps = await Promise.all(ids.map((id) => h.events.completed(id)));
    assert.deepEqual(snaps.map((s) => [s.state, s.request.method, s.response?.status, s.response?.body.size]), [
      ['complete', 'HEAD', 200, 0],
      ['complete', 'GET', 204, 0],
      ['complete', 'GET', 304, 0],
      ['complete', 'GET', 200, 9],
    ]);
  });

  it('relays response trailers', async (t) => {
    const h = await harness(t);
    const res = await fetchVia(h.port, ours.ca.certPem, { path: '/trailers', headers: { te: 'trailers' } });
    assert.equal(res.body.toString(), 'body with a trailer');
    assert.equal(res.headers.trailer, 'X-Checksum');
    assert.deepEqual(res.trailers, { 'x-checksum': 'abc123' });
    const ex = await onlyExchange(h);
    assert.equal(ex.state, 'complete');
  });

  it('answers 100-continue only once the upstream did, then lets the body flow', async (t) => {
    const h = await harness(t);
    hooks.continueDecidedAt = undefined;
    const body = 'the body after 100';
    const outcome = within(
      new Promise<{ continueAt: number; status: number; body: string }>((resolve, reject) => {
        let continueAt = 0;
        const req = https.request({
          host: '127.0.0.1',
          port: h.port,
          method: 'POST',
          path: '/continue',
          servername: UPSTREAM_NAME,
          ca: ours.ca.certPem,
          agent: false,
          headers: { host: UPSTREAM_NAME, expect: '100-continue', 'content-length': Buffer.byteLength(body) },
        });
        req.once('error', reject);
        req.once('continue', () => {
          continueAt = performance.now();
          req.end(body);
        });
        req.once('response', (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.once('end', () => resolve({ continueAt, status: res.statusCode ?? 0, body: text }));
        });
        req.flushHeaders();
      }),
      'the 100-continue exchange',
    );
    const { continueAt, status, body: echoed } = await outcome;
    assert.equal(status, 200);
    assert.equal(echoed, body);
    assert.ok(hooks.continueDecidedAt !== undefined, 'the upstream ran its checkContinue handler');
    assert.ok(continueAt >= hooks.continueDecidedAt, `client got 100 at ${continueAt}, before the upstream decided at ${hooks.continueDecidedAt}`);
    assert.equal(upstream.requests.at(-1)?.headers.expect, '100-continue');

    const ex = await onlyExchange(h);
    assert.equal(ex.state, 'complete');
    assert.deepEqual(ex.request.body, { size: body.length, captured: body.length, truncated: false });
  });
});

describe('Engine + HttpProxy: upstream failures', () => {
  const certCases = [
    { name: 'self-signed (not in the trust)', cert: () => pki.selfSigned, code: 'DEPTH_ZERO_SELF_SIGNED_CERT', words: 'self-signed certificate' },
    { name: 'issued for another name', cert: () => pki.otherName, code: 'ERR_TLS_CERT_ALTNAME_INVALID', words: 'does not match the server name' },
    { name: 'expired', cert: () => pki.expired, code: 'CERT_HAS_EXPIRED', words: 'certificate has expired' },
    { name: 'CN-only, without any subjectAltName', cert: () => pki.cnOnly, code: 'ERR_TLS_CERT_ALTNAME_INVALID', words: 'no subjectAltName' },
  ];
  for (const c of certCases) {
    it(`answers 502 and sends nothing to an upstream whose certificate is ${c.name}`, async (t) => {
      const sink = await startTlsSink({ key: pki.keyPem, cert: c.cert() });
      t.after(() => sink.close());
      const h = await harness(t, sink.port);

      const res = await fetchVia(h.port, ours.ca.certPem, { method: 'POST', path: '/secret', body: 'request bytes', headers: { authorization: 'Bearer nope' } });
      assert.equal(res.status, 502);
      assert.equal(res.headers['content-type'], 'text/plain; charset=utf-8');
      assert.equal(res.headers.connection, 'close');
      const text = res.body.toString();
      assert.match(text, /^tproxy: [^\n]+\n$/, 'one line of reason');
      assert.ok(text.includes(c.words), text);
      assert.ok(text.includes(`${UPSTREAM_NAME} (127.0.0.1:${h.port})`), text);

      const ex = await onlyExchange(h);
      assert.equal(ex.state, 'error');
      assert.equal(ex.error?.kind, 'upstream-tls');
      assert.equal(ex.error?.code, c.code);
      assert.equal(`tproxy: ${ex.error?.message}\n`, text);
      assert.equal(ex.response?.status, 502);

      assert.ok(sink.connections >= 1, 'the upstream was reached');
      await sink.idle();
      assert.equal(sink.bytes, 0, 'no request byte reached the rejected upstream');
    });
  }

  it('answers 502 upstream-connect ECONNREFUSED when the destination refuses', async (t) => {
    const h = await harness(t, await closedPort());
    const res = await fetchVia(h.port, ours.ca.certPem, { path: '/down' });
    assert.equal(res.status, 502);
    assert.equal(res.body.toString(), `tproxy: cannot connect to ${UPSTREAM_NAME} (127.0.0.1:${h.port}): connection refused (ECONNREFUSED)\n`);
    const ex = await onlyExchange(h);
    assert.equal(ex.state, 'error');
    assert.deepEqual(ex.error, { kind: 'upstream-connect', code: 'ECONNREFUSED', message: `cannot connect to ${UPSTREAM_NAME} (127.0.0.1:${h.port}): connection refused (ECONNREFUSED)` });
    assert.equal(ex.timing.upstreamConnected, undefined);
  });

  it(
    'reports an upstream TLS handshake timeout as upstream-tls',
    async (t) => {
      // Accepts TCP, reads and ignores the ClientHello, never answers.
      const accepted = new Set<net.Socket>();
      const silent = net.createServer((s) => {
        accepted.add(s);
        s.on('error', () => {}).resume();
      });
      const port = await listenLoopback(silent);
      t.after(async () => {
        for (const s of accepted) s.destroy();
        await closeServer(silent);
      });
      // 150 ms: the handshake timeout under test, short so the test stays fast.
      const h = await harness(t, port, { upstream: { handshakeTimeoutMs: 150 } });
      const res = await fetchVia(h.port, ours.ca.certPem, { path: '/tls-timeout' });
      assert.equal(res.status, 502);
      const ex = await onlyExchange(h);
      assert.equal(ex.error?.kind, 'upstream-tls');
      assert.match(ex.error?.message ?? '', /TLS handshake .* timed out/);
    },
  );

  for (const path of ['/reset', '/reset-chunked']) {
    it(`destroys the client connection when the upstream resets mid-body (${path})`, async (t) => {
      const h = await harness(t);
      const reset = new Promise<() => void>((resolve) => (hooks.resetReady = resolve));
      const outcome = within(
        new Promise<{ complete: boolean; bytes: number; error?: NodeJS.ErrnoException }>((resolve, reject) => {
          const req = https.request({ host: '127.0.0.1', port: h.port, path, servername: UPSTREAM_NAME, ca: ours.ca.certPem, agent: false, headers: { host: UPSTREAM_NAME } });
          req.once('error', reject);
          req.once('response', (res) => {
            let bytes = 0;
            let error: NodeJS.ErrnoException | undefined;
            res.on('data', (c: Buffer) => (bytes += c.length));
            res.once('error', (err: NodeJS.ErrnoException) => (error = err));
            res.once('close', () => resolve({ complete: res.complete, bytes, ...(error ? { error } : {}) }));
          });
          req.end();
        }),
        'the client to see the reset',
      );
      outcome.catch(() => {}); // awaited below; this only keeps an early failure from going unhandled
      // The reset waits until the proxy has relayed the response head.
      const id = (await h.events.waitFor(() => h.events.entries.find((e) => e.event === 'updated')?.exchange.id, 'the response head'))!;
      (await within(reset, 'the upstream to be ready to reset'))();

      const seen = await outcome;
      assert.equal(seen.complete, false, 'the client must not see a clean end');
      assert.ok(seen.bytes < 100_000);
      assert.equal(seen.error?.code, 'ECONNRESET');

      const ex = await h.events.completed(id);
      assert.equal(ex.state, 'error');
      assert.equal(ex.error?.kind, 'upstream-aborted');
      assert.equal(ex.response?.status, 200);
      assert.ok((ex.response?.body.size ?? 0) < 100_000);
    });
  }

  it('records client-aborted and aborts the upstream request when the client leaves mid-download', async (t) => {
    const h = await harness(t);
    const upstreamClosed = new Promise<boolean>((resolve) => (hooks.slowClosed = resolve));
    await within(
      new Promise<void>((resolve, reject) => {
        const req = https.request({ host: '127.0.0.1', port: h.port, path: '/slow', servername: UPSTREAM_NAME, ca: ours.ca.certPem, agent: false, headers: { host: UPSTREAM_NAME } });
        req.once('error', () => {});
        req.once('response', (res) => {
          res.once('data', () => {
            req.destroy();
            resolve();
          });
          res.once('error', () => {});
        });
        req.once('close', () => resolve());
        req.on('error', reject);
        req.end();
      }),
      'the first chunk',
    );
    const [id] = h.events.startedIds();
    const ex = await h.events.completed(id!);
    assert.equal(ex.state, 'error');
    assert.equal(ex.error?.kind, 'client-aborted');
    assert.equal(ex.response?.status, 200);
    assert.equal(await within(upstreamClosed, 'the upstream request to be aborted'), false, 'the upstream response never finished');
  });
});

describe('Engine: bad input never takes it down', () => {
  async function stillServes(h: EngineHarness, path: string): Promise<void> {
    const res = await fetchVia(h.port, ours.ca.certPem, { path });
    assert.equal(res.status, 200);
    assert.equal(res.body.toString(), `ok ${path}`);
  }

  it('passes a plain-TCP (non-TLS) connection through untouched and records it', async (t) => {
    const h = await harness(t);
    const { received } = await rawTcp(h.port, 'GET / HTTP/1.1\r\nHost: upstream.test\r\n\r\n');
    // The TLS upstream got plain HTTP: it answers like any TLS server would (never a decrypted HTTP reply from us).
    assert.ok(!received.toString('latin1').startsWith('HTTP/1.1 2'), 'no decrypted HTTP answer over plain TCP');
    const ex = await onlyExchange(h);
    assert.equal(ex.kind, 'passthrough');
    assert.equal(ex.passthrough?.reason, 'not-tls');
    assert.equal(ex.request.method, 'TCP');
    assert.equal(ex.request.url, `tcp://127.0.0.1:${h.port}`);
    assert.equal(ex.passthrough?.bytesUp, 'GET / HTTP/1.1\r\nHost: upstream.test\r\n\r\n'.length);
    await stillServes(h, '/after-plain');
  });

  for (const name of ['bad_name', '*.example.com']) {
    it(`passes SNI ${JSON.stringify(name)} through and mints nothing`, async (t) => {
      const h = await harness(t);
      const stats = ours.certs.stats();
      const res = await rawTls(h.port, ours.ca.certPem, name, 'GET / HTTP/1.1\r\n\r\n');
      assert.equal(res.secure, false, 'the client met the real upstream certificate, which our CA did not sign');
      const now = ours.certs.stats();
      assert.equal(now.mints, stats.mints);
      assert.equal(now.size, stats.size);
      const ex = await onlyExchange(h);
      assert.equal(ex.kind, 'passthrough');
      assert.equal(ex.passthrough?.reason, 'sni-rejected');
      assert.equal(ex.tls.sni, name, 'the name as sent, for display');
      await stillServes(h, '/after-bad-sni');
    });
  }

  const malformed = [
    { name: 'a garbage request line', payload: 'GARBAGE\r\n\r\n' },
    { name: 'Content-Length with Transfer-Encoding', payload: 'POST /bad-cl-te HTTP/1.1\r\nHost: upstream.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' },
    { name: 'an invalid chunk size', payload: 'POST /bad-chunk HTTP/1.1\r\nHost: upstream.test\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n' },
    { name: 'an oversized header block', payload: `GET /bad-big HTTP/1.1\r\nHost: upstream.test\r\nX-Big: ${'a'.repeat(70_000)}\r\n\r\n`, status: '431' },
  ];
  for (const m of malformed) {
    it(`answers ${m.status ?? '400'} to ${m.name} and relays nothing`, async (t) => {
      const h = await harness(t);
      const seen = upstream.requests.length;
      const res = await rawTls(h.port, ours.ca.certPem, UPSTREAM_NAME, m.payload);
      assert.equal(res.secure, true);
      assert.match(res.received, new RegExp(`^HTTP/1\\.1 ${m.status ?? '400'} `));
      assert.match(res.received, /\r\n\r\ntproxy: invalid HTTP request \(HPE_[A-Z_]+\)\n$/);
      // Every exchange the bad request may have opened is over before the probe below is sent.
      await h.events.waitFor(() => (h.events.startedIds().every((id) => h.store.get(id)?.finished) ? true : undefined), 'exchanges to settle');
      await stillServes(h, '/after-malformed');
      assert.deepEqual(upstream.requests.slice(seen).map((r) => r.url), ['/after-malformed'], 'only the probe reached the upstream');
    });
  }

  it('records an invalid chunk size as a client protocol error', async (t) => {
    const h = await harness(t);
    await rawTls(h.port, ours.ca.certPem, UPSTREAM_NAME, malformed[2]!.payload);
    const ex = await onlyExchange(h);
    assert.equal(ex.state, 'error');
    assert.equal(ex.error?.kind, 'client-protocol');
  });

  it('relays a client without SNI opaquely: it talks TLS with the real upstream', async (t) => {
    const h = await harness(t);
    // Trusting the upstream's own CA: only the real certificate (IP SAN 127.0.0.1) passes.
    const res = await fetchVia(h.port, pki.caPem, { path: '/no-sni', servername: '' });
    assert.equal(res.status, 200);
    assert.equal(res.body.toString(), 'ok /no-sni');
    assert.equal(res.peerCertificate.issuer.CN, 'tproxy engine test upstream CA');
    const ex = await onlyExchange(h);
    assert.equal(ex.kind, 'passthrough');
    assert.equal(ex.passthrough?.reason, 'no-sni');
    assert.equal(ex.request.method, 'TLS');
    assert.equal(ex.tls.sni, undefined);
    assert.equal(ex.state, 'complete');
    assert.ok((ex.passthrough?.bytesUp ?? 0) > 100 && (ex.passthrough?.bytesDown ?? 0) > 500, JSON.stringify(ex.passthrough));
    assert.ok(ex.timing.end !== undefined);
    await stillServes(h, '/after-no-sni');
  });

  it('survives all of the above on one engine', async (t) => {
    const h = await harness(t);
    await rawTcp(h.port, Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff, 0x00]));
    await rawTls(h.port, ours.ca.certPem, 'bad_name', 'x');
    for (const m of malformed) await rawTls(h.port, ours.ca.certPem, UPSTREAM_NAME, m.payload);
    await stillServes(h, '/after-everything');
    assert.equal(escaped.length, 0);
  });
});

describe('Engine: ALPN learnt from the upstream first', () => {
  /** An upstream speaking HTTP/1.1 with the given ALPN list (none: no ALPN extension at all). */
  async function h1Upstream(t: TestContext, alpn: string[] | undefined): Promise<number> {
    const httpServer = http.createServer((req, res) => res.end(`h1 ${req.url}`));
    const sockets = new Set<tls.TLSSocket>();
    const server = tls.createServer({ key: pki.keyPem, cert: pki.good, ...(alpn ? { ALPNProtocols: alpn } : {}) }, (s) => {
      sockets.add(s);
      httpServer.emit('connection', s);
    });
    const port = await listenLoopback(server);
    t.after(async () => {
      for (const s of sockets) s.destroy();
      await closeServer(server);
    });
    return port;
  }

  /** What the engine hands an h2 server: recorded, then closed (H2Proxy itself is tested in h2-proxy.test.ts). */
  type H2Call = { clientAlpn: string | false | null; warmAlpn: string | false | null | undefined; sni: string | undefined };
  function recordingH2(): H2Server & { calls: H2Call[]; called: Promise<void> } {
    const calls: H2Call[] = [];
    let signal: () => void = () => {};
    const called = new Promise<void>((resolve) => (signal = resolve));
    return {
      calls,
      called,
      serve(socket, info, warm) {
        calls.push({ clientAlpn: socket.alpnProtocol, warmAlpn: warm?.alpnProtocol, sni: info.tls.sni });
        signal();
        warm?.destroy();
        socket.destroy();
      },
    };
  }

  function negotiated(port: number, alpn: string[]): Promise<string | false> {
    return within(
      new Promise((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', port, servername: UPSTREAM_NAME, ca: ours.ca.certPem, ALPNProtocols: alpn }, () => {
          resolve(s.alpnProtocol ?? false);
          // end(), not destroy(): our Finished may still be queued, and the server acts on it.
          s.end();
        });
        s.on('error', reject);
      }),
      'a client handshake',
    );
  }

  it('gives an h2-capable client http/1.1 when the upstream only speaks http/1.1, and reuses the warm socket', async (t) => {
    const port = await h1Upstream(t, ['http/1.1']);
    const h2 = recordingH2();
    const h = await harness(t, port, { engine: { h2 } });
    assert.equal(await negotiated(h.port, ['h2', 'http/1.1']), 'http/1.1');
    const res = await fetchVia(h.port, ours.ca.certPem, { path: '/h1' });
    assert.equal(res.body.toString(), 'h1 /h1');
    assert.equal(h2.calls.length, 0);
    const ex = await h.events.completed(h.events.startedIds()[0]!);
    assert.equal(ex.tls.alpn, 'http/1.1');
  });

  it('answers without ALPN when the upstream negotiates none, and the request still works', async (t) => {
    const port = await h1Upstream(t, undefined);
    const h = await harness(t, port, { engine: { h2: recordingH2() } });
    assert.equal(await negotiated(h.port, ['h2', 'http/1.1']), false);
    const res = await fetchVia(h.port, ours.ca.certPem, { path: '/none' });
    assert.equal(res.body.toString(), 'h1 /none');
  });

  it('hands an h2 client and the warm h2 upstream socket to the h2 server', async (t) => {
    const server = http2.createSecureServer({ key: pki.keyPem, cert: pki.good, allowHTTP1: true });
    // Raw TCP sockets, so connections still in their handshake or kept by the pool are covered too.
    const sockets = new Set<net.Socket>();
    server.on('connection', (sock: net.Socket) => {
      sockets.add(sock);
      sock.on('error', () => {}); // destroyed by the test at the end
    });
    const port = await listenLoopback(server);
    // http2's secure server has no closeAllConnections(): destroy what it accepted, then close.
    t.after(() => {
      for (const sock of sockets) sock.destroy();
      server.close();
    });
    const h2 = recordingH2();
    const connector = loopbackConnector(port);
    const h = await startEngine({ certs: ours.certs, connect: connector.connect, upstreamCaPem: pki.caPem, engine: { h2 } });
    t.after(() => h.close());
    assert.equal(await negotiated(h.port, ['h2', 'http/1.1']), 'h2');
    await within(h2.called, 'the h2 server to be called');
    assert.deepEqual(h2.calls, [{ clientAlpn: 'h2', warmAlpn: 'h2', sni: UPSTREAM_NAME }]);
    // Without an h2 server, h2 is offered to nobody: the same client gets http/1.1.
    const h1only = await harness(t, port);
    assert.equal(await negotiated(h1only.port, ['h2', 'http/1.1']), 'http/1.1');
  });

  it('mints the leaf for a new name while the upstream handshake is still in flight', async (t) => {
    const port = await h1Upstream(t, ['http/1.1']);
    // A relay in front of the upstream that holds the upstream's answer back until released: the
    // upstream handshake cannot finish before then, so a leaf minted earlier was minted meanwhile.
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => (release = resolve));
    let upstreamAnswered = false;
    const open = new Set<net.Socket>();
    const gate = net.createServer((c) => {
      const u = net.connect(port, '127.0.0.1');
      open.add(c).add(u);
      c.pipe(u);
      void released.then(() => {
        upstreamAnswered = true;
        u.pipe(c);
      });
      c.on('error', () => u.destroy());
      u.on('error', () => c.destroy());
    });
    const gatePort = await listenLoopback(gate);
    t.after(async () => {
      release();
      for (const sock of open) sock.destroy(); // the engine's pool keeps its upstream socket open
      await closeServer(gate);
    });
    const mintedBeforeAnswer: boolean[] = [];
    const h = await harness(t, gatePort, {
      engine: { certs: { contextFor: (name) => (mintedBeforeAnswer.push(!upstreamAnswered), ours.certs.get(name)) } },
    });
    const res = fetchVia(h.port, ours.ca.certPem, { path: '/overlap' });
    await within(
      (async () => {
        for (let i = 0; i < 200 && mintedBeforeAnswer.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
      })(),
      'the mint',
    );
    assert.deepEqual(mintedBeforeAnswer, [true], 'minted once, before the upstream answered our ClientHello');
    release();
    assert.equal((await res).body.toString(), 'h1 /overlap');
    assert.deepEqual(mintedBeforeAnswer, [true]);
  });

  it('remembers what it learnt: a second connection costs no extra upstream handshake', async (t) => {
    const port = await h1Upstream(t, ['http/1.1']);
    const h = await harness(t, port);
    const agent = keepAliveAgent(t);
    await fetchVia(h.port, ours.ca.certPem, { path: '/a', agent });
    await fetchVia(h.port, ours.ca.certPem, { path: '/b' });
    assert.equal(h.calls.length, 1, 'one upstream connection: the warm one, then pooled');
  });

  it('completes the client handshake and answers 502 when the upstream certificate is rejected', async (t) => {
    const sink = await startTlsSink({ key: pki.keyPem, cert: pki.selfSigned });
    t.after(() => sink.close());
    const h = await harness(t, sink.port);
    const res = await fetchVia(h.port, ours.ca.certPem, { path: '/bad' });
    assert.equal(res.status, 502);
    const ex = await onlyExchange(h);
    assert.equal(ex.error?.kind, 'upstream-tls');
  });

  it('refuses connections past maxConnectionsPerProcess', async (t) => {
    const h = await harness(t, upstream.port, { engine: { maxConnectionsPerProcess: 1, attribution: { lookup: async () => ({ pid: 4242, uid: 0 }) } } });
    const agent = keepAliveAgent(t);
    const first = await fetchVia(h.port, ours.ca.certPem, { path: '/keep', agent });
    assert.equal(first.status, 200);
    await assert.rejects(fetchVia(h.port, ours.ca.certPem, { path: '/second' }), 'the second connection of pid 4242 is closed');
    assert.equal(h.engine.counters().refusedOverLimit, 1);
    agent.destroy();
    for (let i = 0; i < 100 && h.engine.openConnections > 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(h.engine.openConnections, 0, 'the first connection closed');
    assert.equal((await fetchVia(h.port, ours.ca.certPem, { path: '/third' })).status, 200, 'the count went down when it closed');
  });
});
