process.env.TZ = 'UTC';

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sampleExchange } from '../test/fixtures.js';
import { cellText, columnsFor, fit, formatDuration, formatRate, statusColor, statusText, textWidth, timingSegments } from './format.js';
import { splitUrl } from './url.js';

describe('columnsFor', () => {
  test('widths plus one-space gaps add up to the terminal width', () => {
    for (const width of [40, 60, 80, 81, 95, 96, 100, 120, 200, 300]) {
      const cols = columnsFor(width);
      assert.equal(cols.reduce((sum, c) => sum + c.width, 0) + cols.length - 1, width, `width ${width}`);
    }
  });

  test('narrow terminals drop process and protocol and shorten the time; path gets the rest', () => {
    const keys = (w: number) => columnsFor(w).map((c) => c.key);
    assert.deepEqual(keys(80), ['time', 'method', 'host', 'path', 'status', 'size', 'duration']);
    assert.deepEqual(keys(100), ['time', 'method', 'host', 'path', 'status', 'protocol', 'size', 'duration']);
    assert.deepEqual(keys(120), ['time', 'process', 'method', 'host', 'path', 'status', 'protocol', 'size', 'duration']);
    assert.equal(columnsFor(80)[0]!.width, 8);
    assert.equal(columnsFor(120)[0]!.width, 12);
    const wide = columnsFor(200);
    assert.equal(wide.find((c) => c.key === 'host')!.width, 32);
    assert.ok(wide.find((c) => c.key === 'path')!.width > 90);
  });
});

describe('cells', () => {
  const ex = sampleExchange();
  test('each cell of a complete exchange', () => {
    const cell = (key: Parameters<typeof cellText>[1]) => cellText(ex, key);
    assert.equal(cell('time'), '07:08:09.123');
    assert.equal(cellText(ex, 'time', { key: 'time', title: 'TIME', width: 8, align: 'left' }), '07:08:09');
    assert.equal(cell('process'), '-');
    assert.equal(cell('method'), 'GET');
    assert.equal(cell('host'), 'example.com');
    assert.equal(cell('path'), '/index.html');
    assert.equal(cell('status'), '200');
    assert.equal(cell('protocol'), 'http/1.1');
    assert.equal(cell('size'), '1.5 KiB');
    assert.equal(cell('duration'), '153ms');
  });

  test('in flight and failed exchanges', () => {
    const pending = sampleExchange({ state: 'in-flight', response: undefined, timing: { startedAt: 0 } });
    assert.equal(statusText(pending), '…');
    assert.equal(cellText(pending, 'duration'), '…');
    assert.equal(cellText(pending, 'size'), '-');
    const failed = sampleExchange({ state: 'error', error: { kind: 'upstream-connect', message: 'refused' } });
    assert.equal(statusText(failed), 'connect');
    assert.equal(statusColor(failed), 'red');
  });

  test('status colours: 2xx green, 3xx cyan, 4xx yellow, 5xx red, none gray', () => {
    const withStatus = (status: number) => sampleExchange({ response: { ...sampleExchange().response!, status } });
    assert.deepEqual([200, 302, 404, 503].map((s) => statusColor(withStatus(s))), ['green', 'cyan', 'yellow', 'red']);
    assert.equal(statusColor(sampleExchange({ state: 'in-flight', response: undefined })), 'gray');
  });

  test('hostile text in a cell is escaped', () => {
    const hostile = sampleExchange({ request: { ...sampleExchange().request, method: 'G\x1b[2JET', url: 'https://evil\x1b]0;t\x07.com/\u202ex' } });
    assert.equal(cellText(hostile, 'method'), 'G\\x1b[2JET');
    assert.equal(cellText(hostile, 'host'), 'evil\\x1b]0;t\\x07.com');
    assert.equal(cellText(hostile, 'path'), '/\\u202ex');
  });
});

describe('small formats', () => {
  test('durations', () => {
    assert.deepEqual([0.4, 153, 1234, 12_345, 123_456, 754_000].map(formatDuration), ['0ms', '153ms', '1.23s', '12.3s', '123s', '12m34s']);
    assert.equal(formatDuration(undefined), '…');
  });

  test('rate', () => {
    assert.equal(formatRate(0), '0.0/s');
    assert.equal(formatRate(2.25), '2.3/s');
    assert.equal(formatRate(412.4), '412/s');
  });

  test('fit pads, cuts with an ellipsis, and counts wide characters as two cells', () => {
    assert.equal(fit('abc', 5), 'abc  ');
    assert.equal(fit('abc', 5, 'right'), '  abc');
    assert.equal(fit('abcdef', 4), 'abc…');
    assert.equal(textWidth('日本'), 4);
    assert.equal(fit('日本語', 4), '日… ');
    assert.equal(textWidth(fit('日本語です', 7)), 7);
  });

  test('splitUrl', () => {
    assert.deepEqual(splitUrl('https://Example.com:8443/a?b=1'), { host: 'Example.com:8443', hostname: 'example.com', path: '/a?b=1' });
    assert.deepEqual(splitUrl('https://[::1]:443'), { host: '[::1]:443', hostname: '::1', path: '/' });
    assert.deepEqual(splitUrl('not a url'), { host: '', hostname: '', path: 'not a url' });
  });
});

describe('timingSegments', () => {
  test('splits the bar in proportion to connect, wait and receive', () => {
    assert.deepEqual(timingSegments({ startedAt: 0, upstreamConnected: 10, firstByte: 40, end: 100 }, 20), { connect: 2, wait: 6, receive: 12, pending: 0 });
  });

  test('cells always add up to the width', () => {
    for (const t of [
      { startedAt: 0, upstreamConnected: 1, firstByte: 2, end: 3 },
      { startedAt: 0, upstreamConnected: 33.3, firstByte: 66.6, end: 99.9 },
      { startedAt: 0, upstreamConnected: 0, firstByte: 0, end: 0 },
    ]) {
      const s = timingSegments(t, 17);
      assert.equal(s.connect + s.wait + s.receive + s.pending, 17);
    }
  });

  test('an exchange in flight is scaled against the elapsed time; the rest is pending', () => {
    assert.deepEqual(timingSegments({ startedAt: 0, upstreamConnected: 25 }, 8, 100), { connect: 2, wait: 0, receive: 0, pending: 6 });
  });

  test('a failed connect with only an end counts as connect time', () => {
    assert.deepEqual(timingSegments({ startedAt: 0, end: 50 }, 10), { connect: 10, wait: 0, receive: 0, pending: 0 });
  });
});
