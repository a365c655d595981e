import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { ExchangeDetailSchema, ExchangeSchema, harEntry, harItemFromDetail, type Har, type Headers } from '@tproxy/protocol';
import { decodeBody } from './decode.js';
import { writeExport, type ExportSink } from './export.js';
import { LiveExchange } from './live-exchange.js';
import { ExchangeStore } from './store.js';

const creator = { name: 'tproxy-helper', version: '0.0.0-test' };

function live(i: number, body: Buffer | string = `body-${i}`, status = 200): LiveExchange {
  const ex = new LiveExchange({
    client: { address: '198.18.0.1', port: 40000 + i },
    server: { address: '198.18.0.2', port: 443 },
    tls: { sni: 'upstream.test' },
    method: i % 2 === 0 ? 'POST' : 'GET',
    url: `https://upstream.test/item/${i}?q=${i}`,
    httpVersion: '1.1',
    headers: [['Host', 'upstream.test']],
    bodyCaptureLimit: 1024 * 1024,
  });
  return Object.assign(ex, { _body: body, _status: status });
}

/** Stores `n` exchanges, each complete with a response body. */
function storeWith(n: number, body?: (i: number) => Buffer | string, status?: (i: number) => number): ExchangeStore {
  const store = new ExchangeStore({ maxCount: 100_000, maxBytes: 1e12 });
  for (let i = 1; i <= n; i++) {
    const ex = live(i);
    store.add(ex);
    if (i % 2 === 0) ex.requestBody.add(Buffer.from(`a=${i}`));
    ex.setResponse({ status: status?.(i) ?? 200, statusMessage: 'OK', httpVersion: '1.1', headers: [['Content-Type', 'text/plain']] });
    ex.responseBody.add(Buffer.from(body?.(i) ?? `body-${i}`));
    ex.complete();
    store.finish(ex);
  }
  return store;
}

/** Collects chunks; optionally slow (each write waits), like a reader that lags. */
function collector(delayMs = 0): ExportSink & { chunks: string[]; text(): string } {
  const chunks: string[] = [];
  return {
    chunks,
    text: () => chunks.join(''),
    async write(data) {
      chunks.push(data);
      if (delayMs) await sleep(delayMs);
    },
  };
}

