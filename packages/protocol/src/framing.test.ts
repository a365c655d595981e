import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LineDecoder, encode, type Frame } from './framing.js';

const lines = (frames: Frame[]) => frames.map((f) => (f.kind === 'line' ? f.line : `<oversize ${f.limit}>`));

describe('LineDecoder', () => {
  it('joins a message split across chunks', () => {
    const d = new LineDecoder(1024);
    assert.deepEqual(d.push(Buffer.from('{"a":')), []);
    assert.equal(d.buffered, 5);
    assert.deepEqual(lines(d.push(Buffer.from('1}\n'))), ['{"a":1}']);
    assert.equal(d.buffered, 0);
  });

  it('returns several messages from one chunk, in order', () => {
    const d = new LineDecoder(1024);
    assert.deepEqual(lines(d.push(Buffer.from('{"a":1}\n{"b":2}\n{"c"'))), ['{"a":1}', '{"b":2}']);
    assert.deepEqual(lines(d.push(Buffer.from(':3}\n'))), ['{"c":3}']);
  });

  it('strips CRLF and skips empty lines', () => {
    const d = new LineDecoder(1024);
    assert.deepEqual(lines(d.push(Buffer.from('{"a":1}\r\n\r\n\n{"b":2}\r\n'))), ['{"a":1}', '{"b":2}']);
  });

  it('keeps a multi-byte character split between chunks intact', () => {
    const d = new LineDecoder(1024);
    const bytes = Buffer.from('"é€"\n');
    assert.deepEqual(d.push(bytes.subarray(0, 2)), []);
    assert.deepEqual(lines(d.push(bytes.subarray(2))), ['"é€"']);
  });

  it('reports an oversize line once, drops it without buffering, and recovers', () => {
    const d = new LineDecoder(10);
    assert.deepEqual(lines(d.push(Buffer.from('12345'))), []);
    assert.deepEqual(lines(d.push(Buffer.from('678901234'))), ['<oversize 10>']);
    assert.equal(d.buffered, 0, 'nothing of the oversize line is held');
    assert.deepEqual(lines(d.push(Buffer.from('more junk without end'))), []);
    assert.equal(d.buffered, 0);
    assert.deepEqual(lines(d.push(Buffer.from('tail\n{"ok":1}\n'))), ['{"ok":1}']);
  });

  it('reports an oversize line that arrives whole, keeping its neighbours', () => {
    const d = new LineDecoder(8);
    assert.deepEqual(lines(d.push(Buffer.from('{"a":1}\n0123456789abc\n{"b":2}\n'))), ['{"a":1}', '<oversize 8>', '{"b":2}']);
  });

  it('accepts a line of exactly the limit', () => {
    const d = new LineDecoder(7);
    assert.deepEqual(lines(d.push(Buffer.from('{"a":1}\n'))), ['{"a":1}']);
  });

  it('does not keep a reference to the caller chunk', () => {
    const d = new LineDecoder(64);
    const chunk = Buffer.from('{"a":1');
    d.push(chunk);
    chunk.fill(0x20);
    assert.deepEqual(lines(d.push(Buffer.from('}\n'))), ['{"a":1}']);
  });
});

describe('encode', () => {
  it('writes one line per message even when strings contain newlines', () => {
    const line = encode({ s: 'a\nb' });
    assert.equal(line.indexOf('\n'), line.length - 1);
    assert.deepEqual(JSON.parse(line), { s: 'a\nb' });
  });
});
