process.env.TZ = 'UTC';

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Exchange } from '../model/exchange.js';
import { HAR_TAIL, harEntry, harHead, harItemFromDetail, toHar, type Har } from './har.js';

/** 2024-05-06T07:08:09.123Z */
const T0 = Date.UTC(2024, 4, 6, 7, 8, 9, 123);

function sampleExchange(overrides: Partial<Exchange> = {}): Exchange {
  return {
    id: 42,
    state: 'complete',
    client: { address: '127.0.0.1', port: 50123 },
    server: { address: '93.184.216.34', port: 443 },
    tls: { sni: 'example.com', clientVersion: 'TLSv1.3', upstreamVersion: 'TLSv1.3', alpn: 'http/1.1' },
    request: {
      method: 'GET',
      url: 'https://example.com/index.html',
      httpVersion: '1.1',
      headers: [
        ['Host', 'example.com'],
        ['Accept', '*/*'],
      ],
      body: { size: 0, captured: 0, truncated: false },
    },
    response: {
      status: 200,
      statusMessage: 'OK',
      httpVersion: '1.1',
      headers: [['Content-Type', 'text/html']],
      body: { size: 1536, captured: 1536, truncated: false },
    },
    timing: { startedAt: T0, upstreamConnected: 10.4, firstByte: 40.2, end: 152.6 },
    ...overrides,
  };
}

const bytes = (s: string | number[]) => new Uint8Array(typeof s === 'string' ? Buffer.from(s) : s);

/** The HAR 1.2 spec's required fields (http://www.softwareishard.com/blog/har-12-spec/), checked by type. */
function assertHar12(har: Har): void {
  const isNum = (v: unknown) => typeof v === 'number' && Number.isFinite(v);
  const isStr = (v: unknown) => typeof v === 'string';
  const nameValues = (v: unknown) => Array.isArray(v) && v.every((p) => isStr(p.name) && isStr(p.value));
  assert.equal(har.log.version, '1.2');
  assert.ok(isStr(har.log.creator.name) && isStr(har.log.creator.version));
  assert.ok(Array.isArray(har.log.entries));
  for (const e of har.log.entries) {
    assert.ok(!Number.isNaN(Date.parse(e.startedDateTime)) && /T.*Z$/.test(e.startedDateTime), 'startedDateTime is ISO 8601');
    assert.ok(isNum(e.time) && e.time >= 0);
    const r = e.request;
    assert.ok(isStr(r.method) && isStr(r.url) && isStr(r.httpVersion));
    assert.ok(nameValues(r.cookies) && nameValues(r.headers) && nameValues(r.queryString));
    assert.ok(isNum(r.headersSize) && isNum(r.bodySize));
    if (r.postData) assert.ok(isStr(r.postData.mimeType) && isStr(r.postData.text));
    const s = e.response;
    assert.ok(isNum(s.status) && isStr(s.statusText) && isStr(s.httpVersion));
    assert.ok(nameValues(s.cookies) && nameValues(s.headers));
    assert.ok(isNum(s.content.size) && isStr(s.content.mimeType));
    assert.ok(isStr(s.redirectURL) && isNum(s.headersSize) && isNum(s.bodySize));
    assert.equal(typeof e.cache, 'object');
    const t = e.timings;
    for (const k of ['send', 'wait', 'receive'] as const) assert.ok(isNum(t[k]) && t[k] >= 0, `timings.${k}`);
    for (const k of ['blocked', 'dns', 'connect', 'ssl'] as const) assert.ok(isNum(t[k]) && t[k] >= -1, `timings.${k}`);
    const sum = [t.blocked, t.dns, t.connect, t.send, t.wait, t.receive].filter((x) => x !== -1).reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(sum - e.time) < 0.01, 'time is the sum of the timings');
    for (const key of Object.keys(e)) {
      const known = ['pageref', 'startedDateTime', 'time', 'request', 'response', 'cache', 'timings', 'serverIPAddress', 'connection', 'comment'];
      assert.ok(known.includes(key) || key.startsWith('_'), `custom field ${key} starts with _`);
    }
  }
}

