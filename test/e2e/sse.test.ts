/**
 * Streamed responses and decoded bodies, end to end: a real curl in the client namespace reads a
 * server-sent event stream from the upstream namespace through the real helper, and each event must
 * reach it before the upstream writes the next (no buffering anywhere on the way), while a
 * subscriber sees the events in `exchange.updated` notifications as the stream runs. Then gzip, br
 * and zstd responses: curl (without --compressed) gets the wire bytes untouched, `exchanges.get`
 * returns the decoded text, and `tproxyctl get` prints it.
 *
 *   client ns: curl -N ──▶ nft/TPROXY ──▶ helper ──(TLS verified)──▶ upstream ns: /sse, /gzip, /br, /zstd
 *              subscriber (test process) ◀── exchange.started / updated / completed ── helper socket
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { TproxyClient, methods, type Exchange } from '@tproxy/client';
import { curlInNs } from './lib/curl.js';
import { startHelper, tproxyctl, type HelperHandle } from './lib/helper.js';
import { e2ePreflight } from './lib/preflight.js';
import type { Topology } from './lib/topology.js';
import { CODED_BODY_TEXT, type SseTestEvent } from './lib/upstream-app.js';
import { waitForExchange } from './lib/checks.js';
import { world } from './lib/world.js';

const skip = await e2ePreflight(['curl', 'systemd-socket-activate', 'update-ca-certificates']);

const GOOD = ['--resolve', 'upstream.test:443:198.18.0.2'];
const EVENTS = 5;
const INTERVAL_MS = 200;
/** How late an event may reach curl after the upstream wrote it (two TLS legs, a relay, a pipe). */
const MAX_LATENCY_MS = 100;

const now = () => performance.timeOrigin + performance.now();

