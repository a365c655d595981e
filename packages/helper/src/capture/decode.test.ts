import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import zlib from 'node:zlib';
import { DECODED_BODY_MAX, ZSTD_MAX_WINDOW, decodeBody, parseContentEncoding, zstdWindowProblem } from './decode.js';

const TEXT = `{"hello":"world","items":[${Array.from({ length: 400 }, (_, i) => `"item ${i}"`).join(',')}]}`;
/**
 * `zstd -19` of 'zstd body: ' + 'tproxy decodes zstd. ' × 500 + 'end\n' (10515 bytes): a real
 * compressed frame with a content checksum, made by the zstd CLI (Node 20 cannot compress zstd).
 */
export const ZSTD_FIXTURE = Buffer.from('KLUv/WQTKGUBADQCenN0ZCBib2R5OiB0cHJveHkgZGVjb2RlcyB6c3RkLmVuZAoBALcj5KcTEqKWiw==', 'base64');
const ZSTD_TEXT = `zstd body: ${'tproxy decodes zstd. '.repeat(500)}end\n`;

const ce = (v: string): [string, string][] => [['Content-Encoding', v]];
const text = (b64: string) => Buffer.from(b64, 'base64').toString('utf8');

describe('decodeBody', () => {
  it('undoes each coding: gzip, x-gzip, deflate (zlib and raw), br, zstd', async () => {
    const src = Buffer.from(TEXT);
    const cases: [string, Buffer, string][] = [
      ['gzip', zlib.gzipSync(src), TEXT],
      ['x-gzip', zlib.gzipSync(src), TEXT],
      ['deflate', zlib.deflateSync(src), TEXT],
      ['deflate', zlib.deflateRawSync(src), TEXT],
      ['br', zlib.brotliCompressSync(src), TEXT],
      ['zstd', ZSTD_FIXTURE, ZSTD_TEXT],
    ];
    for (const [coding, bytes, expected] of cases) {
      const d = await decodeBody(bytes, ce(coding.toUpperCase()), false);
      assert.ok(d, coding);
      assert.equal(d.error, undefined, `${coding}: ${d.error}`);
      assert.equal(d.encoding, coding);
      assert.equal(text(d.base64), expected, coding);
      assert.equal(d.size, Buffer.byteLength(expected));
      assert.equal(d.truncated, false);
    }
  });

  it('undoes stacked codings last-applied first, also across two headers', async () => {
    const bytes = zlib.brotliCompressSync(zlib.gzipSync(Buffer.from(TEXT)));
    const d = await decodeBody(bytes, ce('gzip, identity, br'), false);
    assert.equal(d?.encoding, 'gzip, br');
    assert.equal(text(d!.base64), TEXT);
    const two = await decodeBody(bytes, [['content-encoding', 'gzip'], ['Content-Encoding', 'br']], false);
    assert.equal(text(two!.base64), TEXT);
  });

  it('nothing to do without a coding, with identity, or without bytes', async () => {
    assert.equal(await decodeBody(Buffer.from('x'), [], false), undefined);
    assert.equal(await decodeBody(Buffer.from('x'), ce('identity'), false), undefined);
    assert.equal(await decodeBody(Buffer.alloc(0), ce('gzip'), false), undefined);
  });

  it('a truncated capture decodes as far as it goes, for every coding', async () => {
    const big = Buffer.from(Array.from({ length: 3000 }, (_, i) => `line ${i} ${Math.sin(i)}\n`).join(''));
    for (const [coding, bytes] of [
      ['gzip', zlib.gzipSync(big)],
      ['deflate', zlib.deflateSync(big)],
      ['br', zlib.brotliCompressSync(big)],
    ] as const) {
      const cut = bytes.subarray(0, Math.floor(bytes.length / 2));
      const d = await decodeBody(cut, ce(coding), true);
      assert.equal(d?.error, undefined, `${coding}: ${d?.error}`);
      assert.equal(d!.truncated, true);
      const out = Buffer.from(d!.base64, 'base64');
      assert.ok(out.length > 1000, `${coding}: ${out.length} bytes`);
      assert.deepEqual(out, big.subarray(0, out.length), `${coding}: a prefix of the original`);
    }
    const z = await decodeBody(ZSTD_FIXTURE.subarray(0, 30), ce('zstd'), true);
    assert.equal(z?.truncated, true);
    assert.equal(z?.error, undefined);
  });

  it('a body that ends early without the capture being truncated is an error, with what decoded', async () => {
    const bytes = zlib.gzipSync(Buffer.from(TEXT));
    const d = await decodeBody(bytes.subarray(0, bytes.length - 10), ce('gzip'), false);
    assert.match(d!.error!, /gzip decoding failed/);
    assert.equal(d!.truncated, true);
  });

  it('caps the output: a gzip, br and zstd bomb yields the cap and stops', async () => {
    const zeros = Buffer.alloc(64 * 1024 * 1024);
    for (const [coding, bytes] of [
      ['gzip', zlib.gzipSync(zeros)],
      ['br', zlib.brotliCompressSync(zeros)],
    ] as const) {
      const started = performance.now();
      const d = await decodeBody(bytes, ce(coding), false);
      assert.equal(d!.size, DECODED_BODY_MAX, coding);
      assert.equal(d!.truncated, true);
      assert.equal(d!.error, undefined);
      assert.ok(performance.now() - started < 2000, `${coding} took ${performance.now() - started} ms`);
    }
    // zstd: a frame of 200 RLE blocks, each 128 KiB of 'A' (25 MiB from ~800 bytes).
    const blocks = Array.from({ length: 200 }, (_, i) => {
      const h = ((128 * 1024) << 3) | (1 << 1) | (i === 199 ? 1 : 0);
      return Buffer.from([h & 0xff, (h >> 8) & 0xff, (h >> 16) & 0xff, 0x41]);
    });
    // Frame header: descriptor 0 (no single segment, no checksum), window descriptor 2^(10+7) = 128 KiB.
    const frame = Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 7 << 3]), ...blocks]);
    const d = await decodeBody(frame, ce('zstd'), false, 1024 * 1024);
    assert.equal(d!.size, 1024 * 1024);
    assert.equal(d!.truncated, true);
    assert.equal(Buffer.from(d!.base64, 'base64').every((b) => b === 0x41), true);
  });

  it('refuses a zstd frame that claims a window over the RFC 9659 limit before allocating it', async () => {
    const frame = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 30 << 3, 0x01, 0x00, 0x00]); // 1 GiB window
    assert.match(zstdWindowProblem(frame)!, /window/);
    const d = await decodeBody(frame, ce('zstd'), false);
    assert.match(d!.error!, /refused.*RFC 9659/);
    assert.equal(zstdWindowProblem(ZSTD_FIXTURE), undefined);
    assert.ok(ZSTD_MAX_WINDOW === 8 * 1024 * 1024);
  });

  it('a wrong label or an unknown coding is reported, not thrown, and nothing is made up', async () => {
    const plain = Buffer.from('not compressed at all');
    for (const coding of ['gzip', 'deflate', 'br', 'zstd']) {
      const d = await decodeBody(plain, ce(coding), false);
      assert.ok(d?.error, `${coding} should fail`);
      assert.match(d.error, new RegExp(`^${coding} decoding failed`));
    }
    const gz = await decodeBody(zlib.gzipSync(plain), ce('br'), false);
    assert.match(gz!.error!, /br decoding failed/);
    const unknown = await decodeBody(plain, ce('compress'), false);
    assert.match(unknown!.error!, /unsupported content-encoding 'compress'/);
    assert.equal(text(unknown!.base64), plain.toString()); // shown as captured
  });
});

describe('parseContentEncoding', () => {
  it('lists codings lower case, without identity and empty items', () => {
    assert.deepEqual(parseContentEncoding(' GZip ,, identity, br '), ['gzip', 'br']);
    assert.deepEqual(parseContentEncoding(undefined), []);
  });
});