describe('writeExport', () => {
  it('writes one valid HAR 1.2 document, oldest first, with bodies', async () => {
    const store = storeWith(5);
    const sink = collector();
    const totals = await writeExport(store, { format: 'har', includeBodies: true, creator }, sink);
    assert.equal(totals.count, 5);
    assert.equal(totals.chunks, sink.chunks.length);
    assert.equal(totals.bytes, Buffer.byteLength(sink.text()));
    const har = JSON.parse(sink.text()) as Har;
    assert.equal(har.log.version, '1.2');
    assert.deepEqual(har.log.creator, creator);
    assert.deepEqual(har.log.entries.map((e) => e._id), [1, 2, 3, 4, 5]);
    for (const e of har.log.entries) {
      // The spec's required members of an entry, request, response and content.
      for (const k of ['startedDateTime', 'time', 'request', 'response', 'cache', 'timings'] as const) assert.ok(k in e, k);
      for (const k of ['method', 'url', 'httpVersion', 'cookies', 'headers', 'queryString', 'headersSize', 'bodySize'] as const) assert.ok(k in e.request, k);
      for (const k of ['status', 'statusText', 'httpVersion', 'cookies', 'headers', 'content', 'redirectURL', 'headersSize', 'bodySize'] as const) assert.ok(k in e.response, k);
      assert.equal(typeof e.response.content.size, 'number');
      assert.equal(typeof e.response.content.mimeType, 'string');
      assert.ok(e.timings.send >= 0 && e.timings.wait >= 0 && e.timings.receive >= 0);
      assert.equal(e.response.content.text, `body-${e._id}`);
    }
    assert.equal(har.log.entries[1]!.request.postData?.text, 'a=2');

    const bare = collector();
    await writeExport(store, { format: 'har', includeBodies: false, creator }, bare);
    const e2 = (JSON.parse(bare.text()) as Har).log.entries[1]!;
    assert.equal(e2.response.content.text, undefined);
    assert.equal(e2.response.content.comment, 'bodies left out of this export (includeBodies: false)');
    assert.deepEqual(e2.request.postData, { mimeType: '', text: '', comment: 'bodies left out of this export (includeBodies: false)' });
  });

  it('HAR bodies are decoded from their Content-Encoding, the same entry the client builds from exchanges.get', async () => {
    const text = 'héllo, decoded world '.repeat(50);
    const wire = gzipSync(Buffer.from(text));
    const store = new ExchangeStore();
    const ex = new LiveExchange({
      client: { address: '198.18.0.1', port: 40001 },
      server: { address: '198.18.0.2', port: 443 },
      tls: { sni: 'upstream.test' },
      method: 'POST',
      url: 'https://upstream.test/upload',
      httpVersion: '1.1',
      headers: [['Host', 'upstream.test'], ['Content-Type', 'application/x-www-form-urlencoded'], ['Content-Encoding', 'gzip']],
      bodyCaptureLimit: 1024 * 1024,
    });
    store.add(ex);
    const sent = gzipSync(Buffer.from('a=1&b=2'));
    ex.requestBody.add(sent);
    const resHeaders: Headers = [['Content-Type', 'text/plain; charset=utf-8'], ['Content-Encoding', 'gzip']];
    ex.setResponse({ status: 200, statusMessage: 'OK', httpVersion: '1.1', headers: resHeaders });
    ex.responseBody.add(wire);
    ex.complete();
    store.finish(ex);

    const sink = collector();
    await writeExport(store, { format: 'har', includeBodies: true, creator }, sink);
    const entry = (JSON.parse(sink.text()) as Har).log.entries[0]!;
    assert.equal(entry.response.content.text, text, 'content.text is the decoded text, not gzip bytes');
    assert.equal(entry.response.content.encoding, undefined);
    assert.equal(entry.response.content.size, Buffer.byteLength(text), 'content.size is the decoded length');
    assert.equal(entry.response.bodySize, wire.length, 'bodySize stays the size on the wire');
    assert.equal(entry.response.content.compression, Buffer.byteLength(text) - wire.length);
    assert.match(entry.response.content.comment ?? '', /decoded by tproxy from Content-Encoding gzip/);
    assert.equal(entry.request.postData?.text, 'a=1&b=2', 'a gzip request body is decoded too');
    assert.equal(entry.request.bodySize, sent.length);

    // The client's path: exchanges.get (which decodes in the helper) → harItemFromDetail → harEntry.
    const snap = ex.snapshot();
    const res = snap.response!;
    const decodedRequestBody = await decodeBody(ex.requestBody.bytes(), snap.request.headers, snap.request.body.truncated);
    const decodedResponseBody = await decodeBody(ex.responseBody.bytes(), res.headers, res.body.truncated);
    assert.ok(decodedRequestBody && decodedResponseBody);
    const detail = ExchangeDetailSchema.parse({
      exchange: snap,
      requestBody: ex.requestBody.bytes().toString('base64'),
      responseBody: ex.responseBody.bytes().toString('base64'),
      decodedRequestBody,
      decodedResponseBody,
    });
    assert.deepEqual(entry, JSON.parse(JSON.stringify(harEntry(harItemFromDetail(detail)))), 'both HARs agree');

    // JSON Lines keeps the wire bytes: it is the lossless format.
    const jsonl = collector();
    await writeExport(store, { format: 'jsonl', includeBodies: true, creator }, jsonl);
    const record = ExchangeDetailSchema.parse(JSON.parse(jsonl.text()));
    assert.deepEqual(Buffer.from(record.responseBody, 'base64'), wire);
  });

  it('HAR falls back to the raw bytes when the declared encoding cannot be undone, without failing the export', async () => {
    const corrupt = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0xde, 0xad, 0x00, 0xbe, 0xef, 0xff, 0x00, 0x01]);
    const store = new ExchangeStore();
    const bodies: [Headers, Buffer][] = [
      [[['Content-Encoding', 'gzip']], corrupt],
      [[['Content-Encoding', 'compress']], Buffer.from('not really compressed')],
      [[['Content-Encoding', 'gzip']], gzipSync(Buffer.from('fine'))],
    ];
    for (const [i, [headers, body]] of bodies.entries()) {
      const ex = live(i + 1);
      store.add(ex);
      ex.setResponse({ status: 200, statusMessage: 'OK', httpVersion: '1.1', headers });
      ex.responseBody.add(body);
      ex.complete();
      store.finish(ex);
    }
    const sink = collector();
    const totals = await writeExport(store, { format: 'har', includeBodies: true, creator }, sink);
    assert.equal(totals.count, 3);
    const [bad, unknown, good] = (JSON.parse(sink.text()) as Har).log.entries;
    assert.equal(bad!.response.content.encoding, 'base64', 'binary wire bytes are base64, as har.ts does for binary');
    assert.deepEqual(Buffer.from(bad!.response.content.text!, 'base64'), corrupt);
    assert.equal(bad!.response.content.size, corrupt.length);
    assert.equal(bad!.response.content.compression, undefined);
    assert.equal(unknown!.response.content.text, 'not really compressed');
    assert.equal(unknown!.response.content.encoding, undefined);
    assert.equal(good!.response.content.text, 'fine', 'later exchanges are still decoded');
  });

  it('an empty buffer is still a valid HAR document; JSON Lines is then empty', async () => {
    const store = new ExchangeStore();
    const har = collector();
    assert.deepEqual(await writeExport(store, { format: 'har', includeBodies: true, creator }, har), { count: 0, bytes: Buffer.byteLength(har.text()), chunks: 1 });
    assert.deepEqual((JSON.parse(har.text()) as Har).log.entries, []);
    const jsonl = collector();
    assert.deepEqual(await writeExport(store, { format: 'jsonl', includeBodies: true, creator }, jsonl), { count: 0, bytes: 0, chunks: 0 });
  });

  it('JSON Lines: one exchanges.get-shaped record per line, bodies base64; without bodies only the exchange', async () => {
    const store = storeWith(3, (i) => (i === 2 ? Buffer.from([0, 1, 2, 255]) : `b${i}`));
    const sink = collector();
    await writeExport(store, { format: 'jsonl', includeBodies: true, creator }, sink);
    const lines = sink.text().split('\n');
    assert.equal(lines.pop(), '', 'ends with a newline');
    assert.equal(lines.length, 3);
    const records = lines.map((l) => ExchangeDetailSchema.parse(JSON.parse(l)));
    assert.deepEqual(Buffer.from(records[1]!.responseBody, 'base64'), Buffer.from([0, 1, 2, 255]));
    assert.equal(Buffer.from(records[1]!.requestBody, 'base64').toString(), 'a=2');
    const bare = collector();
    await writeExport(store, { format: 'jsonl', includeBodies: false, creator }, bare);
    for (const line of bare.text().trim().split('\n')) {
      const record = JSON.parse(line) as Record<string, unknown>;
      assert.deepEqual(Object.keys(record), ['exchange']);
      ExchangeSchema.parse(record.exchange);
    }
  });

  it('applies the filter', async () => {
    const store = storeWith(10, undefined, (i) => (i % 5 === 0 ? 500 : 200));
    const sink = collector();
    const totals = await writeExport(store, { format: 'jsonl', includeBodies: false, creator, filter: { status: { min: 500 } } }, sink);
    assert.equal(totals.count, 2);
    assert.deepEqual(sink.text().trim().split('\n').map((l) => (JSON.parse(l) as { exchange: { id: number } }).exchange.id), [5, 10]);
  });

  it('cuts chunks at the size bound without splitting a surrogate pair', async () => {
    const store = storeWith(4, (i) => `${'😀'.repeat(40)}${i}`);
    const sink = collector();
    await writeExport(store, { format: 'har', includeBodies: true, creator, chunkChars: 33 }, sink);
    for (const c of sink.chunks) {
      assert.ok(c.length <= 33);
      assert.ok(Buffer.from(c, 'utf8').toString('utf8') === c, 'each chunk is well-formed UTF-16 on its own');
    }
    const har = JSON.parse(sink.text()) as Har;
    assert.equal(har.log.entries[3]!.response.content.text, `${'😀'.repeat(40)}4`);
  });

  it('skips exchanges evicted or cleared while it runs (ids are snapshot at the start)', async () => {
    const store = storeWith(6);
    let writes = 0;
    const chunks: string[] = [];
    const sink: ExportSink = {
      async write(data) {
        chunks.push(data);
        if (++writes === 2) store.clear(); // after the first record: the rest are gone
      },
    };
    const totals = await writeExport(store, { format: 'jsonl', includeBodies: false, creator, chunkChars: 16 }, sink);
    assert.equal(totals.count, 1);
    assert.equal(chunks.join('').trim().split('\n').length, 1);
    store.add(live(99));
    assert.equal(store.count, 1, 'new exchanges after the clear are kept as usual');
  });

  it('reads no further ahead of a slow reader than one exchange: memory stays bounded', async () => {
    const body = 'x'.repeat(20_000);
    const store = storeWith(40, () => body);
    let read = 0;
    const source = { ids: () => store.ids(), get: (id: number) => (read++, store.get(id)) };
    let linesWritten = 0;
    let maxAhead = 0;
    const sink: ExportSink = {
      async write(data) {
        linesWritten += data.split('\n').length - 1;
        // Exchanges read minus records fully handed to the reader: what the writer holds.
        maxAhead = Math.max(maxAhead, read - linesWritten);
        await sleep(1);
      },
    };
    const totals = await writeExport(source, { format: 'jsonl', includeBodies: true, creator, chunkChars: 4096 }, sink);
    assert.equal(totals.count, 40);
    assert.ok(maxAhead <= 2, `read at most one exchange ahead of the reader (saw ${maxAhead})`);
  });

  it('stops with the sink error (the connection closed)', async () => {
    const store = storeWith(5);
    let read = 0;
    const source = { ids: () => store.ids(), get: (id: number) => (read++, store.get(id)) };
    const sink: ExportSink = {
      write: () => Promise.reject(new Error('the connection closed')),
    };
    await assert.rejects(writeExport(source, { format: 'har', includeBodies: true, creator, chunkChars: 16 }, sink), /connection closed/);
    assert.equal(read, 0, 'the HAR head failed to go out, so no exchange was read');
  });
});