describe('streamed responses and decoded bodies through the helper', { skip: skip ?? false, timeout: 300_000 }, () => {
  const w = world();
  let topo: Topology;
  let helper: HelperHandle;

  before(async () => {
    topo = w.topo;
    helper = await startHelper(topo, w.dir, 'helper', w.certs.caCert);
    const status = await helper.client.call(methods.captureStart, {});
    assert.equal(status.running, true);
  });

  after(async () => {
    await helper?.client.close().catch(() => undefined);
  });

  it('relays each SSE event at once, announces events while the stream is open, and keeps them all with increasing offsets', async () => {
    const path = `/sse?n=${EVENTS}&interval=${INTERVAL_MS}`;
    const url = `https://upstream.test${path}`;
    // A second connection subscribes, as a dashboard would.
    const sub = await TproxyClient.connect({ socketPath: helper.socketPath, timeoutMs: 30_000 });
    const updates: { at: number; exchange: Exchange }[] = [];
    let streamEndedAt = Infinity;
    try {
      await sub.call(methods.exchangesSubscribe, {});
      sub.onExchange((event, exchange) => {
        if (exchange.request.url === url && event === 'updated') updates.push({ at: now(), exchange });
      });

      const received: { at: number; ev: SseTestEvent }[] = [];
      let text = '';
      const r = await curlInNs(topo.clientNs, ['--fail', '--http1.1', '-N', ...GOOD, url], {
        timeoutMs: 30_000,
        onStdout: (chunk) => {
          const at = now();
          text += chunk.toString('utf8');
          let end: number;
          while ((end = text.indexOf('\n\n')) !== -1) {
            const block = text.slice(0, end);
            text = text.slice(end + 2);
            const data = block.split('\n').find((l) => l.startsWith('data: '));
            if (data) received.push({ at, ev: JSON.parse(data.slice(6)) as SseTestEvent });
          }
        },
      });
      streamEndedAt = now();
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(
        received.map((x) => x.ev.i),
        Array.from({ length: EVENTS }, (_, i) => i),
      );
      const latencies = received.map((x) => Math.round((x.at - x.ev.sentAt) * 10) / 10);
      console.log(`# SSE event latency upstream write -> curl stdout (ms): ${latencies.join(', ')}`);
      received.forEach((x, i) => {
        assert.ok(x.at - x.ev.sentAt < MAX_LATENCY_MS, `event ${i} arrived ${latencies[i]} ms after it was written`);
        const next = received[i + 1];
        if (next) assert.ok(x.at < next.ev.sentAt, `event ${i} arrived only after event ${i + 1} was written: buffered`);
      });
    } finally {
      await sub.close().catch(() => undefined);
    }

    // Notifications while open: updates carrying events arrived before the stream ended, with the
    // count growing (at most one per 100 ms, so with 200 ms between events each gets its own).
    const open = updates.filter((u) => u.exchange.state === 'in-flight' && (u.exchange.response?.sse?.count ?? 0) > 0 && u.at < streamEndedAt);
    assert.ok(open.length >= EVENTS - 1, `only ${open.length} exchange.updated with events while the stream was open`);
    const counts = open.map((u) => u.exchange.response!.sse!.count);
    assert.deepEqual(counts, [...counts].sort((a, b) => a - b), 'event counts only grow');
    const first = open[0]!.exchange.response!.sse!.events[0]!;
    assert.equal(first.event, 'tick');
    assert.equal((JSON.parse(first.data) as SseTestEvent).i, 0);

    // The completed exchange: every event, in order, with increasing offsets after the response head.
    const done = await waitForExchange(helper.client, (e) => e.request.url === url);
    assert.equal(done.state, 'complete');
    const sse = done.response?.sse;
    assert.ok(sse, 'the summary has an sse section');
    assert.equal(sse.count, EVENTS);
    assert.equal(sse.captured, EVENTS);
    assert.equal(sse.truncated, false);
    const detail = await helper.client.call(methods.exchangesGet, { id: done.id });
    const events = detail.sseEvents ?? [];
    assert.deepEqual(
      events.map((e) => [e.seq, e.event, e.id, (JSON.parse(e.data) as SseTestEvent).i]),
      Array.from({ length: EVENTS }, (_, i) => [i, 'tick', String(i), i]),
    );
    const firstByte = done.timing.firstByte ?? 0;
    events.forEach((e, i) => {
      assert.ok(e.t >= firstByte, `event ${i} at ${e.t} ms, before the response head at ${firstByte} ms`);
      if (i > 0) assert.ok(e.t - events[i - 1]!.t > INTERVAL_MS / 2, `offsets ${events[i - 1]!.t} then ${e.t}: not ${INTERVAL_MS} ms apart`);
    });
    assert.ok(done.timing.end! >= events.at(-1)!.t);
  });

  for (const coding of ['gzip', 'br', 'zstd'] as const) {
    it(`passes a ${coding} body through byte for byte and decodes it for display (exchanges.get, tproxyctl get)`, async () => {
      const url = `https://upstream.test/${coding}`;
      const r = await curlInNs(topo.clientNs, ['--fail', '--http1.1', ...GOOD, '-w', '%{stderr}content-encoding=%header{content-encoding}\n', url]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, new RegExp(`content-encoding=${coding}`));
      assert.notEqual(r.stdout, CODED_BODY_TEXT, 'curl without --compressed must get the coded bytes');
      const ex = await waitForExchange(helper.client, (e) => e.request.url === url);
      const detail = await helper.client.call(methods.exchangesGet, { id: ex.id });
      // The wire bytes: what curl got is what the helper captured, untouched.
      const wire = Buffer.from(detail.responseBody, 'base64');
      assert.equal(r.sha256, createHash('sha256').update(wire).digest('hex'));
      if (coding === 'gzip') assert.deepEqual(wire, gzipSync(Buffer.from(CODED_BODY_TEXT)));
      if (coding === 'br') assert.deepEqual(wire, brotliCompressSync(Buffer.from(CODED_BODY_TEXT)));
      const decoded = detail.decodedResponseBody;
      assert.ok(decoded, 'exchanges.get returns the decoded body');
      assert.equal(decoded.encoding, coding);
      assert.equal(decoded.error, undefined);
      assert.equal(decoded.truncated, false);
      assert.equal(Buffer.from(decoded.base64, 'base64').toString('utf8'), CODED_BODY_TEXT);

      const got = await tproxyctl(helper.socketPath, ['get', String(ex.id)]);
      assert.equal(got.code, 0, got.stderr);
      assert.match(got.stdout, new RegExp(`decoded from ${coding}`));
      assert.ok(got.stdout.includes('coded body: tproxy decodes this. tproxy decodes this.'), got.stdout.slice(0, 2000));
    });
  }
});
