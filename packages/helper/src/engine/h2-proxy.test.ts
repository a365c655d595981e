/**
 * The HTTP/2 relay in process, on loopback only: an h2 client trusting our CA talks to a TLS
 * listener that negotiates h2 with our minted leaf and hands the socket to H2Proxy.serve (as the
 * engine does once ALPN says h2); the proxy relays each stream over a pooled, verified h2 session
 * to a real http2 upstream signed by a separate test CA.
 *
 *   h2 client ──TLS h2 (our CA)──▶ front 127.0.0.1:<p> ─▶ H2Proxy ─▶ H2SessionPool (test CA, ALPN h2)
 *                                                                      ▼ loopback connector
 *                                                    http2 upstream 127.0.0.1:<q> (h2 only)
 *
 * Each test checks the wire on both sides and what the capture recorded, one exchange per stream.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http2 from 'node:http2';
import { after, afterEach, before, describe, it } from 'node:test';
import type { Exchange } from '@tproxy/protocol';
import { resetStream } from './h2-proxy.js';
import { collect, connectH2, h2Request, startH2Proxy, startH2Upstream, type H2Harness, type H2StreamHandler, type H2Upstream } from './h2-test-support.js';
import tls from 'node:tls';
import { silentLogger } from '../log.js';
import type { H2Server } from './engine.js';
import { H2Proxy } from './h2-proxy.js';
import { TEST_H2_LIMITS } from './h2-test-support.js';
import { UPSTREAM_NAME, closedPort, createInterceptionPki, createUpstreamPki, loopbackConnector, startEngine, startUpstream, within, type InterceptionPki, type UpstreamPki } from './test-support.js';

const { NGHTTP2_CANCEL, NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_REFUSED_STREAM } = http2.constants;

const escaped: unknown[] = [];
const onEscape = (err: unknown) => escaped.push(err);
process.on('uncaughtException', onEscape);
process.on('unhandledRejection', onEscape);
afterEach(() => {
  assert.deepEqual(escaped.splice(0).map(String), [], 'an exception escaped the h2 relay');
});
after(() => {
  process.off('uncaughtException', onEscape);
  process.off('unhandledRejection', onEscape);
});

let upPki: UpstreamPki;
let ourPki: InterceptionPki;
before(async () => {
  upPki = await createUpstreamPki();
  ourPki = await createInterceptionPki();
});
after(async () => ourPki?.dispose());

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function world(handler: H2StreamHandler, opts: { bodyCaptureLimit?: number; limits?: Parameters<typeof startH2Proxy>[0]['limits'] } = {}): Promise<{ up: H2Upstream; proxy: H2Harness; client: http2.ClientHttp2Session }> {
  const up = await startH2Upstream({ key: upPki.keyPem, cert: upPki.good }, handler);
  cleanups.push(() => up.close());
  const proxy = await startH2Proxy({ certs: ourPki.certs, connect: loopbackConnector(up.port).connect, upstreamCaPem: upPki.caPem, ...opts });
  cleanups.push(() => proxy.close());
  const client = await connectH2(proxy.port, ourPki.ca.certPem);
  cleanups.push(() => void client.destroy());
  return { up, proxy, client };
}

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** The n-th (1-based) completed exchange. */
function completedAt(h: H2Harness, n: number): Promise<Exchange> {
  return h.events.waitFor(() => h.events.entries.filter((e) => e.event === 'completed')[n - 1]?.exchange, `${n} exchanges to complete`);
}

