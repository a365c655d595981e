process.env.TZ = 'UTC';

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Exchange, ExchangeDetail } from '@tproxy/protocol';
import { grpcExchange, sampleExchange } from '../test/fixtures.js';
import { detailLines, type DetailLine } from './detail.js';
import type { DetailState } from './state/reducer.js';

const WIDTH = 100;

/** The view's text, one string per display line. */
function text(lines: readonly DetailLine[]): string[] {
  return lines.map((l) => l.map((s) => s.text).join(''));
}

/** A section heading as the view draws it: the title, then a rule to the full width. */
function heading(title: string): string {
  const t = `── ${title} `;
  return t + '─'.repeat(WIDTH - [...t].length);
}

function loaded(data: ExchangeDetail): DetailState {
  return { id: data.exchange.id, status: 'loaded', data, scroll: 0, lineCount: 0, pageRows: 10 };
}

function render(ex: Exchange): string[] {
  const detail = loaded({ exchange: ex, requestBody: '', responseBody: '' });
  return text(detailLines({ exchange: ex, detail, width: WIDTH, now: ex.timing.startedAt + 1000 }));
}

/** Everything from the request headers on: the HTTP part of the view. */
function httpPart(lines: string[]): string[] {
  const start = lines.findIndex((l) => l.startsWith('── Request headers'));
  assert.ok(start >= 0, lines.join('\n'));
  return lines.slice(start);
}

describe('detailLines', () => {
  test('an HTTP/2 exchange: the stream id in the request heading, trailer sections after each body', () => {
    assert.deepEqual(httpPart(render(grpcExchange())), [
      heading('Request headers (1) · HTTP/2 · stream 5'),
      'content-type: application/grpc',
      heading('Request body · no body'),
      heading('Request trailers (1)'),
      'x-client-done: 1',
      heading('Response headers (1) · HTTP/2'),
      'content-type: application/grpc',
      heading('Response body · no body'),
      heading('Response trailers (2)'),
      'grpc-status: 0',
      'grpc-message: ok\\x1b[2J',
    ]);
  });

  test('the TLS line names the ALPN protocols the client offered', () => {
    const tls = render(grpcExchange()).find((l) => l.startsWith('TLS'));
    assert.equal(tls, 'TLS      SNI example.com · client TLSv1.3 · upstream TLSv1.3 · ALPN h2 (offered h2, http/1.1)');
  });

  test('an HTTP/1.1 exchange without trailers: no stream, no trailer sections, no offered ALPN', () => {
    const ex = sampleExchange();
    ex.response!.body = { size: 0, captured: 0, truncated: false };
    const lines = render(ex);
    assert.deepEqual(httpPart(lines), [
      heading('Request headers (2) · HTTP/1.1'),
      'Host: example.com',
      'Accept: */*',
      heading('Request body · no body'),
      heading('Response headers (1) · HTTP/1.1'),
      'Content-Type: text/html',
      heading('Response body · no body'),
    ]);
    assert.equal(lines.find((l) => l.startsWith('TLS')), 'TLS      SNI example.com · client TLSv1.3 · upstream TLSv1.3 · ALPN http/1.1');
  });

  test('empty trailer lists draw no section', () => {
    const ex = sampleExchange();
    ex.request.trailers = [];
    ex.response!.trailers = [];
    assert.ok(!render(ex).some((l) => l.includes('trailers')));
  });

  test('trailer names are bold like header names', () => {
    const ex = grpcExchange();
    const lines = detailLines({ exchange: ex, detail: loaded({ exchange: ex, requestBody: '', responseBody: '' }), width: WIDTH, now: 0 });
    const status = lines.find((l) => l[0]?.text === 'grpc-status:');
    assert.deepEqual(status, [{ text: 'grpc-status:', bold: true }, { text: ' 0' }]);
  });

  test('a passthrough shows its reason and bytes and stops after the timing: it has no heads or bodies', () => {
    const ex = sampleExchange({
      kind: 'passthrough',
      passthrough: { reason: 'no-sni', bytesUp: 517, bytesDown: 2048 },
      request: { method: 'TLS', url: 'tls://93.184.216.34:443', httpVersion: '', headers: [], body: { size: 0, captured: 0, truncated: false } },
    });
    delete ex.response;
    const lines = render(ex);
    assert.ok(lines.includes('passthrough (not decrypted): no-sni · 517 B up · 2 KiB down'), lines.join('\n'));
    assert.ok(!lines.some((l) => l.startsWith('── ')), lines.join('\n'));
    assert.match(lines.at(-1)!, /connect .* first byte .* receive /);
  });

  test('a WebSocket shows its counts and messages after the response', () => {
    const ex = sampleExchange({
      websocket: { messagesUp: 1, messagesDown: 0, bytesUp: 11, bytesDown: 0, closeCode: 1000, messages: [{ dir: 'up', time: sampleExchange().timing.startedAt, opcode: 1, size: 5, text: 'hello' }] },
    });
    const lines = render(ex);
    assert.deepEqual(lines.slice(-2), [heading('WebSocket · 1 ↑ 0 ↓ messages · 11 B ↑ 0 B ↓ · closed 1000'), '07:08:09.123 ↑ text 5 B  "hello"']);
  });
});
