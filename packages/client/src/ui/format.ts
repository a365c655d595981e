/**
 * What each list cell and header fact says, as pure functions: which columns fit a width, the text
 * of every cell (escaped: exchanges are untrusted), status colours, durations and the proportional
 * timing bar. Components only lay these out; nothing here knows about Ink or React.
 */
import type { Exchange, ExchangeErrorKind, Timing } from '@tproxy/protocol';
import { escapeInline } from '../shared/escape.js';
import { formatProcessShort } from '../shared/process.js';
import { formatBytes, formatClock } from '../shared/units.js';
import { splitUrl } from './url.js';

export type ColumnKey = 'time' | 'process' | 'method' | 'host' | 'path' | 'status' | 'protocol' | 'size' | 'duration';

export interface Column {
  readonly key: ColumnKey;
  readonly title: string;
  readonly width: number;
  readonly align: 'left' | 'right';
}

/** Columns are separated by one space. */
export const COLUMN_GAP = 1;

/**
 * Below these widths a column is dropped (process, protocol) or shortened (time without ms). The
 * process column is only kept where it fits `command[pid]` with a short command and a 6-digit pid
 * (longer ones are cut with …).
 */
const DROP_PROCESS_BELOW = 110;
const DROP_PROTOCOL_BELOW = 96;
const SHORT_TIME_BELOW = 90;
/** Share of the flexible space (host + path) that the host gets, and its bounds. */
const HOST_SHARE = 0.4;
const HOST_MIN = 8;
const HOST_MAX = 32;
/** Host plus path need at least this much to be worth showing. */
const FLEX_MIN = 20;

/**
 * The columns for a terminal `width`: fixed ones first, then host and path share the rest, path
 * getting what host does not. The widths plus gaps add up to exactly `width` (at least 40).
 */
export function columnsFor(width: number): Column[] {
  const w = Math.max(40, Math.floor(width));
  let fixed: Column[] = [
    { key: 'time', title: 'TIME', width: w < SHORT_TIME_BELOW ? 8 : 12, align: 'left' },
    ...(w >= DROP_PROCESS_BELOW ? [{ key: 'process', title: 'PROCESS', width: 14, align: 'left' } as const] : []),
    { key: 'method', title: 'METHOD', width: 7, align: 'left' },
    { key: 'status', title: 'STATUS', width: 8, align: 'left' },
    ...(w >= DROP_PROTOCOL_BELOW ? [{ key: 'protocol', title: 'PROTO', width: 8, align: 'left' } as const] : []),
    { key: 'size', title: 'SIZE', width: 8, align: 'right' },
    { key: 'duration', title: 'DUR', width: 6, align: 'right' },
  ];
  const flexFor = (cols: readonly Column[]) => w - cols.reduce((sum, c) => sum + c.width, 0) - COLUMN_GAP * (cols.length + 1);
  // Very narrow terminals: give up size, then duration, before host and path get unreadable.
  for (const drop of ['size', 'duration'] as const) {
    if (flexFor(fixed) >= FLEX_MIN) break;
    fixed = fixed.filter((c) => c.key !== drop);
  }
  const flex = flexFor(fixed);
  const host = Math.min(HOST_MAX, Math.max(HOST_MIN, Math.floor(flex * HOST_SHARE)));
  const path = Math.max(1, flex - host);
  const byKey = new Map(fixed.map((c) => [c.key, c]));
  const order: ColumnKey[] = ['time', 'process', 'method', 'host', 'path', 'status', 'protocol', 'size', 'duration'];
  return order.flatMap((key): Column[] => {
    if (key === 'host') return [{ key, title: 'HOST', width: host, align: 'left' }];
    if (key === 'path') return [{ key, title: 'PATH', width: path, align: 'left' }];
    const c = byKey.get(key);
    return c ? [c] : [];
  });
}

/** Short error kinds for the 8-column status cell; the detail view shows the full kind. */
const SHORT_KIND: Readonly<Record<ExchangeErrorKind, string>> = {
  'upstream-connect': 'connect',
  'upstream-tls': 'tls',
  'upstream-protocol': 'proto',
  'upstream-aborted': 'aborted',
  'client-aborted': 'cl-abort',
  'client-protocol': 'cl-proto',
};

export type StatusColor = 'green' | 'cyan' | 'yellow' | 'red' | 'magenta' | 'gray' | 'white';

/** 2xx green, 3xx cyan, 4xx yellow, 5xx and failed exchanges red, no response yet gray. */
export function statusColor(ex: Exchange): StatusColor {
  if (ex.state === 'error') return 'red';
  const status = ex.response?.status;
  if (status === undefined) return 'gray';
  if (status >= 500) return 'red';
  if (status >= 400) return 'yellow';
  if (status >= 300) return 'cyan';
  if (status >= 200) return 'green';
  return 'white';
}

/** `200`, `…` while waiting for the response head, or the (short) error kind for a failed exchange. */
export function statusText(ex: Exchange): string {
  if (ex.passthrough && ex.state !== 'error') return 'pass';
  if (ex.state === 'error') return ex.error ? SHORT_KIND[ex.error.kind] : 'error';
  return ex.response ? String(ex.response.status) : '…';
}

