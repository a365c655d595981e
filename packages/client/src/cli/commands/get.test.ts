/**
 * `tproxyctl get ID` against the fake helper (no root): the facts of the model beyond heads and
 * bodies (trailers, the HTTP/2 stream id, offered ALPN, SSE events, passthrough) appear as exact
 * lines, and only when the exchange has them.
 */
process.env.TZ = 'UTC';

import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import type { ExchangeDetail } from '@tproxy/protocol';
import { FakeHelper } from '../../test/fake-helper.js';
import { T0, grpcExchange, sampleExchange } from '../../test/fixtures.js';
import type { Io } from '../command.js';
import { main } from '../main.js';

function recordingIo() {
  const out: Buffer[] = [];
  const err: string[] = [];
  const io: Io = { stdout: { write: (c) => out.push(Buffer.from(c)) }, stderr: { write: (c) => err.push(c) }, env: {} };
  return { io, stdout: () => Buffer.concat(out).toString('utf8'), stderr: () => err.join('') };
}

describe('tproxyctl get', () => {
  let fake: FakeHelper;
  let served: ExchangeDetail;

  async function get(id: string) {
    const rec = recordingIo();
    const code = await main(['get', id, '--socket', fake.socketPath], rec.io);
    return { code, stdout: rec.stdout(), stderr: rec.stderr() };
  }

  beforeEach(async () => {
    fake = await FakeHelper.start();
    fake.on('exchanges.get', () => served);
  });
  afterEach(async () => {
    await fake.close();
  });

  test('an HTTP/2 exchange shows its stream id, the offered ALPN and both trailer blocks', async () => {
    served = { exchange: grpcExchange(), requestBody: '', responseBody: '' };
    const r = await get('42');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      [
        'exchange 42 (complete)',
        'POST https://example.com/pkg.Svc/Call -> 200',
        'client:  127.0.0.1:50123',
        'server:  93.184.216.34:443',
        'tls:     sni example.com, client TLSv1.3, upstream TLSv1.3, alpn h2, offered h2 http/1.1',
        'started: 2024-05-06 07:08:09.123',
        'timing:  upstream 10ms, first byte 40ms, total 153ms',
        '',
        '--- request',
        'POST https://example.com/pkg.Svc/Call HTTP/2 stream 5',
        'content-type: application/grpc',
        '',
        '(no body)',
        '',
        'trailers:',
        'x-client-done: 1',
        '',
        '--- response',
        'HTTP/2 200',
        'content-type: application/grpc',
        '',
        '(no body)',
        '',
        'trailers:',
        'grpc-status: 0',
        'grpc-message: ok\\x1b[2J',
        '',
      ].join('\n'),
    );
    assert.deepEqual(fake.received.find((x) => x.method === 'exchanges.get')?.params, { id: 42 });
  });

  test('an HTTP/1.1 exchange without trailers prints no stream, trailers or offered ALPN', async () => {
    served = { exchange: sampleExchange(), requestBody: '', responseBody: Buffer.from('<p>hi</p>\n').toString('base64') };
    const r = await get('42');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      [
        'exchange 42 (complete)',
        'GET https://example.com/index.html -> 200 OK',
        'client:  127.0.0.1:50123',
        'server:  93.184.216.34:443',
        'tls:     sni example.com, client TLSv1.3, upstream TLSv1.3, alpn http/1.1',
        'started: 2024-05-06 07:08:09.123',
        'timing:  upstream 10ms, first byte 40ms, total 153ms',
        '',
        '--- request',
        'GET https://example.com/index.html HTTP/1.1',
        'Host: example.com',
        'Accept: */*',
        '',
        '(no body)',
        '',
        '--- response',
        'HTTP/1.1 200 OK',
        'Content-Type: text/html',
        '',
        '[body: 1536 bytes]',
        '<p>hi</p>',
        '',
      ].join('\n'),
    );
  });

  test('empty trailer lists print nothing either', async () => {
    const ex = sampleExchange();
    ex.request.trailers = [];
    ex.response!.trailers = [];
    ex.response!.body = { size: 0, captured: 0, truncated: false };
    served = { exchange: ex, requestBody: '', responseBody: '' };
    const r = await get('42');
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout, /trailers:/);
    assert.ok(r.stdout.endsWith('\nContent-Type: text/html\n\n(no body)\n'), r.stdout);
  });

  test('an SSE response lists the kept events with their times after the body', async () => {
    const ex = sampleExchange();
    ex.response!.headers = [['Content-Type', 'text/event-stream']];
    ex.response!.body = { size: 40, captured: 40, truncated: false };
    ex.response!.sse = { count: 3, captured: 2, truncated: true, events: [] };
    served = {
      exchange: ex,
      requestBody: '',
      responseBody: Buffer.from('id: 1\ndata: a\n\nevent: tick\ndata: b\n\n').toString('base64'),
      sseEvents: [
        { seq: 0, t: 12.4, id: '1', data: 'a' },
        { seq: 1, t: 250, event: 'tick', data: 'line1\nline2\x1b', retry: 3000, truncated: true },
      ],
    };
    const r = await get('42');
    assert.equal(r.code, 0, r.stderr);
    assert.ok(
      r.stdout.endsWith(
        [
          '',
          '--- server-sent events: 3 (first 2 kept)',
          '[1] +12ms message id 1  "a"',
          '[2] +250ms tick retry 3000ms  "line1\\nline2\\x1b" (cut)',
          '',
        ].join('\n'),
      ),
      r.stdout,
    );
  });

  test('without exchanges.get sseEvents, the summary\'s newest events are shown and said to be only those', async () => {
    const ex = sampleExchange();
    ex.response!.body = { size: 0, captured: 0, truncated: false };
    ex.response!.sse = { count: 10, captured: 10, truncated: true, events: [{ seq: 9, t: 900, data: 'x'.repeat(256), truncated: true }] };
    served = { exchange: ex, requestBody: '', responseBody: '' };
    const r = await get('42');
    assert.equal(r.code, 0, r.stderr);
    assert.ok(
      r.stdout.endsWith(['(no body)', '', '--- server-sent events: 10 (all kept, some data cut)', `[10] +900ms message  "${'x'.repeat(200)}…" (cut)`, '(only the newest 1 shown)', ''].join('\n')),
      r.stdout,
    );
  });

  test('a passthrough entry shows the reason and bytes and ends with a newline', async () => {
    const ex = sampleExchange({
      kind: 'passthrough',
      passthrough: { reason: 'not-tls', detail: 'first byte 0x70', bytesUp: 13, bytesDown: 18 },
      request: { method: 'TCP', url: 'tcp://93.184.216.34:443', httpVersion: '', headers: [], body: { size: 0, captured: 0, truncated: false } },
    });
    delete ex.response;
    served = { exchange: ex, requestBody: '', responseBody: '' };
    const r = await get('42');
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.endsWith('\npassthrough: not-tls (first byte 0x70), 13 B up, 18 B down\n'), r.stdout);
    assert.doesNotMatch(r.stdout, /--- request/);
  });

  test('a WebSocket shows its counts and messages', async () => {
    const ex = sampleExchange({
      websocket: { messagesUp: 1, messagesDown: 0, bytesUp: 11, bytesDown: 0, messages: [{ dir: 'up', time: T0 + 877, opcode: 1, size: 5, text: 'hello' }] },
    });
    served = { exchange: ex, requestBody: '', responseBody: '' };
    const r = await get('42');
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.endsWith('\n--- WebSocket: 1 ↑ 0 ↓ messages · 11 B ↑ 0 B ↓\n07:08:10.000 ↑ text 5 B  "hello"\n'), r.stdout);
  });
});

