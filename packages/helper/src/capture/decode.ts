/**
 * Undoes a captured body's Content-Encoding for display (exchanges.get), never for the wire: the
 * relay passes the bytes untouched. gzip, deflate (zlib-wrapped or raw, as servers send both) and br
 * come from node:zlib, zstd from fzstd (Node 20 has none). Stacked codings (`gzip, br`) are undone
 * last-applied first. Output is capped, so a compression bomb costs at most the cap; a truncated
 * capture decodes as far as it goes; an unknown coding or corrupt data is reported, never thrown.
 */
import type { Transform } from 'node:stream';
import zlib from 'node:zlib';
import { Decompress as ZstdDecompress } from 'fzstd';
import type { DecodedBody, Headers } from '@tproxy/protocol';

/** Most decoded bytes kept per body: about what a screen or a HAR reader wants, and far below the RPC line limit. */
export const DECODED_BODY_MAX = 1024 * 1024;

/**
 * Largest zstd window we allocate. RFC 9659 caps the window of the `zstd` content coding at 8 MB;
 * a frame header may claim up to 2 GiB, and fzstd would allocate it before decoding a byte.
 */
export const ZSTD_MAX_WINDOW = 8 * 1024 * 1024;

interface Step {
  bytes: Buffer;
  /** Output stopped before the input's end: at the cap, or because the input itself was cut. */
  truncated: boolean;
  error?: string;
}

/** The codings listed in a Content-Encoding value, lower case, `identity` dropped. */
export function parseContentEncoding(value: string | undefined): string[] {
  if (!value) return [];
  return value
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== 'identity');
}

/**
 * Decodes `bytes` as the message's headers say. Undefined when there is nothing to decode (no
 * coding, or no captured bytes). `inputTruncated`: the capture kept only the first part of the body.
 */
export async function decodeBody(bytes: Buffer, headers: Headers, inputTruncated: boolean, max = DECODED_BODY_MAX): Promise<DecodedBody | undefined> {
  const declared = headers
    .filter(([n]) => n.toLowerCase() === 'content-encoding')
    .map(([, v]) => v)
    .join(', ');
  const codings = parseContentEncoding(declared);
  if (codings.length === 0 || bytes.length === 0) return undefined;
  let step: Step = { bytes, truncated: inputTruncated };
  for (const coding of [...codings].reverse()) {
    step = await decodeOne(coding, step.bytes, step.truncated, max);
    if (step.error) break;
  }
  return {
    encoding: codings.join(', '),
    base64: step.bytes.toString('base64'),
    size: step.bytes.length,
    truncated: step.truncated,
    ...(step.error ? { error: step.error } : {}),
  };
}

async function decodeOne(coding: string, input: Buffer, truncated: boolean, max: number): Promise<Step> {
  // Cut input: flush what decodes instead of failing on the missing end.
  const zopts = { finishFlush: truncated ? zlib.constants.Z_SYNC_FLUSH : zlib.constants.Z_FINISH };
  switch (coding) {
    case 'gzip':
    case 'x-gzip':
      return drain(zlib.createGunzip(zopts), input, truncated, max, coding);
    case 'deflate':
      // RFC 9110 says zlib-wrapped; some servers send raw deflate. A zlib header is 2 bytes whose
      // big-endian value is a multiple of 31 with method 8.
      return isZlibHeader(input) ? drain(zlib.createInflate(zopts), input, truncated, max, coding) : drain(zlib.createInflateRaw(zopts), input, truncated, max, coding);
    case 'br':
      return drain(
        zlib.createBrotliDecompress({ finishFlush: truncated ? zlib.constants.BROTLI_OPERATION_FLUSH : zlib.constants.BROTLI_OPERATION_FINISH }),
        input,
        truncated,
        max,
        coding,
      );
    case 'zstd':
      return zstd(input, truncated, max);
    default:
      return { bytes: input, truncated, error: `unsupported content-encoding '${coding}': shown as captured` };
  }
}

function isZlibHeader(b: Buffer): boolean {
  return b.length >= 2 && (b[0]! & 0x0f) === 8 && ((b[0]! << 8) | b[1]!) % 31 === 0;
}

