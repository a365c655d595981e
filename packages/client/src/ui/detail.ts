/**
 * The detail view's content as display lines, pure: summary, error, process, endpoints, TLS facts,
 * a proportional timing bar, then request and response heads, bodies and trailers (body.ts does the
 * bodies); a passthrough stops after the timing, having no HTTP.
 * Each line is a list of styled segments whose text is already escaped and fits `width`; the view
 * only scrolls through them.
 */
import type { Exchange, Headers, SseEvent } from '@tproxy/protocol';
import { escapeInline } from '../shared/escape.js';
import { formatProcessLong } from '../shared/process.js';
import { formatBytes, formatDateTime, formatEndpoint } from '../shared/units.js';
import { websocketMessageLines, websocketSummary } from '../shared/websocket.js';
import { bodyView, wrapLine, type BodyViewOptions } from './body.js';
import { formatDuration, statusColor, timingSegments } from './format.js';
import type { DetailState } from './state/reducer.js';

export interface Segment {
  readonly text: string;
  readonly color?: string;
  readonly bold?: boolean;
  readonly dim?: boolean;
}

export type DetailLine = readonly Segment[];

/** Width of the label column (`Timing  `). */
const LABEL = 9;
/** The timing bar never grows past this many cells, so it stays readable on wide terminals. */
const MAX_BAR = 60;

const plain = (text: string, style: Omit<Segment, 'text'> = {}): DetailLine => [{ text, ...style }];

function wrapped(text: string, width: number, style: Omit<Segment, 'text'> = {}, indent = ''): DetailLine[] {
  return wrapLine(text, width).map((piece, i) => plain(i === 0 ? piece : indent + piece, style));
}

function labelled(label: string, value: string, width: number): DetailLine[] {
  return wrapLine(value, Math.max(1, width - LABEL)).map((piece, i) => [
    { text: (i === 0 ? label : '').padEnd(LABEL), dim: true },
    { text: piece },
  ]);
}

function section(title: string, width: number): DetailLine {
  const text = `── ${title} `;
  return plain(text + '─'.repeat(Math.max(0, width - [...text].length)), { bold: true, color: 'blue' });
}

function headerLines(headers: Headers, width: number): DetailLine[] {
  if (headers.length === 0) return [plain('(none)', { dim: true })];
  return headers.flatMap(([name, value]) => {
    const n = escapeInline(name);
    return wrapLine(`${n}: ${escapeInline(value)}`, width).map((piece, i): DetailLine =>
      i === 0 ? [{ text: piece.slice(0, n.length + 1), bold: true }, { text: piece.slice(n.length + 1) }] : [{ text: piece }],
    );
  });
}

/** A trailer block after a body (HTTP/2 trailing HEADERS, chunked trailers, e.g. gRPC's `grpc-status`); nothing when there is none. */
function trailerLines(title: string, trailers: Headers | undefined, width: number): DetailLine[] {
  if (!trailers || trailers.length === 0) return [];
  return [section(`${title} trailers (${trailers.length})`, width), ...headerLines(trailers, width)];
}

function timingLines(ex: Exchange, width: number, now: number): DetailLine[] {
  const t = ex.timing;
  const barWidth = Math.max(10, Math.min(MAX_BAR, width - LABEL - 2));
  const elapsed = ex.state === 'in-flight' ? Math.max(0, now - t.startedAt) : undefined;
  const seg = timingSegments(t, barWidth, elapsed);
  const total = t.end ?? elapsed;
  const bar: DetailLine = [
    { text: 'Timing'.padEnd(LABEL), dim: true },
    { text: '█'.repeat(seg.connect), color: 'yellow' },
    { text: '█'.repeat(seg.wait), color: 'cyan' },
    { text: '█'.repeat(seg.receive), color: 'green' },
    { text: '░'.repeat(seg.pending), color: 'gray' },
    { text: ` ${formatDuration(total)}${ex.state === 'in-flight' ? ' so far' : ''}` },
  ];
  const phase = (a: number | undefined, b: number | undefined) => (a !== undefined && b !== undefined ? formatDuration(Math.max(0, b - a)) : '-');
  const legend: DetailLine = [
    { text: ''.padEnd(LABEL) },
    { text: '█', color: 'yellow' },
    { text: ` connect ${phase(0, t.upstreamConnected)}  ` },
    { text: '█', color: 'cyan' },
    { text: ` first byte ${phase(t.upstreamConnected ?? 0, t.firstByte)}  ` },
    { text: '█', color: 'green' },
    { text: ` receive ${phase(t.firstByte, t.end)}` },
  ];
  return [bar, legend];
}

function bodyLines(title: string, bytes: string | undefined, headers: Headers, info: Exchange['request']['body'], detail: DetailState, width: number, extra: Pick<BodyViewOptions, 'decoded' | 'sse'> = {}): DetailLine[] {
  if (detail.status === 'loading') return [section(`${title} · ${formatBytes(info.size)}`, width), plain('loading…', { dim: true })];
  if (detail.status === 'error' || bytes === undefined) {
    return [section(`${title} · ${formatBytes(info.size)}`, width), ...wrapped(`not available: ${escapeInline(detail.error ?? 'unknown error')}`, width, { color: 'red' })];
  }
  const view = bodyView(new Uint8Array(Buffer.from(bytes, 'base64')), { headers, info, width, ...extra });
  return [section(`${title} · ${view.summary}`, width), ...view.lines.map((l) => plain(l))];
}

