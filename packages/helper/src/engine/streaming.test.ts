/**
 * Streamed responses through the engine, in process on loopback (no root): a response head the
 * upstream sends long before any body reaches the client at once; server-sent events arrive one by
 * one as written; the capture records them live, with `exchange.updated` throttled so a fast stream
 * cannot flood subscribers; a compressed body passes through untouched.
 *
 *   client ──TLS(our CA)──▶ Engine ─▶ HttpProxy ─▶ UpstreamPool ─▶ loopback upstream (/stream, /fast, /gz)
 */
import assert from 'node:assert/strict';
import type http from 'node:http';
import https from 'node:https';
import { performance } from 'node:perf_hooks';
import { after, before, describe, it, type TestContext } from 'node:test';
import { gzipSync } from 'node:zlib';
import { SSE_UPDATE_INTERVAL_MS } from '../capture/live-exchange.js';
import {
  UPSTREAM_NAME,
  createInterceptionPki,
  createUpstreamPki,
  fetchVia,
  loopbackConnector,
  startEngine,
  startUpstream,
  within,
  type EngineHarness,
  type InterceptionPki,
  type Upstream,
  type UpstreamPki,
} from './test-support.js';

let pki: UpstreamPki;
let ours: InterceptionPki;
let upstream: Upstream;
/** '/stream': the test releases each event by calling this. */
let writeEvent: ((text: string) => void) | undefined;
let endStream: (() => void) | undefined;
const GZ_TEXT = 'compressed on the wire, '.repeat(200);

function route(req: http.IncomingMessage, res: http.ServerResponse): void {
  const path = (req.url ?? '/').split('?')[0];
  if (path === '/stream') {
    // The head goes now; events only when the test says so.
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.flushHeaders();
    writeEvent = (text) => res.write(text);
    endStream = () => res.end();
    return;
  }
  if (path === '/fast') {
    // 2000 events written as fast as the socket takes them, in about 400 ms.
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
    let i = 0;
    const timer = setInterval(() => {
      for (let k = 0; k < 10 && i < 2000; k++, i++) res.write(`data: ${i}\n\n`);
      if (i >= 2000) {
        clearInterval(timer);
        res.end();
      }
    }, 2);
    res.on('close', () => clearInterval(timer));
    return;
  }
  if (path === '/gz') {
    const body = gzipSync(Buffer.from(GZ_TEXT));
    res.writeHead(200, { 'content-type': 'text/plain', 'content-encoding': 'gzip', 'content-length': body.length }).end(body);
    return;
  }
  res.writeHead(404).end();
}

before(async () => {
  [pki, ours] = await Promise.all([createUpstreamPki(), createInterceptionPki()]);
  upstream = await startUpstream({ key: pki.keyPem, cert: pki.good }, route);
});

after(async () => {
  await upstream?.close();
  await ours?.dispose();
});

async function harness(t: TestContext): Promise<EngineHarness> {
  const h = await startEngine({ certs: ours.certs, connect: loopbackConnector(upstream.port).connect, upstreamCaPem: pki.caPem, bodyCaptureLimit: 64 * 1024 });
  t.after(() => h.close());
  return h;
}

/** A GET whose response head and body chunks are handed over as they arrive. */
function stream(port: number, path: string, t: TestContext): Promise<http.IncomingMessage> {
  return within(
    new Promise((resolve, reject) => {
      const req = https.request({ host: '127.0.0.1', port, path, servername: UPSTREAM_NAME, ca: ours.ca.certPem, agent: false, headers: { host: UPSTREAM_NAME } });
      req.once('error', reject);
      req.once('response', resolve);
      req.end();
      t.after(() => req.destroy());
    }),
    `the response head of ${path}`,
  );
}

function nextChunk(res: http.IncomingMessage): Promise<string> {
  return within(new Promise((resolve) => res.once('data', (c: Buffer) => resolve(c.toString('utf8')))), 'the next body chunk');
}

