/**
 * Turns a captured body into display lines for the detail view: JSON indented, text wrapped, binary
 * as a hex summary (first bytes + length), `text/event-stream` as its events (the ones the helper
 * captured, with their times, else parsed from the body). Compressed bodies are shown as the helper
 * decoded them (exchanges.get `decoded*Body`: gzip, deflate, br, zstd); without that (an older
 * helper) gzip, deflate and br are decoded here, even when the capture was truncated.
 * Every line is escaped: a body is untrusted and must not drive the terminal. Pure: no I/O.
 */
import { brotliDecompressSync, constants, inflateSync, gunzipSync } from 'node:zlib';
import type { BodyInfo, DecodedBody, Headers, SseEvent as CapturedSseEvent, SseInfo } from '@tproxy/protocol';
import { decodeText } from '../shared/bytes.js';
import { escapeInline, escapeMultiline } from '../shared/escape.js';
import { formatBytes } from '../shared/units.js';
import { charWidth, formatDuration } from './format.js';

export type BodyKind = 'none' | 'json' | 'text' | 'binary' | 'sse';

export interface BodyView {
  readonly kind: BodyKind;
  /** One line about the body: size, truncation, type, decoding. */
  readonly summary: string;
  /** Display lines, escaped and wrapped to the requested width. */
  readonly lines: readonly string[];
}

export interface SseEvent {
  /** `event:` field; absent means the default `message`. */
  readonly event?: string;
  readonly id?: string;
  /** `data:` lines joined with \n. */
  readonly data: string;
  readonly retry?: number;
  /** False for the last block when the stream (or capture) ended mid-event. */
  readonly complete: boolean;
}

/** Decoded bodies are capped so a compression bomb cannot exhaust memory. */
const MAX_DECODED_BYTES = 8 * 1024 * 1024;
/** Bytes shown as hex for a binary body. */
const HEX_PREVIEW_BYTES = 64;
/** Tab stop used when expanding tabs; Ink measures a tab as zero cells. */
const TAB = '    ';

/** First value of header `name` (case-insensitive). */
export function headerValue(headers: Headers, name: string): string | undefined {
  const lower = name.toLowerCase();
  return headers.find(([n]) => n.toLowerCase() === lower)?.[1];
}

/** Splits one line into pieces of at most `width` cells; an empty line stays one empty piece. */
export function wrapLine(line: string, width: number): string[] {
  if (width <= 0) return [line];
  const out: string[] = [];
  let cur = '';
  let used = 0;
  for (const ch of line) {
    const w = charWidth(ch.codePointAt(0)!);
    if (used + w > width && cur !== '') {
      out.push(cur);
      cur = '';
      used = 0;
    }
    cur += ch;
    used += w;
  }
  out.push(cur);
  return out;
}

/** Escapes multi-line text, expands tabs, and wraps every line to `width`. */
export function wrapText(text: string, width: number): string[] {
  const body = escapeMultiline(text).replace(/\t/g, TAB);
  const lines = body.endsWith('\n') ? body.slice(0, -1).split('\n') : body.split('\n');
  return lines.flatMap((l) => wrapLine(l, width));
}