/**
 * The events to show: those exchanges.get returned, plus the newest ones the live summary carries
 * (an open stream keeps going after the detail was fetched), by `seq`.
 */
function sseEvents(res: NonNullable<Exchange['response']>, fetched: readonly SseEvent[] | undefined): BodyViewOptions['sse'] {
  const recent = res.sse?.events ?? [];
  if (!fetched && recent.length === 0) return undefined;
  const bySeq = new Map((fetched ?? []).map((e) => [e.seq, e]));
  for (const e of recent) if (!bySeq.has(e.seq)) bySeq.set(e.seq, e);
  return { events: [...bySeq.values()].sort((a, b) => a.seq - b.seq), ...(res.sse ? { info: res.sse } : {}) };
}

export interface DetailInput {
  /** The freshest summary: the list's row, or the one exchanges.get returned. */
  readonly exchange: Exchange;
  readonly detail: DetailState;
  readonly width: number;
  /** For the elapsed time of an exchange still in flight. */
  readonly now: number;
}

export function detailLines({ exchange: ex, detail, width, now }: DetailInput): DetailLine[] {
  const w = Math.max(20, width);
  const req = ex.request;
  const res = ex.response;
  const data = detail.status === 'loaded' ? detail.data : undefined;
  const lines: DetailLine[] = [];
  lines.push(...wrapped(`${escapeInline(req.method)} ${escapeInline(req.url)}`, w, { bold: true }));
  const outcome = res ? `${res.status} ${escapeInline(res.statusMessage)}`.trim() : ex.state === 'in-flight' ? 'waiting for the response' : 'no response';
  lines.push([
    { text: outcome, color: statusColor(ex), bold: true },
    { text: ` · ${ex.state} · #${ex.id} · ${formatDateTime(ex.timing.startedAt)}${res ? ` · ${formatBytes(res.body.size)}` : ''}`, dim: true },
  ]);
  if (ex.error) {
    const code = ex.error.code ? ` (${escapeInline(ex.error.code)})` : '';
    lines.push(...wrapped(`error: ${escapeInline(ex.error.kind)}: ${escapeInline(ex.error.message)}${code}`, w, { color: 'red' }));
  }
  if (ex.passthrough) {
    // Relayed without decryption: the reason and the byte counts are all there is.
    const p = ex.passthrough;
    lines.push(...wrapped(`passthrough (not decrypted): ${escapeInline(p.reason)}${p.detail ? ` · ${escapeInline(p.detail)}` : ''} · ${formatBytes(p.bytesUp)} up · ${formatBytes(p.bytesDown)} down`, w, { color: 'yellow' }));
  }
  lines.push(plain(''));
  lines.push(...labelled('Process', formatProcessLong(ex.process), w));
  lines.push(...labelled('Client', formatEndpoint(ex.client), w));
  lines.push(...labelled('Server', formatEndpoint(ex.server), w));
  const tls = [
    ex.tls.sni !== undefined ? `SNI ${escapeInline(ex.tls.sni)}` : 'no SNI',
    `client ${escapeInline(ex.tls.clientVersion ?? '-')}`,
    `upstream ${escapeInline(ex.tls.upstreamVersion ?? '-')}`,
    `ALPN ${escapeInline(ex.tls.alpn ?? '-')}${ex.tls.clientAlpn?.length ? ` (offered ${ex.tls.clientAlpn.map(escapeInline).join(', ')})` : ''}`,
  ];
  lines.push(...labelled('TLS', tls.join(' · '), w));
  lines.push(...timingLines(ex, w, now));
  // A passthrough was never decrypted: it has no heads or bodies to show (its passthrough line says why).
  if (ex.passthrough) return lines;
  lines.push(plain(''));
  // An HTTP/2 exchange is one stream of a shared connection: its id ties it to the others.
  const stream = ex.streamId !== undefined ? ` · stream ${ex.streamId}` : '';
  lines.push(section(`Request headers (${req.headers.length}) · HTTP/${escapeInline(req.httpVersion)}${stream}`, w), ...headerLines(req.headers, w));
  lines.push(...bodyLines('Request body', data?.requestBody, req.headers, req.body, detail, w, data?.decodedRequestBody ? { decoded: data.decodedRequestBody } : {}));
  lines.push(...trailerLines('Request', req.trailers, w));
  if (res) {
    lines.push(section(`Response headers (${res.headers.length}) · HTTP/${escapeInline(res.httpVersion)}`, w), ...headerLines(res.headers, w));
    const sse = sseEvents(res, data?.sseEvents);
    lines.push(...bodyLines('Response body', data?.responseBody, res.headers, res.body, detail, w, { ...(data?.decodedResponseBody ? { decoded: data.decodedResponseBody } : {}), ...(sse ? { sse } : {}) }));
    lines.push(...trailerLines('Response', res.trailers, w));
  }
  if (ex.websocket) {
    // From the live summary: an open WebSocket keeps counting after the detail was fetched.
    lines.push(section(`WebSocket · ${websocketSummary(ex.websocket)}`, w));
    for (const l of websocketMessageLines(ex.websocket)) lines.push(...wrapped(l, w, {}, '  '));
  }
  return lines;
}
