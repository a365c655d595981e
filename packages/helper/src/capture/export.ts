/**
 * `exchanges.export`'s writer: walks the buffer and writes HAR 1.2 or JSON Lines to a sink, one
 * exchange at a time, in chunks of bounded size. Memory is bounded by one exchange's document
 * (headers plus two captured bodies in text or base64, and for HAR their decoded copies, each at
 * most DECODED_BODY_MAX) plus one chunk, never the whole document:
 * the id list is snapshot at the start, each id is looked up when reached (those evicted or
 * cleared meanwhile are skipped), and each chunk waits for the sink (the socket draining) before
 * the next exchange is read. It does no I/O itself; the sink does.
 */
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { HAR_TAIL, harDecoded, harEntry, harHead, matchesFilter, type Exchange, type ExchangeFilter, type ExportFormat, type HarCreator, type HarDecodedBody, type HarItem, type Headers } from '@tproxy/protocol';
import { decodeBody } from './decode.js';
import type { LiveExchange } from './live-exchange.js';

/** Where the document goes: `write` resolves once the piece was handed on (e.g. the socket drained). */
export interface ExportSink {
  write(data: string): Promise<void>;
}

/** The part of the store an export reads. */
export interface ExportSource {
  ids(): number[];
  get(id: number): LiveExchange | undefined;
}

export interface ExportOptions {
  format: ExportFormat;
  filter?: ExchangeFilter | undefined;
  includeBodies: boolean;
  creator: HarCreator;
  /**
   * Most UTF-16 code units per chunk. JSON escaping can grow a character to 6 bytes on the wire,
   * so the default keeps a chunk notification well under MAX_MESSAGE_BYTES (4 MiB).
   */
  chunkChars?: number;
  /** Exchanges written between two turns of the event loop, so a fast reader cannot starve capture. */
  yieldEvery?: number;
}

export interface ExportTotals {
  count: number;
  bytes: number;
  chunks: number;
}

export const DEFAULT_EXPORT_CHUNK_CHARS = 64 * 1024;
const DEFAULT_YIELD_EVERY = 16;

/** Accumulates text and hands it to the sink in pieces of at most `max` code units. */
class Chunker {
  private pending = '';
  bytes = 0;
  chunks = 0;

  constructor(
    private readonly sink: ExportSink,
    private readonly max: number,
  ) {}

  async push(text: string): Promise<void> {
    this.pending += text;
    while (this.pending.length >= this.max) await this.flush(this.max);
  }

  async end(): Promise<void> {
    while (this.pending.length > 0) await this.flush(this.max);
  }

  private async flush(max: number): Promise<void> {
    let n = Math.min(max, this.pending.length);
    // Never split a surrogate pair: each chunk must be valid on its own as a JSON string.
    const last = this.pending.charCodeAt(n - 1);
    if (n < this.pending.length && last >= 0xd800 && last <= 0xdbff && n > 1) n--;
    const piece = this.pending.slice(0, n);
    this.pending = this.pending.slice(n);
    this.bytes += Buffer.byteLength(piece, 'utf8');
    this.chunks++;
    await this.sink.write(piece);
  }
}

/**
 * One JSON Lines record: the `exchanges.get` result shape, or just `{ exchange }` without bodies.
 * The bodies stay the raw wire bytes (base64), still compressed: JSON Lines is the lossless format,
 * from which the exact bytes (and any decoding) can be recovered; a decoded copy would double the
 * size and lose what was actually sent. HAR, a viewing format, gets the decoded text instead.
 */
function jsonlRecord(ex: LiveExchange, exchange: Exchange, includeBodies: boolean): string {
  const record = includeBodies
    ? { exchange, requestBody: ex.requestBody.bytes().toString('base64'), responseBody: ex.responseBody.bytes().toString('base64') }
    : { exchange };
  return `${JSON.stringify(record)}\n`;
}

/**
 * A body with its Content-Encoding undone, as `exchanges.get` decodes it and `harItemFromDetail`
 * turns it into a HarItem, so the helper's HAR and the client-built one agree. Undefined when there
 * is nothing to decode or decoding failed: a failed decoding leaves the wire bytes as the best text.
 */
async function decodedForHar(bytes: Buffer, headers: Headers, truncated: boolean): Promise<HarDecodedBody | undefined> {
  return harDecoded(await decodeBody(bytes, headers, truncated));
}

async function harRecord(ex: LiveExchange, exchange: Exchange, includeBodies: boolean): Promise<string> {
  if (!includeBodies) return JSON.stringify(harEntry({ exchange, missingBodyNote: 'bodies left out of this export (includeBodies: false)' }));
  const requestBody = ex.requestBody.bytes();
  const responseBody = ex.responseBody.bytes();
  const res = exchange.response;
  const decodedRequestBody = await decodedForHar(requestBody, exchange.request.headers, exchange.request.body.truncated);
  const decodedResponseBody = res ? await decodedForHar(responseBody, res.headers, res.body.truncated) : undefined;
  const item: HarItem = {
    exchange,
    requestBody,
    responseBody,
    ...(decodedRequestBody ? { decodedRequestBody } : {}),
    ...(decodedResponseBody ? { decodedResponseBody } : {}),
  };
  return JSON.stringify(harEntry(item));
}

/** Writes the whole export to `sink`; resolves with the totals, rejects with the sink's error. */
export async function writeExport(source: ExportSource, opts: ExportOptions, sink: ExportSink): Promise<ExportTotals> {
  const out = new Chunker(sink, Math.max(16, opts.chunkChars ?? DEFAULT_EXPORT_CHUNK_CHARS));
  const yieldEvery = opts.yieldEvery ?? DEFAULT_YIELD_EVERY;
  const har = opts.format === 'har';
  let count = 0;
  let visited = 0;
  if (har) await out.push(harHead(opts.creator));
  for (const id of source.ids()) {
    if (++visited % yieldEvery === 0) await yieldToLoop();
    const ex = source.get(id);
    if (!ex) continue; // evicted or cleared since the export started
    const exchange = ex.snapshot();
    if (!matchesFilter(exchange, opts.filter)) continue;
    const text = har ? await harRecord(ex, exchange, opts.includeBodies) : jsonlRecord(ex, exchange, opts.includeBodies);
    await out.push(har && count > 0 ? `,${text}` : text);
    count++;
  }
  if (har) await out.push(HAR_TAIL);
  await out.end();
  return { count, bytes: out.bytes, chunks: out.chunks };
}