/** `153ms`, `1.25s`, `12.5s`, `125s`, `12m05s`; `…` when not finished. */
export function formatDuration(ms: number | undefined): string {
  if (ms === undefined) return '…';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 10_000) return `${(ms / 1000).toFixed(2)}s`;
  if (ms < 100_000) return `${(ms / 1000).toFixed(1)}s`;
  if (ms < 600_000) return `${Math.round(ms / 1000)}s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

/** The text of one cell, escaped; never longer than the data itself (the layout truncates). */
export function cellText(ex: Exchange, key: ColumnKey, column?: Column): string {
  switch (key) {
    case 'time': {
      const clock = formatClock(ex.timing.startedAt);
      return column && column.width < 12 ? clock.slice(0, 8) : clock;
    }
    case 'process':
      return formatProcessShort(ex.process);
    case 'method':
      return escapeInline(ex.request.method);
    case 'host':
      return escapeInline(splitUrl(ex.request.url).host);
    case 'path':
      return escapeInline(splitUrl(ex.request.url).path);
    case 'status':
      return statusText(ex);
    case 'protocol':
      if (ex.passthrough) return ex.request.method === 'TLS' ? 'tls' : 'tcp';
      return ex.websocket ? 'ws' : `http/${escapeInline(ex.request.httpVersion)}`;
    case 'size':
      // A WebSocket's size is what it relayed after the handshake, both ways.
      if (ex.websocket) return formatBytes(ex.websocket.bytesUp + ex.websocket.bytesDown);
      // A passthrough's size is the bytes relayed both ways.
      if (ex.passthrough) return formatBytes(ex.passthrough.bytesUp + ex.passthrough.bytesDown);
      return ex.response ? formatBytes(ex.response.body.size) : '-';
    case 'duration':
      return formatDuration(ex.state === 'in-flight' ? undefined : ex.timing.end);
  }
}

/**
 * Terminal cells of one code point: 0 for combining marks and zero-width characters, 2 for East
 * Asian wide/fullwidth and emoji blocks (UAX #11), else 1. An approximation of what Ink measures
 * (string-width); the row's Text also truncates, so a miss shifts a cell but never wraps a line.
 */
export function charWidth(cp: number): number {
  if ((cp >= 0x300 && cp <= 0x36f) || (cp >= 0x200b && cp <= 0x200d) || (cp >= 0xfe00 && cp <= 0xfe0f)) return 0;
  if (
    (cp >= 0x1100 && cp <= 0x115f) ||
    (cp >= 0x2e80 && cp <= 0xa4cf) ||
    (cp >= 0xac00 && cp <= 0xd7a3) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0xfe30 && cp <= 0xfe4f) ||
    (cp >= 0xff00 && cp <= 0xff60) ||
    (cp >= 0xffe0 && cp <= 0xffe6) ||
    (cp >= 0x1f300 && cp <= 0x1f64f) ||
    (cp >= 0x1f900 && cp <= 0x1f9ff) ||
    (cp >= 0x20000 && cp <= 0x3fffd)
  ) {
    return 2;
  }
  return 1;
}

/** Display width of `text` in terminal cells (see charWidth). */
export function textWidth(text: string): number {
  let w = 0;
  for (const ch of text) w += charWidth(ch.codePointAt(0)!);
  return w;
}

/** Pads or cuts `text` to exactly `width` cells, marking a cut with `…`. */
export function fit(text: string, width: number, align: 'left' | 'right' = 'left'): string {
  if (width <= 0) return '';
  const full = textWidth(text);
  if (full <= width) return align === 'right' ? ' '.repeat(width - full) + text : text + ' '.repeat(width - full);
  let out = '';
  let used = 0;
  for (const ch of text) {
    const cw = charWidth(ch.codePointAt(0)!);
    if (used + cw > width - 1) break;
    out += ch;
    used += cw;
  }
  return `${out}…${' '.repeat(width - 1 - used)}`;
}

/** Exchanges per second for the header: one decimal below 10. */
export function formatRate(rate: number): string {
  return rate < 10 ? `${rate.toFixed(1)}/s` : `${Math.round(rate)}/s`;
}

export interface TimingSegments {
  /** Cells for: waiting for the upstream connection, waiting for the first byte, receiving. */
  readonly connect: number;
  readonly wait: number;
  readonly receive: number;
  /** Cells not (yet) accounted for: the exchange is still running. */
  readonly pending: number;
}

/**
 * The timing bar: `width` cells split in proportion to connect (0 → upstreamConnected), wait
 * (→ firstByte) and receive (→ end). While the exchange runs, the known part is scaled against
 * `elapsedMs` and the rest is pending. Rounding goes to the largest remainders so cells add up.
 */
export function timingSegments(timing: Timing, width: number, elapsedMs?: number): TimingSegments {
  const connected = timing.upstreamConnected;
  const firstByte = timing.firstByte;
  const end = timing.end;
  const total = Math.max(end ?? elapsedMs ?? firstByte ?? connected ?? 0, 0);
  if (width <= 0 || total <= 0) return { connect: 0, wait: 0, receive: 0, pending: Math.max(0, width) };
  const c = Math.min(connected ?? (end ?? 0), total);
  const f = firstByte !== undefined ? Math.min(Math.max(firstByte, c), total) : end !== undefined ? end : c;
  const e = end !== undefined ? Math.max(end, f) : f;
  const parts = [c, f - c, e - f, Math.max(0, total - e)];
  const exact = parts.map((p) => (p / total) * width);
  const cells = exact.map(Math.floor);
  let left = width - cells.reduce((a, b) => a + b, 0);
  const order = exact.map((x, i) => [x - Math.floor(x), i] as const).sort((a, b) => b[0] - a[0]);
  for (const [, i] of order) {
    if (left <= 0) break;
    cells[i]!++;
    left--;
  }
  return { connect: cells[0]!, wait: cells[1]!, receive: cells[2]!, pending: cells[3]! };
}
