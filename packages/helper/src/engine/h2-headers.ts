/**
 * Pure header handling for the HTTP/2 relay: splitting pseudo-headers from fields, dropping the
 * connection-specific fields HTTP/2 forbids (RFC 9113 §8.2.2), turning Node's flat rawHeaders into
 * the header object its http2 API sends (repeated fields stay separate, wire order kept), and the
 * RST_STREAM / GOAWAY error code names of RFC 9113 §7.
 */
import type { OutgoingHttpHeaders } from 'node:http2';

/** Fields that are meaningless or forbidden in HTTP/2 (RFC 9113 §8.2.2); `te` is allowed only as `trailers`. */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

export interface SplitHeaders {
  /** Pseudo-headers (`:method`, `:path`, `:authority`, `:scheme`, `:status`, `:protocol`) by name; the first of each wins. */
  pseudo: Record<string, string>;
  /** The regular fields, flat [name, value, ...], in wire order. */
  fields: string[];
}

export function splitPseudo(raw: readonly string[]): SplitHeaders {
  const pseudo: Record<string, string> = {};
  const fields: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.startsWith(':')) pseudo[name] ??= raw[i + 1]!;
    else fields.push(name, raw[i + 1]!);
  }
  return { pseudo, fields };
}

/** Drops connection-specific fields and a `te` other than `trailers` (which gRPC requires us to keep). */
export function forwardableFields(fields: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i]!.toLowerCase();
    const value = fields[i + 1]!;
    if (CONNECTION_SPECIFIC.has(name)) continue;
    if (name === 'te' && value.trim().toLowerCase() !== 'trailers') continue;
    out.push(name, value);
  }
  return out;
}

/**
 * Flat [name, value, ...] → Node's header object. A repeated name becomes an array, which Node sends
 * as separate fields in that order (set-cookie, cookie crumbs), never joined with commas.
 */
export function toHeaderObject(pseudo: Record<string, string | number>, fields: readonly string[]): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { ...pseudo };
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i]!;
    const value = fields[i + 1]!;
    const prev = out[name];
    if (prev === undefined) out[name] = value;
    else if (Array.isArray(prev)) prev.push(value);
    else out[name] = [String(prev), value];
  }
  return out;
}

/** RFC 9113 §7 error codes by value. */
const ERROR_NAMES = [
  'NO_ERROR',
  'PROTOCOL_ERROR',
  'INTERNAL_ERROR',
  'FLOW_CONTROL_ERROR',
  'SETTINGS_TIMEOUT',
  'STREAM_CLOSED',
  'FRAME_SIZE_ERROR',
  'REFUSED_STREAM',
  'CANCEL',
  'COMPRESSION_ERROR',
  'CONNECT_ERROR',
  'ENHANCE_YOUR_CALM',
  'INADEQUATE_SECURITY',
  'HTTP_1_1_REQUIRED',
];

/** `8` → `CANCEL`; an unknown code (allowed on the wire) → `0x…`. */
export function h2ErrorName(code: number): string {
  return ERROR_NAMES[code] ?? `0x${code.toString(16)}`;
}
