import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { bodyView, decodeContent, hexPreview, parseSse, prettyJson, wrapLine } from './body.js';

const bytes = (s: string) => new Uint8Array(Buffer.from(s));
const info = (n: number, captured = n) => ({ size: n, captured, truncated: captured < n });

describe('bodyView', () => {
  test('JSON is indented, with the content type in the summary', () => {
    const body = '{"a":1,"b":[true,null]}';
    const v = bodyView(bytes(body), { headers: [['Content-Type', 'application/json; charset=utf-8']], info: info(body.length), width: 80 });
    assert.equal(v.kind, 'json');
    assert.deepEqual(v.lines, ['{', '  "a": 1,', '  "b": [', '    true,', '    null', '  ]', '}']);
    assert.equal(v.summary, '23 B · application/json');
  });

  test('text is escaped and wrapped to the width', () => {
    const v = bodyView(bytes('hello\x1b]0;pwned\x07 world\tend\nline two'), { headers: [['content-type', 'text/plain']], info: info(30), width: 10 });
    assert.equal(v.kind, 'text');
    assert.ok(v.lines.every((l) => [...l].length <= 10));
    assert.equal(v.lines.join(''), 'hello\\x1b]0;pwned\\x07 world    endline two');
    assert.ok(!v.lines.join('').includes('\x1b'));
  });

  test('binary is a hex summary of the first bytes plus the length', () => {
    const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]);
    const v = bodyView(png, { headers: [['Content-Type', 'image/png']], info: info(12), width: 80 });
    assert.equal(v.kind, 'binary');
    assert.deepEqual(v.lines, ['12 bytes; first 12 as hex:', '89 50 4e 47 0d 0a 1a 0a 00 00 00 0d']);
    assert.match(v.summary, /binary$/);
    assert.equal(hexPreview(new Uint8Array(100), 4), '00 00 00 00 …');
  });

  test('an empty body', () => {
    assert.deepEqual(bodyView(new Uint8Array(), { headers: [], info: info(0), width: 80 }), { kind: 'none', summary: 'no body', lines: [] });
  });

  test('a truncated capture says so, and truncated JSON falls back to text', () => {
    const v = bodyView(bytes('{"a": [1, 2'), { headers: [['Content-Type', 'application/json']], info: info(5000, 11), width: 80 });
    assert.equal(v.kind, 'text');
    assert.match(v.summary, /^4.9 KiB · first 11 B captured/);
  });

  test('gzip bodies are decoded, even when the capture was cut short', () => {
    const json = JSON.stringify({ items: Array.from({ length: 200 }, (_, i) => ({ i })) });
    const gz = gzipSync(json);
    const full = bodyView(gz, { headers: [['Content-Type', 'application/json'], ['Content-Encoding', 'gzip']], info: info(gz.length), width: 80 });
    assert.equal(full.kind, 'json');
    assert.match(full.summary, /gzip-decoded/);
    const cut = decodeContent(gz.subarray(0, Math.floor(gz.length / 2)), 'gzip');
    assert.ok(cut && cut.bytes.length > 0 && json.startsWith(Buffer.from(cut.bytes).toString()));
    assert.equal(decodeContent(bytes('not gzip'), 'gzip'), null);
  });

  test('text/event-stream is split into events', () => {
    const stream = 'event: ping\nid: 1\ndata: {"n":1}\n\n: comment\ndata: line one\ndata: line two\n\nretry: 500\ndata: partial';
    const v = bodyView(bytes(stream), { headers: [['Content-Type', 'text/event-stream']], info: info(stream.length), width: 80 });
    assert.equal(v.kind, 'sse');
    assert.match(v.summary, /3 events$/);
    assert.deepEqual(v.lines, [
      '[1] ping · id 1',
      '    {"n":1}',
      '[2] message',
      '    line one',
      '    line two',
      '[3] message · retry 500ms (incomplete)',
      '    partial',
    ]);
  });
});

describe('bodyView with what the helper decoded and captured', () => {
  test('shows the helper-decoded body (zstd, which we cannot decode here) and says so', () => {
    const wire = bytes('(zstd frame bytes)');
    const decoded = { encoding: 'zstd', base64: Buffer.from('{"a":1}').toString('base64'), size: 7, truncated: false };
    const v = bodyView(wire, { headers: [['Content-Type', 'application/json'], ['Content-Encoding', 'zstd']], info: info(wire.length), width: 80, decoded });
    assert.equal(v.kind, 'json');
    assert.deepEqual(v.lines, ['{', '  "a": 1', '}']);
    assert.match(v.summary, /zstd-decoded 7 B$/);
    const partial = bodyView(wire, { headers: [], info: info(wire.length), width: 80, decoded: { ...decoded, truncated: true } });
    assert.match(partial.summary, /zstd-decoded 7 B \(partial\)$/);
  });

  test('a decoding the helper could not do shows the wire bytes and the reason, escaped', () => {
    const wire = bytes('plain text');
    const decoded = { encoding: 'gzip', base64: '', size: 0, truncated: true, error: 'gzip decoding failed: incorrect header check\x1b' };
    const v = bodyView(wire, { headers: [['Content-Encoding', 'gzip']], info: info(wire.length), width: 80, decoded });
    assert.deepEqual(v.lines, ['plain text']);
    assert.match(v.summary, /not decoded: gzip decoding failed: incorrect header check\\x1b$/);
  });

  test('captured SSE events are listed with their offsets, numbering and cut marks, over the body', () => {
    const body = 'data: only the first part of the body';
    const events = [
      { seq: 0, t: 12, event: 'tick', id: '0', data: 'zero' },
      { seq: 1, t: 1500, data: 'one\ntwo', truncated: true },
    ];
    const v = bodyView(bytes(body), {
      headers: [['Content-Type', 'text/event-stream']],
      info: info(5000, body.length),
      width: 80,
      sse: { events, info: { count: 9, captured: 2, truncated: true, events: [] } },
    });
    assert.equal(v.kind, 'sse');
    assert.match(v.summary, /9 events \(first 2 kept\)$/);
    assert.deepEqual(v.lines, ['[1] +12ms tick · id 0', '    zero', '[2] +1.50s message (cut)', '    one', '    two']);
  });
});

describe('pieces', () => {
  test('parseSse handles CRLF and CR line ends', () => {
    assert.deepEqual(parseSse('data: a\r\n\r\ndata: b\r\r'), [
      { data: 'a', complete: true },
      { data: 'b', complete: true },
    ]);
  });

  test('prettyJson leaves non-JSON alone', () => {
    assert.equal(prettyJson('hello'), null);
    assert.equal(prettyJson('{oops'), null);
    assert.equal(prettyJson(' [1] '), '[\n  1\n]');
  });

  test('wrapLine keeps wide characters whole', () => {
    assert.deepEqual(wrapLine('ab日本', 3), ['ab', '日', '本']);
    assert.deepEqual(wrapLine('', 3), ['']);
  });
});
