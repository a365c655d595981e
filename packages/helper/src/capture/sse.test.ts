import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SSE_SUMMARY_DATA_CHARS, SSE_SUMMARY_EVENTS, SseCapture, SseParser, isEventStream, type ParsedSseEvent } from './sse.js';

const enc = (s: string) => Buffer.from(s, 'utf8');

/** Feeds `bytes` cut at each of `cuts` (byte offsets) and returns every event. */
function parseCut(bytes: Buffer, cuts: number[], maxEventChars = 1 << 20): ParsedSseEvent[] {
  const p = new SseParser(maxEventChars);
  const out: ParsedSseEvent[] = [];
  let at = 0;
  for (const c of [...cuts, bytes.length]) {
    out.push(...p.push(bytes.subarray(at, c)));
    at = c;
  }
  out.push(...p.end());
  return out;
}

const STREAM = '\uFEFF: comment, ignored\r\nevent: greet\r\nid: 1\r\ndata: héllo 🌍\r\ndata:second line\r\n\r\n' + 'data: plain\n\n' + 'retry: 2500\rdata\r\r' + 'id: 7\nevent: end\ndata: {"done":true}\n\n';
const EXPECTED: ParsedSseEvent[] = [
  { event: 'greet', id: '1', data: 'héllo 🌍\nsecond line' },
  { data: 'plain' },
  { retry: 2500, data: '' },
  { event: 'end', id: '7', data: '{"done":true}' },
];

describe('SseParser', () => {
  it('parses fields, comments, multi-line data, CRLF/CR/LF line ends and a leading BOM in one piece', () => {
    assert.deepEqual(parseCut(enc(STREAM), []), EXPECTED);
  });

  it('gives the same events however the bytes are split: every single cut point, and byte by byte', () => {
    const bytes = enc(STREAM);
    for (let cut = 0; cut <= bytes.length; cut++) assert.deepEqual(parseCut(bytes, [cut]), EXPECTED, `cut at byte ${cut}`);
    const every = Array.from({ length: bytes.length }, (_, i) => i);
    assert.deepEqual(parseCut(bytes, every), EXPECTED);
  });

  it('a CR at the end of one piece and LF at the start of the next is one line end, not an empty line', () => {
    const p = new SseParser(1000);
    assert.deepEqual(p.push(enc('data: a\r')), []);
    assert.deepEqual(p.push(enc('\ndata: b\r')), []);
    assert.deepEqual(p.push(enc('\n\r\n')), [{ data: 'a\nb' }]);
  });

  it('returns events as soon as their blank line arrives, and discards an unterminated last event at the end', () => {
    const p = new SseParser(1000);
    assert.deepEqual(p.push(enc('data: one\n\ndata: tw')), [{ data: 'one' }]);
    assert.deepEqual(p.push(enc('o\n')), []);
    assert.deepEqual(p.end(), []);
  });

  it('follows the standard on fields: one space stripped, no colon means empty value, unknown fields and NUL ids ignored', () => {
    const events = parseCut(enc('data:  two spaces\nfoo: bar\nid: a\0b\nretry: 12x\ndata\n\nfoo: only unknown\n\n:only a comment\n\n'), []);
    assert.deepEqual(events, [{ data: ' two spaces\n' }]);
  });

  it('caps a huge event: data cut at the limit and marked, the parser holds no more than the cap', () => {
    const huge = 'x'.repeat(100_000);
    const events = parseCut(enc(`event: big\ndata: ${huge}\ndata: more\n\ndata: next\n\n`), [10, 5000, 50_000], 1000);
    assert.equal(events.length, 2);
    assert.equal(events[0]!.event, 'big');
    assert.equal(events[0]!.data.length, 1000);
    assert.equal(events[0]!.truncated, true);
    assert.deepEqual(events[1], { data: 'next' });
  });

  it('a line with no end at all (a flood without newlines) is held only up to the cap', () => {
    const p = new SseParser(100);
    for (let i = 0; i < 1000; i++) p.push(enc('y'.repeat(1000)));
    const internal = p as unknown as { lineChars: number };
    assert.ok(internal.lineChars <= 116, `held ${internal.lineChars} characters`);
    assert.deepEqual(p.push(enc('\n\n')), []); // the cut line was an unknown field `yyyy…`: no event
  });

  it('invalid UTF-8 becomes U+FFFD instead of failing', () => {
    assert.deepEqual(parseCut(Buffer.concat([enc('data: a'), Buffer.from([0xff, 0xfe]), enc('b\n\n')]), [8]), [{ data: 'a\uFFFD\uFFFDb' }]);
  });
});

describe('SseCapture', () => {
  it('numbers events, stamps the offset of the piece that completed them, and keeps the first ones within the caps', () => {
    const cap = new SseCapture({ maxEvents: 3, maxDataChars: 1000, maxEventChars: 1000 });
    assert.equal(cap.push(enc('data: 1\n\ndata: 2\n'), 5), 1);
    assert.equal(cap.push(enc('\n'), 7.5), 1);
    assert.equal(cap.push(enc('data: 3\n\ndata: 4\n\ndata: 5\n\n'), 9), 3);
    assert.deepEqual(cap.events(), [
      { seq: 0, t: 5, data: '1' },
      { seq: 1, t: 7.5, data: '2' },
      { seq: 2, t: 9, data: '3' },
    ]);
    const info = cap.info();
    assert.equal(info.count, 5);
    assert.equal(info.captured, 3);
    assert.equal(info.truncated, true);
    // The summary shows the newest events, kept or not, so a live view keeps moving past the cap.
    assert.deepEqual(info.events.map((e) => e.seq), [0, 1, 2, 3, 4]);
  });

  it('caps kept data by characters, and the summary holds at most the newest few, previewed', () => {
    const cap = new SseCapture({ maxEvents: 1000, maxDataChars: 2000, maxEventChars: 5000 });
    const big = 'z'.repeat(900);
    for (let i = 0; i < 20; i++) cap.push(enc(`data: ${big}\n\n`), i);
    assert.equal(cap.events().length, 2);
    const info = cap.info();
    assert.equal(info.count, 20);
    assert.equal(info.events.length, SSE_SUMMARY_EVENTS);
    assert.equal(info.events[0]!.seq, 20 - SSE_SUMMARY_EVENTS);
    assert.equal(info.events[0]!.data.length, SSE_SUMMARY_DATA_CHARS);
    assert.equal(info.events[0]!.truncated, true);
    assert.equal(cap.events()[0]!.data.length, 900); // the kept event itself is whole
    assert.ok(cap.approxChars >= 1800);
  });

  it('snapshots are copies', () => {
    const cap = new SseCapture({ maxEvents: 10, maxDataChars: 100, maxEventChars: 100 });
    cap.push(enc('data: a\n\n'), 1);
    const events = cap.events();
    events[0]!.data = 'changed';
    assert.equal(cap.events()[0]!.data, 'a');
  });
});

describe('isEventStream', () => {
  it('matches the media type only, any case and parameters', () => {
    assert.equal(isEventStream('text/event-stream'), true);
    assert.equal(isEventStream('Text/Event-Stream; charset=utf-8'), true);
    assert.equal(isEventStream('text/plain'), false);
    assert.equal(isEventStream(undefined), false);
  });
});