describe('streamed responses', () => {
  it('relays a head sent without a body at once, then each event as written, captured live with offsets', async (t) => {
    const h = await harness(t);
    writeEvent = undefined;
    const res = await stream(h.port, '/stream', t); // resolves only if the head was flushed
    assert.equal(res.headers['content-type'], 'text/event-stream');
    await within(
      (async () => {
        while (!writeEvent) await new Promise((r) => setTimeout(r, 5));
      })(),
      'the upstream stream',
    );
    const id = h.events.entries[0]!.exchange.id;
    for (let i = 0; i < 3; i++) {
      const chunk = nextChunk(res);
      const sentAt = performance.now();
      writeEvent!(`event: step\nid: ${i}\ndata: event ${i}\n\n`);
      assert.equal(await chunk, `event: step\nid: ${i}\ndata: event ${i}\n\n`);
      assert.ok(performance.now() - sentAt < 200, `event ${i} took ${performance.now() - sentAt} ms`);
      // The capture announces it while the stream is open.
      const update = await h.events.waitFor(
        () => h.events.entries.find((e) => e.exchange.id === id && e.event === 'updated' && e.exchange.response?.sse?.count === i + 1),
        `an update carrying event ${i}`,
      );
      assert.equal(update.exchange.state, 'in-flight');
      // The snapshot counts the chunk that completed the event as captured already.
      assert.equal(update.exchange.response?.body.truncated, false);
      assert.equal(update.exchange.response?.body.captured, update.exchange.response?.body.size);
      assert.deepEqual(update.exchange.response?.sse?.events.at(-1), { seq: i, t: update.exchange.response!.sse!.events.at(-1)!.t, event: 'step', id: String(i), data: `event ${i}` });
      await new Promise((r) => setTimeout(r, SSE_UPDATE_INTERVAL_MS + 20)); // next event gets its own update
    }
    const ended = new Promise((r) => res.once('end', r));
    res.resume();
    endStream!();
    await within(ended, 'the end of the stream');
    const done = await h.events.completed(id);
    assert.equal(done.response?.sse?.count, 3);
    const events = h.store.get(id)!.sseEvents()!;
    assert.deepEqual(
      events.map((e) => e.data),
      ['event 0', 'event 1', 'event 2'],
    );
    assert.ok(events[0]!.t >= done.timing.firstByte! && events[1]!.t > events[0]!.t && events[2]!.t > events[1]!.t);
  });

  it('throttles exchange.updated for a fast stream, and still records every event', async (t) => {
    const h = await harness(t);
    const res = await stream(h.port, '/fast', t);
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    await within(new Promise((r) => res.once('end', r)), 'the fast stream to end');
    assert.equal(Buffer.concat(chunks).toString().split('\n\n').length - 1, 2000);
    const id = h.events.entries[0]!.exchange.id;
    const done = await h.events.completed(id);
    assert.equal(done.response?.sse?.count, 2000);
    assert.equal(done.response?.sse?.captured, 1000, 'kept up to the event cap');
    assert.equal(done.response?.sse?.truncated, true);
    const updates = h.events.entries.filter((e) => e.exchange.id === id && e.event === 'updated' && e.exchange.response?.sse);
    const duration = done.timing.end! - done.timing.firstByte!;
    // One leading update plus at most one per interval (and a little slack for timer jitter).
    const bound = Math.ceil(duration / SSE_UPDATE_INTERVAL_MS) + 2;
    assert.ok(updates.length >= 1 && updates.length <= bound, `${updates.length} updates in ${duration} ms (bound ${bound})`);
    assert.equal(h.events.eventsFor(id).at(-1), 'completed');
  });

  it('passes a gzip body through byte for byte and records no SSE for it', async (t) => {
    const h = await harness(t);
    const r = await fetchVia(h.port, ours.ca.certPem, { path: '/gz' });
    assert.deepEqual(r.body, gzipSync(Buffer.from(GZ_TEXT)));
    assert.equal(r.headers['content-encoding'], 'gzip');
    const id = h.events.entries[0]!.exchange.id;
    const done = await h.events.completed(id);
    assert.equal(done.response?.sse, undefined);
    assert.deepEqual(h.store.get(id)!.responseBody.bytes(), r.body);
  });
});