/** `JSON.stringify(…, null, 2)` of the parsed text, or null when it is not JSON. */
export function prettyJson(text: string): string | null {
  const trimmed = text.trim();
  if (!/^[[{"]|^-?\d|^(true|false|null)$/.test(trimmed)) return null;
  try {
    return JSON.stringify(JSON.parse(trimmed), null, 2);
  } catch {
    return null;
  }
}

/**
 * Server-sent events (HTML Living Standard §9.2.6): blocks separated by a blank line; `field: value`
 * lines, one optional space after the colon; lines starting with `:` are comments.
 */
export function parseSse(text: string): SseEvent[] {
  const normalized = text.replace(/\r\n?/g, '\n');
  const blocks = normalized.split(/\n\n/);
  const endsClean = normalized.endsWith('\n\n') || normalized === '';
  const events: SseEvent[] = [];
  blocks.forEach((block, i) => {
    if (block.trim() === '') return;
    const data: string[] = [];
    let event: string | undefined;
    let id: string | undefined;
    let retry: number | undefined;
    for (const line of block.split('\n')) {
      if (line === '' || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon === -1 ? line : line.slice(0, colon);
      const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'data') data.push(value);
      else if (field === 'event') event = value;
      else if (field === 'id') id = value;
      else if (field === 'retry' && /^\d+$/.test(value)) retry = Number(value);
    }
    const complete = i < blocks.length - 1 || endsClean;
    events.push({ data: data.join('\n'), complete, ...(event !== undefined ? { event } : {}), ...(id !== undefined ? { id } : {}), ...(retry !== undefined ? { retry } : {}) });
  });
  return events;
}

/** `89 50 4e 47 0d 0a 1a 0a …` for the first `max` bytes. */
export function hexPreview(bytes: Uint8Array, max = HEX_PREVIEW_BYTES): string {
  const shown = [...bytes.subarray(0, max)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
  return bytes.length > max ? `${shown} …` : shown;
}

/**
 * Undoes a Content-Encoding. A truncated capture still decodes as far as it goes (sync flush);
 * unknown or failing encodings return null and the body is shown as captured.
 */
export function decodeContent(bytes: Uint8Array, encoding: string | undefined): { bytes: Uint8Array; encoding: string } | null {
  const enc = encoding?.trim().toLowerCase();
  if (!enc || enc === 'identity' || bytes.length === 0) return null;
  try {
    const opts = { maxOutputLength: MAX_DECODED_BYTES };
    if (enc === 'gzip' || enc === 'x-gzip') return { bytes: gunzipSync(bytes, { ...opts, finishFlush: constants.Z_SYNC_FLUSH }), encoding: enc };
    if (enc === 'deflate') return { bytes: inflateSync(bytes, { ...opts, finishFlush: constants.Z_SYNC_FLUSH }), encoding: enc };
    if (enc === 'br') return { bytes: brotliDecompressSync(bytes, { ...opts, finishFlush: constants.BROTLI_OPERATION_FLUSH }), encoding: enc };
  } catch {
    return null;
  }
  return null;
}

function sseLines(events: readonly SseEvent[], width: number): string[] {
  const lines: string[] = [];
  events.forEach((ev, i) => {
    const facts = [ev.event ?? 'message', ...(ev.id !== undefined ? [`id ${ev.id}`] : []), ...(ev.retry !== undefined ? [`retry ${ev.retry}ms`] : [])];
    lines.push(...wrapLine(`[${i + 1}] ${escapeInline(facts.join(' · '))}${ev.complete ? '' : ' (incomplete)'}`, width));
    for (const l of wrapText(ev.data, Math.max(1, width - 4))) lines.push(`    ${l}`);
  });
  return lines;
}

/** The helper's captured events: offsets from the exchange start, `seq` numbering from 0. */
function capturedSseLines(events: readonly CapturedSseEvent[], width: number): string[] {
  const lines: string[] = [];
  for (const ev of events) {
    const facts = [ev.event ?? 'message', ...(ev.id !== undefined ? [`id ${ev.id}`] : []), ...(ev.retry !== undefined ? [`retry ${ev.retry}ms`] : [])];
    lines.push(...wrapLine(`[${ev.seq + 1}] +${formatDuration(ev.t)} ${escapeInline(facts.join(' · '))}${ev.truncated ? ' (cut)' : ''}`, width));
    for (const l of wrapText(ev.data, Math.max(1, width - 4))) lines.push(`    ${l}`);
  }
  return lines;
}

export interface BodyViewOptions {
  /** Headers of the message the body belongs to (Content-Type, Content-Encoding). */
  readonly headers: Headers;
  readonly info: BodyInfo;
  /** Wrap width in cells. */
  readonly width: number;
  /** The body as the helper decoded it (exchanges.get), when the message had a Content-Encoding. */
  readonly decoded?: DecodedBody;
  /** The events the helper captured (exchanges.get `sseEvents`) and its counts (`response.sse`). */
  readonly sse?: { readonly events: readonly CapturedSseEvent[]; readonly info?: SseInfo };
}

/** The bytes to show and the note about decoding: the helper's decoding, else our own. */
function shownBytes(captured: Uint8Array, headers: Headers, decoded: DecodedBody | undefined): { bytes: Uint8Array; note?: string } {
  if (decoded) {
    if (decoded.error !== undefined) return { bytes: captured, note: `not decoded: ${escapeInline(decoded.error)}` };
    const partial = decoded.truncated ? ' (partial)' : '';
    return { bytes: new Uint8Array(Buffer.from(decoded.base64, 'base64')), note: `${escapeInline(decoded.encoding)}-decoded ${formatBytes(decoded.size)}${partial}` };
  }
  const local = decodeContent(captured, headerValue(headers, 'content-encoding'));
  return local ? { bytes: local.bytes, note: `${escapeInline(local.encoding)}-decoded ${formatBytes(local.bytes.length)}` } : { bytes: captured };
}

export function bodyView(captured: Uint8Array, { headers, info, width, decoded, sse }: BodyViewOptions): BodyView {
  if (info.size === 0 && captured.length === 0) return { kind: 'none', summary: 'no body', lines: [] };
  const notes = [formatBytes(info.size)];
  if (info.truncated) notes.push(`first ${formatBytes(info.captured)} captured`);
  const contentType = headerValue(headers, 'content-type')?.toLowerCase() ?? '';
  if (contentType) notes.push(escapeInline(contentType.split(';')[0]!.trim()));
  const shown = shownBytes(captured, headers, decoded);
  if (shown.note) notes.push(shown.note);
  const bytes = shown.bytes;
  const summary = notes.join(' · ');
  if (sse && sse.events.length > 0) {
    // The helper saw the whole stream, past the body capture limit, and knows when each event came.
    const count = sse.info?.count ?? sse.events.length;
    const kept = count > sse.events.length ? ` (first ${sse.events.length} kept)` : '';
    return { kind: 'sse', summary: `${summary} · ${count} event${count === 1 ? '' : 's'}${kept}`, lines: capturedSseLines(sse.events, width) };
  }
  const text = decodeText(bytes);
  if (text === null) {
    return {
      kind: 'binary',
      summary: `${summary} · binary`,
      lines: [`${bytes.length} bytes; first ${Math.min(bytes.length, HEX_PREVIEW_BYTES)} as hex:`, ...wrapLine(hexPreview(bytes), width)],
    };
  }
  if (contentType.startsWith('text/event-stream')) {
    const events = parseSse(text);
    return { kind: 'sse', summary: `${summary} · ${events.length} event${events.length === 1 ? '' : 's'}`, lines: sseLines(events, width) };
  }
  const pretty = /json/.test(contentType) || contentType === '' ? prettyJson(text) : null;
  if (pretty !== null) return { kind: 'json', summary, lines: wrapText(pretty, width) };
  return { kind: 'text', summary, lines: wrapText(text, width) };
}