/** Runs `input` through a zlib stream, keeping at most `max` output bytes. */
function drain(z: Transform, input: Buffer, truncated: boolean, max: number, coding: string): Promise<Step> {
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (step: Step) => {
      if (settled) return;
      settled = true;
      z.destroy();
      resolve(step);
    };
    z.on('data', (chunk: Buffer) => {
      const room = max - size;
      out.push(chunk.length > room ? chunk.subarray(0, room) : chunk);
      size += Math.min(room, chunk.length);
      // At the cap: stop inflating at once, whatever the rest of the input holds.
      if (size >= max) settle({ bytes: Buffer.concat(out), truncated: true });
    });
    z.on('end', () => settle({ bytes: Buffer.concat(out), truncated }));
    z.on('error', (err: Error) => settle({ bytes: Buffer.concat(out), truncated: true, error: `${coding} decoding failed: ${err.message}` }));
    z.end(input);
  });
}

/** Stops fzstd from the inside once the cap is reached (its push loop has no other exit). */
class CapReached extends Error {}

function zstd(input: Buffer, truncated: boolean, max: number): Step {
  const windowProblem = zstdWindowProblem(input);
  if (windowProblem) return { bytes: Buffer.alloc(0), truncated: true, error: `zstd decoding refused: ${windowProblem}` };
  const out: Buffer[] = [];
  let size = 0;
  const d = new ZstdDecompress((chunk) => {
    const room = max - size;
    out.push(Buffer.from(chunk.subarray(0, Math.min(room, chunk.length))));
    size += Math.min(room, chunk.length);
    if (size >= max) throw new CapReached();
  });
  try {
    // A cut capture cannot be `final`: fzstd would fail on the missing end instead of giving what it has.
    d.push(input, !truncated);
    return { bytes: Buffer.concat(out), truncated };
  } catch (err) {
    if (err instanceof CapReached) return { bytes: Buffer.concat(out), truncated: true };
    return { bytes: Buffer.concat(out), truncated: true, error: `zstd decoding failed: ${(err as Error).message}` };
  }
}

const ZSTD_MAGIC = 0xfd2fb528;

/**
 * Walks the frames (RFC 8878 §3.1) as far as the bytes go and names the first whose window (or,
 * single-segment, content size) exceeds ZSTD_MAX_WINDOW; undefined when all are acceptable. Only
 * headers and block headers are read, so this costs nothing next to decoding.
 */
export function zstdWindowProblem(b: Uint8Array): string | undefined {
  let at = 0;
  while (at + 4 <= b.length) {
    const magic = (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
    if ((magic & 0xfffffff0) === 0x184d2a50) {
      if (at + 8 > b.length) return undefined;
      const skip = (b[at + 4]! | (b[at + 5]! << 8) | (b[at + 6]! << 16) | (b[at + 7]! << 24)) >>> 0;
      at += 8 + skip;
      continue;
    }
    if (magic !== ZSTD_MAGIC) return undefined; // not zstd: fzstd reports it
    if (at + 6 > b.length) return undefined;
    const fhd = b[at + 4]!;
    const singleSegment = (fhd >> 5) & 1;
    const fcsFlag = fhd >> 6;
    const dictBytes = [0, 1, 2, 4][fhd & 3]!;
    const fcsBytes = fcsFlag === 0 ? singleSegment : 1 << fcsFlag;
    let p = at + 5;
    let window = 0;
    if (!singleSegment) {
      const wd = b[p]!;
      const base = 2 ** (10 + (wd >> 3));
      window = base + (base / 8) * (wd & 7);
      p += 1;
    }
    p += dictBytes;
    if (p + fcsBytes > b.length) return undefined;
    let fcs = 0;
    for (let i = fcsBytes - 1; i >= 0; i--) fcs = fcs * 256 + b[p + i]!;
    if (fcsBytes === 2) fcs += 256;
    p += fcsBytes;
    if (singleSegment) window = fcs;
    if (window > ZSTD_MAX_WINDOW) return `frame needs a ${window}-byte window, over the ${ZSTD_MAX_WINDOW}-byte limit of the zstd content coding (RFC 9659)`;
    // Blocks: 3-byte header (last, type, size); RLE blocks hold one byte, reserved type is invalid.
    for (;;) {
      if (p + 3 > b.length) return undefined;
      const h = b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16);
      const last = h & 1;
      const type = (h >> 1) & 3;
      if (type === 3) return undefined; // fzstd reports the reserved block type
      p += 3 + (type === 1 ? 1 : h >>> 3);
      if (last) break;
    }
    if ((fhd >> 2) & 1) p += 4; // content checksum
    at = p;
  }
  return undefined;
}