describe('H2Proxy', () => {
  it('relays 100 concurrent streams on one client connection over one upstream session, one exchange each', async () => {
    const { up, proxy, client } = await world((stream, headers) => {
      stream.respond({ ':status': 200, 'content-type': 'text/plain' });
      stream.end(`you asked for ${String(headers[':path'])}`);
    });
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => h2Request(client, { ':path': `/item/${i}` }, undefined, undefined, 15_000)));
    for (const [i, r] of results.entries()) {
      assert.equal(r.status, 200);
      assert.equal(r.body.toString(), `you asked for /item/${i}`);
    }
    const all = await proxy.events.waitFor(() => {
      const done = proxy.events.entries.filter((e) => e.event === 'completed').map((e) => e.exchange);
      return done.length === 100 ? done : undefined;
    }, '100 exchanges');
    assert.ok(all.every((e) => e.state === 'complete' && e.request.httpVersion === '2' && e.response?.httpVersion === '2' && e.response.status === 200));
    const streamIds = new Set(all.map((e) => e.streamId));
    assert.equal(streamIds.size, 100, 'each exchange carries its own stream id');
    assert.ok([...streamIds].every((id) => typeof id === 'number' && id % 2 === 1), 'client stream ids are odd');
    assert.deepEqual(new Set(all.map((e) => e.request.url)), new Set(Array.from({ length: 100 }, (_, i) => `https://${UPSTREAM_NAME}:${proxy.port}/item/${i}`)));
    assert.equal(up.connections, 1, 'one upstream connection carried every stream');
    assert.equal(proxy.proxy.pool.created, 1);
  });

  it('serves h2 behind the real Engine: ALPN learnt from the upstream, the warm socket becomes the pooled session', async () => {
    const up = await startH2Upstream({ key: upPki.keyPem, cert: upPki.good }, (stream, headers) => {
      stream.respond({ ':status': 200 });
      stream.end(`engine ${String(headers[':path'])}`);
    });
    cleanups.push(() => up.close());
    const { connect, calls } = loopbackConnector(up.port);
    // The engine takes its h2 server at construction; the proxy needs the harness's store.
    const ref: { proxy?: H2Proxy } = {};
    const h2: H2Server = { serve: (socket, info, warm) => ref.proxy!.serve(socket, info, warm) };
    const h = await startEngine({ certs: ourPki.certs, connect, upstreamCaPem: upPki.caPem, engine: { h2 } });
    const proxy = (ref.proxy = new H2Proxy({ store: h.store, bodyCaptureLimit: 1024, limits: TEST_H2_LIMITS, log: silentLogger, upstream: { connect, trust: tls.createSecureContext({ ca: upPki.caPem }) } }));
    cleanups.push(async () => (proxy.close(), await h.close()));
    for (let i = 0; i < 3; i++) {
      const client = await connectH2(h.port, ourPki.ca.certPem);
      const r = await h2Request(client, { ':path': `/e${i}` });
      assert.equal(r.status, 200);
      assert.equal(r.body.toString(), `engine /e${i}`);
      client.close();
    }
    const ex = await h.events.completed(1);
    assert.equal(ex.tls.alpn, 'h2');
    assert.equal(ex.request.httpVersion, '2');
    assert.equal(ex.streamId, 1);
    assert.equal(proxy.pool.created, 1);
    // The first connection's ALPN probe became the pooled session; later ones use the learnt choice and it.
    assert.equal(up.connections, calls.length);
    assert.equal(up.connections, 1, "three client connections, one upstream handshake");
  });

  it('reuses the pooled upstream session across client connections', async () => {
    const { up, proxy, client } = await world((stream) => {
      stream.respond({ ':status': 204 });
      stream.end();
    });
    await h2Request(client, { ':path': '/a' });
    for (let i = 0; i < 5; i++) {
      const c = await connectH2(proxy.port, ourPki.ca.certPem);
      const r = await h2Request(c, { ':path': `/b${i}` });
      assert.equal(r.status, 204);
      c.close();
    }
    assert.equal(up.connections, 1, 'six client connections, one upstream handshake');
    assert.equal(proxy.dials(), 1);
  });

  it('streams large bodies both ways under flow control, with a slow reader on each side', async (t) => {
    const DOWN = 32 * 1024 * 1024;
    const UP = 16 * 1024 * 1024;
    let written = 0;
    /** Bytes the client had written out (with backpressure) when the upstream started reading. */
    let sentBytes = 0;
    let sentBeforeUpstreamRead = -1;
    let upstreamReceived: Buffer[] = [];
    let resolveUpload!: () => void;
    const uploadDone = new Promise<void>((r) => (resolveUpload = r));
    const chunk = randomBytes(64 * 1024);
    const { proxy, client } = await world((stream, headers) => {
      if (headers[':path'] === '/upload') {
        // Slow reader: nothing is read for 500 ms; the client must be held back meanwhile.
        upstreamReceived = [];
        setTimeout(() => {
          sentBeforeUpstreamRead = sentBytes;
          stream.on('data', (c: Buffer) => upstreamReceived.push(c));
          stream.on('end', () => {
            stream.respond({ ':status': 200 });
            stream.end(sha(Buffer.concat(upstreamReceived)));
            resolveUpload();
          });
        }, 500);
        return;
      }
      stream.respond({ ':status': 200, 'content-type': 'application/octet-stream' });
      const pump = () => {
        while (written < DOWN) {
          written += chunk.length;
          if (!stream.write(chunk)) return void stream.once('drain', pump);
        }
        stream.end();
      };
      pump();
    });

    // Download: the client does not read for 500 ms; the upstream must stall far below 32 MiB.
    const req = client.request({ ':path': '/download' });
    req.pause();
    await new Promise((r) => setTimeout(r, 500));
    const stalledAt = written;
    assert.ok(stalledAt < 8 * 1024 * 1024, `upstream pushed ${stalledAt} bytes into a reader that read nothing`);
    const received = collect(req);
    req.resume();
    const down = await within(received, 'the 32 MiB download', 60_000);
    assert.equal(down.body.length, DOWN);
    assert.equal(sha(down.body), sha(Buffer.concat(Array.from({ length: DOWN / chunk.length }, () => chunk))));

    // Upload: 16 MiB with backpressure into an upstream that reads nothing for 500 ms.
    const upReq = client.request({ ':method': 'POST', ':path': '/upload' });
    const answer = collect(upReq);
    const sent: Buffer[] = [];
    await within(
      new Promise<void>((resolve) => {
        const pump = () => {
          while (sentBytes < UP) {
            const c = randomBytes(64 * 1024);
            sent.push(c);
            sentBytes += c.length;
            if (!upReq.write(c)) return void upReq.once('drain', pump);
          }
          upReq.end();
          resolve();
        };
        pump();
      }),
      'the 16 MiB upload to be written',
      60_000,
    );
    await within(uploadDone, 'the upstream to read the upload', 60_000);
    const up = await answer;
    assert.equal(up.body.toString(), sha(Buffer.concat(sent)));
    assert.ok(sentBeforeUpstreamRead > 0 && sentBeforeUpstreamRead < 8 * 1024 * 1024, `client got ${sentBeforeUpstreamRead} bytes out before the upstream read`);
    t.diagnostic(`held back: upstream pushed ${stalledAt} bytes into a client not reading; client wrote ${sentBeforeUpstreamRead} bytes before the upstream read`);

    const downEx = await completedAt(proxy, 1);
    const upEx = await completedAt(proxy, 2);
    assert.equal(downEx.response?.body.size, DOWN);
    assert.equal(downEx.response?.body.truncated, true);
    assert.equal(upEx.request.body.size, UP);
    assert.equal(upEx.state, 'complete');
  });

  it('carries request and response trailers, and keeps a trailers-only response one HEADERS frame', async () => {
    let seenTrailers: string[] | undefined;
    const { proxy, client } = await world((stream, headers) => {
      if (headers[':path'] === '/only') {
        // gRPC's error form: status and grpc-status in one HEADERS frame with END_STREAM.
        stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '5', 'grpc-message': 'not found' }, { endStream: true });
        return;
      }
      stream.on('trailers', (_h: unknown, _f: number, raw: string[]) => (seenTrailers = raw));
      stream.resume();
      stream.on('end', () => {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': 'ok' }));
        stream.end(Buffer.from([0, 0, 0, 0, 1, 0x2a]));
      });
    });
    const r = await h2Request(client, { ':method': 'POST', ':path': '/svc/Method', 'content-type': 'application/grpc', te: 'trailers' }, Buffer.from([0, 0, 0, 0, 0]), { 'x-request-checksum': 'abc' });
    assert.equal(r.status, 200);
    assert.deepEqual(r.trailers, ['grpc-status', '0', 'grpc-message', 'ok']);
    assert.deepEqual(seenTrailers, ['x-request-checksum', 'abc']);
    const ex = await completedAt(proxy, 1);
    assert.deepEqual(ex.request.trailers, [['x-request-checksum', 'abc']]);
    assert.deepEqual(ex.response?.trailers, [['grpc-status', '0'], ['grpc-message', 'ok']]);
    assert.ok(ex.request.headers.some(([k, v]) => k === 'te' && v === 'trailers'), 'te: trailers reached the capture (and the upstream)');

    const only = await h2Request(client, { ':method': 'POST', ':path': '/only', 'content-type': 'application/grpc', te: 'trailers' }, Buffer.alloc(5));
    assert.equal(only.status, 200);
    assert.equal(only.headers['grpc-status'], '5');
    assert.equal(only.trailers, undefined);
    const onlyEx = await completedAt(proxy, 2);
    assert.equal(onlyEx.state, 'complete');
    assert.ok(onlyEx.response?.headers.some(([k, v]) => k === 'grpc-status' && v === '5'));
  });

  it('passes RST_STREAM on in both directions with its code', async () => {
    let upstreamSaw: number | undefined;
    let upstreamClosed!: () => void;
    const closed = new Promise<void>((r) => (upstreamClosed = r));
    const { proxy, client } = await world((stream, headers) => {
      if (headers[':path'] === '/calm') {
        stream.respond({ ':status': 200 });
        stream.write('partial');
        setTimeout(() => resetStream(stream, NGHTTP2_ENHANCE_YOUR_CALM), 50);
        return;
      }
      if (headers[':path'] === '/refuse') return void stream.close(NGHTTP2_REFUSED_STREAM);
      stream.respond({ ':status': 200 });
      stream.write('first');
      stream.on('close', () => {
        upstreamSaw = stream.rstCode;
        upstreamClosed();
      });
    });

    // Upstream → client, after the head.
    const calm = await h2Request(client, { ':path': '/calm' });
    assert.equal(calm.status, 200);
    assert.equal(calm.rstCode, NGHTTP2_ENHANCE_YOUR_CALM);
    const calmEx = await completedAt(proxy, 1);
    assert.equal(calmEx.state, 'error');
    assert.equal(calmEx.error?.kind, 'upstream-aborted');
    assert.equal(calmEx.error?.code, 'ENHANCE_YOUR_CALM');

    // Upstream → client, before any head: the client gets the same code, not a 502.
    const refused = await h2Request(client, { ':path': '/refuse' });
    assert.equal(refused.status, 0);
    assert.equal(refused.rstCode, NGHTTP2_REFUSED_STREAM);
    const refusedEx = await completedAt(proxy, 2);
    assert.equal(refusedEx.error?.code, 'REFUSED_STREAM');

    // Client → upstream.
    const req = client.request({ ':path': '/cancel-me' });
    req.on('error', () => {});
    await within(new Promise((r) => req.once('data', r)), 'the first bytes');
    resetStream(req, NGHTTP2_CANCEL);
    await within(closed, 'the upstream stream to close');
    assert.equal(upstreamSaw, NGHTTP2_CANCEL);
    const cancelEx = await completedAt(proxy, 3);
    assert.equal(cancelEx.error?.kind, 'client-aborted');
    assert.equal(cancelEx.error?.code, 'CANCEL');
  });

  it('drops an upstream session that sent GOAWAY: in-flight streams finish, new ones get a new session', async () => {
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const { up, proxy, client } = await world((stream, headers) => {
      if (headers[':path'] === '/slow') {
        stream.respond({ ':status': 200 });
        stream.write('started;');
        void released.then(() => stream.end('finished'));
        return;
      }
      stream.respond({ ':status': 200 });
      stream.end('fast');
    });
    const slowReq = client.request({ ':path': '/slow' });
    const slow = collect(slowReq);
    await within(new Promise((r) => slowReq.once('data', r)), 'the slow stream to start');
    assert.equal(up.sessions.size, 1);
    // Graceful GOAWAY naming the in-flight stream as the last one processed.
    const [upSession] = [...up.sessions];
    upSession!.goaway(0, 1);
    await within(
      new Promise<void>((resolve) => {
        const check = () => (proxy.proxy.pool.created === 1 && proxy.events.entries.length > 0 ? resolve() : setTimeout(check, 10));
        check();
      }),
      'the GOAWAY to arrive',
    );
    await new Promise((r) => setTimeout(r, 50));
    const fast = await h2Request(client, { ':path': '/fast' });
    assert.equal(fast.body.toString(), 'fast');
    assert.equal(proxy.proxy.pool.created, 2, 'the stream after GOAWAY went to a new upstream session');
    assert.equal(up.connections, 2);
    release();
    const s = await within(slow, 'the in-flight stream');
    assert.equal(s.body.toString(), 'started;finished');
    assert.equal(s.rstCode, 0);
  });

  it('records a response as complete when the client closes its connection once it has Content-Length bytes (curl does)', async () => {
    const { proxy, client } = await world((stream, headers) => {
      stream.respond({ ':status': 200, ...(headers[':path'] === '/cl' ? { 'content-length': '5' } : {}) });
      stream.write('hello');
      // END_STREAM comes late: the client has every declared byte before it.
      setTimeout(() => stream.end(), 300);
    });
    const req = client.request({ ':path': '/cl' });
    req.on('error', () => {});
    await within(new Promise((resolve) => req.on('data', resolve)), 'the body');
    client.destroy();
    const ex = await completedAt(proxy, 1);
    assert.equal(ex.state, 'complete', JSON.stringify(ex.error));
    assert.equal(ex.response?.body.size, 5);

    // Without the declared length, the same early close is an abort.
    const c2 = await connectH2(proxy.port, ourPki.ca.certPem);
    const short = c2.request({ ':path': '/no-length' });
    short.on('error', () => {});
    await within(new Promise((resolve) => short.on('data', resolve)), 'the body');
    c2.destroy();
    const aborted = await completedAt(proxy, 2);
    assert.equal(aborted.state, 'error');
    assert.equal(aborted.error?.kind, 'client-aborted');
  });

  it('handles the client going away with GOAWAY: open streams finish, the session closes', async () => {
    const { proxy, client } = await world((stream) => {
      stream.respond({ ':status': 200 });
      setTimeout(() => stream.end('late'), 100);
    });
    const req = client.request({ ':path': '/x' });
    const r = collect(req);
    // Once the stream is open on the wire: a session closed before that refuses it locally.
    await within(new Promise((res) => req.once('response', res)), 'the response head');
    client.close(); // GOAWAY(NO_ERROR) after the open stream
    const res = await within(r, 'the open stream');
    assert.equal(res.body.toString(), 'late');
    await within(
      new Promise<void>((resolve) => {
        const check = () => (proxy.proxy.openSessions === 0 ? resolve() : setTimeout(check, 10));
        check();
      }),
      'the client session to close',
    );
    assert.equal((await completedAt(proxy, 1)).state, 'complete');
  });

  it('forwards pseudo-headers and fields correctly, keeps repeated fields apart, drops connection-specific ones', async () => {
    let seen: string[] = [];
    const { proxy, client } = await world((stream, _h, raw) => {
      seen = raw;
      stream.respond({ ':status': 201, 'set-cookie': ['a=1', 'b=2'], 'x-upstream': 'Mixed Case Value' });
      stream.end();
    });
    const r = await h2Request(client, { ':method': 'PUT', ':path': '/p?q=1&r=%20', 'x-custom': 'V', accept: ['a/b', 'c/d'], authorization: 'Bearer s3cr3t-token-value' }, 'x');
    assert.equal(r.status, 201);
    assert.deepEqual(r.headers['set-cookie'], ['a=1', 'b=2']);
    assert.equal(r.headers['x-upstream'], 'Mixed Case Value');
    const pseudo = Object.fromEntries(seen.flatMap((v, i) => (i % 2 === 0 && v.startsWith(':') ? [[v, seen[i + 1]]] : [])));
    assert.deepEqual(pseudo, { ':method': 'PUT', ':scheme': 'https', ':path': '/p?q=1&r=%20', ':authority': `${UPSTREAM_NAME}:${proxy.port}` });
    assert.equal(seen.indexOf(':method') < seen.indexOf('x-custom'), true, 'pseudo-headers come first');
    assert.deepEqual(seen.filter((_, i) => i % 2 === 0 && seen[i] === 'accept').length, 2, 'repeated fields stay separate');
    const ex = await completedAt(proxy, 1);
    assert.equal(ex.request.method, 'PUT');
    assert.equal(ex.request.url, `https://${UPSTREAM_NAME}:${proxy.port}/p?q=1&r=%20`);
    assert.ok(ex.request.headers.every(([k]) => !k.startsWith(':')), 'pseudo-headers are not listed as fields');
    const auth = ex.request.headers.find(([k]) => k === 'authorization');
    assert.ok(auth && !auth[1].includes('s3cr3t-token-value'), 'secrets are masked in the capture');
    assert.equal(ex.response?.status, 201);
    assert.deepEqual(ex.response?.headers.filter(([k]) => k === 'set-cookie').length, 2);
  });

  it('answers 502 with the reason when the upstream is down or does not speak h2, and records it', async () => {
    const store = await startH2Proxy({ certs: ourPki.certs, connect: loopbackConnector(await closedPort()).connect, upstreamCaPem: upPki.caPem });
    cleanups.push(() => store.close());
    const c = await connectH2(store.port, ourPki.ca.certPem);
    cleanups.push(() => void c.destroy());
    const down = await h2Request(c, { ':path': '/' });
    assert.equal(down.status, 502);
    assert.match(down.body.toString(), /connection refused/);
    const ex = await completedAt(store, 1);
    assert.equal(ex.error?.kind, 'upstream-connect');
    assert.equal(ex.response?.status, 502);

    const h1 = await startUpstream({ key: upPki.keyPem, cert: upPki.good }, (_req, res) => res.end('h1'));
    cleanups.push(() => h1.close());
    const viaH1 = await startH2Proxy({ certs: ourPki.certs, connect: loopbackConnector(h1.port).connect, upstreamCaPem: upPki.caPem });
    cleanups.push(() => viaH1.close());
    const c2 = await connectH2(viaH1.port, ourPki.ca.certPem);
    cleanups.push(() => void c2.destroy());
    const notH2 = await h2Request(c2, { ':path': '/' });
    assert.equal(notH2.status, 502);
    assert.match(notH2.body.toString(), /did not agree to HTTP\/2 \(TLS alert no_application_protocol\)/);
    assert.equal((await completedAt(viaH1, 1)).error?.kind, 'upstream-protocol');
  });

  it('refuses a header list over maxHeaderBytes with 431 without hurting the session', async () => {
    const { up, proxy, client } = await world((stream) => {
      stream.respond({ ':status': 200 });
      stream.end('ok');
    }, { limits: { maxHeaderBytes: 4096 } });
    const big = await h2Request(client, { ':path': '/big', 'x-big': 'a'.repeat(8192) });
    assert.equal(big.status, 431);
    assert.match(big.body.toString(), /limits\.maxHeaderBytes/);
    const bigEx = await completedAt(proxy, 1);
    assert.equal(bigEx.error?.kind, 'client-protocol');
    assert.equal(up.connections, 0, 'the oversized head never reached the upstream');
    const ok = await h2Request(client, { ':path': '/small' });
    assert.equal(ok.status, 200);
    assert.equal(ok.body.toString(), 'ok');
  });
});