describe('toHar', () => {
  test('a complete exchange with a JSON response and a form POST', () => {
    const ex = sampleExchange({
      request: {
        method: 'POST',
        url: 'https://example.com/login?next=%2Fhome&x=1',
        httpVersion: '1.1',
        headers: [
          ['Content-Type', 'application/x-www-form-urlencoded'],
          ['Cookie', 'sid=abcd…[masked 32]; theme=dark'],
        ],
        body: { size: 7, captured: 7, truncated: false },
      },
      response: {
        status: 302,
        statusMessage: 'Found',
        httpVersion: '1.1',
        headers: [
          ['Location', '/home'],
          ['Set-Cookie', 'sid=ef01…[masked 32]; Path=/; HttpOnly'],
          ['Content-Type', 'application/json'],
        ],
        body: { size: 2, captured: 2, truncated: false },
      },
    });
    const har = toHar([{ exchange: ex, requestBody: bytes('a=1&b=2'), responseBody: bytes('{}') }], { name: 'tproxy-ui', version: '0.1.0' });
    assertHar12(har);
    const e = har.log.entries[0]!;
    assert.equal(e.startedDateTime, new Date(T0).toISOString());
    assert.equal(e.request.httpVersion, 'HTTP/1.1');
    assert.deepEqual(e.request.queryString, [
      { name: 'next', value: '/home' },
      { name: 'x', value: '1' },
    ]);
    assert.deepEqual(e.request.cookies, [
      { name: 'sid', value: 'abcd…[masked 32]' },
      { name: 'theme', value: 'dark' },
    ]);
    assert.deepEqual(e.request.postData, { mimeType: 'application/x-www-form-urlencoded', text: 'a=1&b=2' });
    assert.deepEqual(e.response.cookies, [{ name: 'sid', value: 'ef01…[masked 32]' }]);
    assert.equal(e.response.redirectURL, '/home');
    assert.deepEqual(e.response.content, { size: 2, mimeType: 'application/json', text: '{}' });
    assert.deepEqual(e.timings, { blocked: -1, dns: -1, connect: 10.4, send: 0, wait: 29.8, receive: 112.4, ssl: -1 });
    assert.equal(e.time, 152.6);
    assert.equal(e.serverIPAddress, '93.184.216.34');
    assert.match(har.log.comment, /masked by tproxy-helper/);
  });

  test('binary bodies are base64; truncated ones say so', () => {
    const ex = sampleExchange({ response: { ...sampleExchange().response!, headers: [['Content-Type', 'image/png']], body: { size: 1000, captured: 4, truncated: true } } });
    const har = toHar([{ exchange: ex, requestBody: bytes(''), responseBody: bytes([0x89, 0x50, 0, 0xff]) }], { name: 't', version: '1' });
    assertHar12(har);
    const c = har.log.entries[0]!.response.content;
    assert.equal(c.encoding, 'base64');
    assert.equal(c.text, Buffer.from([0x89, 0x50, 0, 0xff]).toString('base64'));
    assert.equal(c.comment, 'tproxy captured the first 4 of 1000 bytes');
  });

  test('a decoded body is the content text (HAR wants it decoded), with its size, compression and a note', () => {
    const text = '{"decoded":true}';
    const gz = Buffer.from([0x1f, 0x8b, 8, 0, 1, 2, 3]);
    const res = { ...sampleExchange().response!, headers: [['Content-Type', 'application/json'], ['Content-Encoding', 'gzip']] as [string, string][], body: { size: gz.length, captured: gz.length, truncated: false } };
    const item = harItemFromDetail({
      exchange: sampleExchange({ response: res }),
      requestBody: '',
      responseBody: gz.toString('base64'),
      decodedResponseBody: { encoding: 'gzip', base64: Buffer.from(text).toString('base64'), size: text.length, truncated: false },
    });
    const har = toHar([item], { name: 't', version: '1' });
    assertHar12(har);
    const c = har.log.entries[0]!.response.content;
    assert.equal(c.text, text);
    assert.equal(c.encoding, undefined);
    assert.equal(c.size, text.length);
    assert.equal(c.compression, text.length - gz.length);
    assert.equal(c.comment, 'decoded by tproxy from Content-Encoding gzip');
    assert.equal(har.log.entries[0]!.response.bodySize, gz.length);
    // A decoding that failed leaves the wire bytes (base64 here, as they are binary).
    const failed = harItemFromDetail({
      exchange: sampleExchange({ response: res }),
      requestBody: '',
      responseBody: gz.toString('base64'),
      decodedResponseBody: { encoding: 'gzip', base64: '', size: 0, truncated: true, error: 'gzip decoding failed: unexpected end of file' },
    });
    const fc = harEntry(failed).response.content;
    assert.equal(fc.encoding, 'base64');
    assert.equal(fc.text, gz.toString('base64'));
    assert.equal(fc.compression, undefined);
  });

  test('failed and in-flight exchanges still have every required field', () => {
    const failed = sampleExchange({ id: 1, state: 'error', response: undefined, error: { kind: 'upstream-connect', message: 'refused', code: 'ECONNREFUSED' }, timing: { startedAt: T0, end: 12 } });
    const pending = sampleExchange({ id: 2, state: 'in-flight', response: undefined, timing: { startedAt: T0 + 5 } });
    const har = toHar([{ exchange: pending }, { exchange: failed }], { name: 't', version: '1' });
    assertHar12(har);
    assert.deepEqual(har.log.entries.map((e) => e._id), [1, 2], 'sorted by start time');
    const f = har.log.entries[0]!;
    assert.equal(f.response.status, 0);
    assert.deepEqual(f._error, { kind: 'upstream-connect', message: 'refused', code: 'ECONNREFUSED' });
    assert.equal(har.log.entries[1]!.comment, 'still in flight when exported');
  });

  test('head + entries joined by commas + tail is the same document as toHar, and valid HAR 1.2', () => {
    const items = [
      { exchange: sampleExchange({ id: 1 }), responseBody: bytes('<p>hi</p>') },
      { exchange: sampleExchange({ id: 2, request: { ...sampleExchange().request, url: 'https://example.com/\u2028"quote"' } }) },
    ];
    const creator = { name: 'tproxy-helper', version: '9.9.9' };
    const streamed = JSON.parse(harHead(creator) + items.map((i) => JSON.stringify(harEntry(i))).join(',') + HAR_TAIL) as Har;
    assertHar12(streamed);
    assert.deepEqual(streamed, toHar(items, creator));
    assert.match(streamed.log.comment, /^Exported by tproxy-helper\./);
    const empty = JSON.parse(harHead(creator) + HAR_TAIL) as Har;
    assertHar12(empty);
    assert.deepEqual(empty.log.entries, []);
  });
});
