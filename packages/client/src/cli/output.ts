/**
 * Everything tproxyctl prints, as pure functions from data to text: no I/O, no client, so each
 * format is unit-tested on its own. Captured exchanges are untrusted input (any site can put bytes
 * in a URL, header or body), so every string that came over the wire goes through `escapeInline`
 * or `escapeMultiline` (shared/escape.ts, also used by tproxy-ui) before it reaches a terminal.
 * Nothing here decides exit codes or talks to the helper.
 */
import {
  type BodyInfo,
  type CaGetResult,
  type CaptureConfig,
  type CaptureStatus,
  type DecodedBody,
  type Exchange,
  type ExchangeDetail,
  type Headers,
  type HelperInfoResult,
  type HelperRepairResult,
  type PreviousSession,
  PROTOCOL_VERSION,
  RpcError,
} from '@tproxy/protocol';
import { accessDeniedHint, isAccessDenied, isClientError } from '../rpc/errors.js';
import { decodeText, hexSummary } from '../shared/bytes.js';
import { escapeInline, escapeMultiline } from '../shared/escape.js';
import { formatProcessLong } from '../shared/process.js';
import { formatBytes, formatClock, formatDateTime, formatEndpoint, formatMs } from '../shared/units.js';
import { websocketMessageLines, websocketSummary } from '../shared/websocket.js';

// ---------------------------------------------------------------------------------------------
// Shared pieces (tproxy-ui uses them too), re-exported so tproxyctl's callers and tests keep one import.

export { escapeInline, escapeMultiline, jsonLine } from '../shared/escape.js';
export { formatBytes, formatClock, formatDateTime, formatEndpoint, formatMs } from '../shared/units.js';
export { decodeText, hexSummary } from '../shared/bytes.js';

// ---------------------------------------------------------------------------------------------
// Small units

/** Coarse uptime: `45s`, `3m 5s`, `2h 7m`, `3d 4h`. */
export function formatUptime(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

export function formatHex(n: number): string {
  return `0x${n.toString(16)}`;
}

// ---------------------------------------------------------------------------------------------
// tail

/** `ERR <kind>` for a failed exchange, the status code once the response head arrived, else `-`. */
export function formatOutcome(ex: Exchange): string {
  if (ex.state === 'error') return `ERR ${escapeInline(ex.error?.kind ?? 'unknown')}`;
  return ex.response ? String(ex.response.status) : '-';
}

/**
 * One tail line: `HH:MM:SS.mmm METHOD URL STATUS SIZE DURATION`, SIZE being the response body size.
 * With `event` (tail --all-events) the event name follows the time.
 */
export function formatTailLine(ex: Exchange, event?: string): string {
  const fields = [
    formatClock(ex.timing.startedAt),
    ...(event ? [event.padEnd(9)] : []),
    escapeInline(ex.request.method),
    escapeInline(ex.request.url),
    formatOutcome(ex),
    ex.response ? formatBytes(ex.response.body.size) : '-',
    formatMs(ex.timing.end),
  ];
  // A passthrough: why, and the bytes relayed each way (there is no response to size).
  if (ex.passthrough) fields.splice(3, 2, `PASS ${escapeInline(ex.passthrough.reason)}`, `${formatBytes(ex.passthrough.bytesUp)}↑ ${formatBytes(ex.passthrough.bytesDown)}↓`);
  // A WebSocket: messages relayed each way after the 101.
  if (ex.websocket) fields.push(`ws ${ex.websocket.messagesUp}↑ ${ex.websocket.messagesDown}↓`);
  return fields.join(' ');
}

// ---------------------------------------------------------------------------------------------
// status / ca

/** Human summary of `capture.status` (+ `helper.info` when given), one fact per line. */
export function formatStatus(status: CaptureStatus, info?: HelperInfoResult): string {
  const lines: string[] = [];
  if (status.running) {
    const since = status.startedAt !== undefined ? ` since ${formatDateTime(status.startedAt)}` : '';
    lines.push(`capture: running${since}`);
    lines.push(`intercepted: ${status.interceptCount} connection${status.interceptCount === 1 ? '' : 's'}`);
    lines.push(`listeners: ${status.listeners.length ? status.listeners.map(formatEndpoint).join(', ') : '(none)'}`);
    const c = status.config;
    if (c) {
      lines.push(
        `config: ports ${c.ports.join(',')}, mark ${formatHex(c.mark)}/${formatHex(c.markMask)}, bypass mark ${formatHex(c.bypassMark)}, ` +
          `table ${c.routeTable}, ipv6 ${c.ipv6 ? 'on' : 'off'}, listen port ${c.listenPort}, ` +
          `body limit ${formatBytes(c.bodyCaptureLimit)}`,
      );
      lines.push(`scope: ${formatScope(c.scope)}`);
    }
    if (status.firewall) lines.push(`firewall: ${status.firewall.backend}; ${escapeInline(status.firewall.reason)}`);
  } else if (!status.available) {
    lines.push(`capture: unavailable: ${escapeInline(status.reason ?? 'no reason given')}`);
  } else {
    lines.push('capture: stopped');
  }
  if (status.rules.length) {
    lines.push('rules applied:');
    for (const rule of status.rules) lines.push(`  ${escapeInline(rule)}`);
  }
  if (status.interception && !status.interception.ok) lines.push(`interception lost: ${escapeInline(status.interception.problems.join('; '))}`);
  lines.push(`CA: ${status.caInstalled ? `installed${status.trustStorePath ? ` at ${escapeInline(status.trustStorePath)}` : ''}` : 'not installed'}`);
  if (info) {
    lines.push(
      `helper: ${escapeInline(info.name)} ${escapeInline(info.version)}, protocol ${info.protocolVersion}, ` +
        `pid ${info.pid}, up ${formatUptime(info.uptimeMs)}`,
    );
    if (!info.native.available) lines.push(`native: unavailable: ${escapeInline(info.native.reason ?? 'no reason given')}`);
    if (info.protocolVersion !== PROTOCOL_VERSION) {
      lines.push(`warning: the helper speaks protocol ${info.protocolVersion}, this tproxyctl speaks ${PROTOCOL_VERSION}`);
    }
    if (info.previousSession) lines.push(...previousSessionLines(info.previousSession));
  }
  return `${lines.join('\n')}\n`;
}

/** Whose connections a capture takes, as `capture.status` reports its effective scope. */
export function formatScope(scope: CaptureConfig['scope']): string {
  const parts: string[] = [];
  if (scope?.uids) parts.push(`uid${scope.uids.length > 1 ? 's' : ''} ${scope.uids.join(',')}`);
  if (scope?.cgroup) parts.push(`cgroup ${escapeInline(scope.cgroup)}`);
  return parts.length ? parts.join(' in ') : 'every local process';
}

/** What a killed helper left and what was done about it (helper.info / helper.repair). */
function previousSessionLines(p: PreviousSession): string[] {
  const what = [p.ports ? `capturing ports ${p.ports.join(',')}` : 'capturing', p.startedAt !== undefined ? `since ${formatDateTime(p.startedAt)}` : '']
    .filter(Boolean)
    .join(' ');
  return [
    `previous session: helper pid ${p.pid} (${what}) stopped without cleaning up; repaired at ${formatDateTime(p.repairedAt)}`,
    ...(p.removed.length > 0 ? p.removed.map((r) => `  removed: ${escapeInline(r)}`) : ['  it had left nothing to remove']),
    '  its exchanges are lost (they lived only in its memory); start a new capture',
  ];
}

/** Human summary of `helper.repair`. */
export function formatRepair(result: HelperRepairResult): string {
  const lines =
    result.removed.length > 0
      ? [`removed ${result.removed.length} leftover${result.removed.length === 1 ? '' : 's'}:`, ...result.removed.map((r) => `  ${escapeInline(r)}`)]
      : ['nothing to repair: no rules, routes or trust-store entries of tproxy were left behind'];
  if (result.previous) lines.push(...previousSessionLines(result.previous));
  return `${lines.join('\n')}\n`;
}

/** Human summary of `ca.get`. */
export function formatCa(ca: CaGetResult): string {
  const installed = ca.installed ? `yes${ca.trustStorePath ? ` (${escapeInline(ca.trustStorePath)})` : ''}` : 'no';
  return [
    `subject:    ${escapeInline(ca.subject)}`,
    `sha256:     ${escapeInline(ca.fingerprintSha256)}`,
    `not after:  ${escapeInline(ca.notAfter)}`,
    `installed:  ${installed}`,
    `ca file:    ${escapeInline(ca.caPath)}`,
    `bundle:     ${escapeInline(ca.bundlePath)}`,
    '',
  ].join('\n');
}

/**
 * `value` as one POSIX shell word: single-quoted, each `'` written as `'\''`. Nothing inside single
 * quotes is special to sh/bash/zsh, so this is safe for any string (control characters included).
 */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** A variable name a POSIX shell accepts after `export`. */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * `ca.get`'s `env` as shell exports, sorted by name, after a comment saying how to use them. A name
 * a shell would not accept is left out rather than printed into an eval'd script.
 */
export function formatEnvExports(env: Record<string, string>): string {
  const lines = ['# Trust tproxy in runtimes with their own CA stores: eval "$(tproxyctl env)"'];
  for (const name of Object.keys(env).sort()) {
    if (ENV_NAME.test(name)) lines.push(`export ${name}=${shellQuote(env[name]!)}`);
  }
  return `${lines.join('\n')}\n`;
}

/** The PEM alone, newline-terminated; a well-formed PEM passes through unchanged. */
export function formatPem(pem: string): string {
  const text = escapeMultiline(pem);
  return text.endsWith('\n') ? text : `${text}\n`;
}

// ---------------------------------------------------------------------------------------------
// get

function formatHeaders(headers: Headers): string[] {
  return headers.map(([name, value]) => `${escapeInline(name)}: ${escapeInline(value)}`);
}

/** Trailer fields after a body (HTTP/2 trailing HEADERS, chunked trailers), styled like headers; nothing when there are none. */
function formatTrailers(trailers: Headers | undefined): string[] {
  return trailers && trailers.length > 0 ? ['', 'trailers:', ...formatHeaders(trailers)] : [];
}

/** Longest SSE `data` shown on one line of `tproxyctl get`, in UTF-16 units (the raw stream is in the body above). */
const SSE_DATA_MAX = 200;

/**
 * The helper's parsed server-sent events: a summary, then one line per kept event with its time
 * (an offset from the exchange start), which the raw body cannot tell.
 */
function formatSse(res: NonNullable<Exchange['response']>, events: ExchangeDetail['sseEvents']): string[] {
  const info = res.sse;
  if (!info && !events?.length) return [];
  const shown = events ?? info?.events ?? [];
  const count = info?.count ?? shown.length;
  const kept = info?.captured ?? shown.length;
  // `truncated` with every event kept means some event's data was cut (the helper's per-event cap).
  const note = count === 0 ? '' : kept < count ? ` (first ${kept} kept)` : info?.truncated ? ' (all kept, some data cut)' : ' (all kept)';
  const lines = [`--- server-sent events: ${count}${note}`];
  for (const ev of shown) {
    const facts = [ev.event ?? 'message', ...(ev.id !== undefined ? [`id ${ev.id}`] : []), ...(ev.retry !== undefined ? [`retry ${ev.retry}ms`] : [])];
    const data = escapeInline(ev.data);
    const cut = data.length > SSE_DATA_MAX ? `${data.slice(0, SSE_DATA_MAX)}…` : data;
    lines.push(`[${ev.seq + 1}] +${formatMs(ev.t)} ${escapeInline(facts.join(' '))}  "${cut}"${ev.truncated ? ' (cut)' : ''}`);
  }
  // The summary carries only the newest events; exchanges.get (`sseEvents`) has every kept one.
  if (!events && info && info.events.length < count) lines.push(`(only the newest ${info.events.length} shown)`);
  return ['', ...lines];
}

/** A captured body for a terminal: a note on size/truncation, then escaped text or a hex summary; no final newline. */
export function formatBody(captured: Uint8Array, info: BodyInfo, decoded?: DecodedBody): string {
  if (info.size === 0 && captured.length === 0) return '(no body)';
  const notes: string[] = [`${info.size} bytes`];
  if (info.truncated) notes.push(`only the first ${info.captured} captured`);
  // The helper undid the Content-Encoding (exchanges.get); a failed decoding shows the wire bytes.
  const useDecoded = decoded !== undefined && decoded.error === undefined;
  if (decoded && useDecoded) notes.push(`decoded from ${escapeInline(decoded.encoding)}: ${decoded.size} bytes${decoded.truncated ? ', not all of it' : ''}`);
  if (decoded?.error !== undefined) notes.push(`not decoded: ${escapeInline(decoded.error)}`);
  const bytes = useDecoded ? Buffer.from(decoded.base64, 'base64') : captured;
  const text = decodeText(bytes);
  if (text === null) {
    notes.push('binary');
    return `[body: ${notes.join('; ')}]\n${hexSummary(bytes)}`;
  }
  const shown = escapeMultiline(text);
  // The result is a block without a final newline, like the other blocks callers join with '\n'.
  const block = shown.endsWith('\n') ? shown.slice(0, -1) : `${shown}\n[no newline at end of body]`;
  return `[body: ${notes.join('; ')}]\n${block}`;
}

/** Human view of `exchanges.get`: summary, then request and response heads and bodies. */
export function formatExchangeDetail(detail: ExchangeDetail): string {
  const ex = detail.exchange;
  const req = ex.request;
  const res = ex.response;
  const lines: string[] = [];
  const outcome = res ? `${res.status} ${escapeInline(res.statusMessage)}`.trimEnd() : ex.state === 'error' ? 'no response' : 'waiting';
  lines.push(`exchange ${ex.id} (${ex.state})`);
  lines.push(`${escapeInline(req.method)} ${escapeInline(req.url)} -> ${outcome}`);
  lines.push(`client:  ${formatEndpoint(ex.client)}`);
  lines.push(`server:  ${formatEndpoint(ex.server)}`);
  if (ex.process) lines.push(`process: ${formatProcessLong(ex.process)}`);
  const tls = [
    ex.tls.sni !== undefined ? `sni ${escapeInline(ex.tls.sni)}` : 'no sni',
    ...(ex.tls.clientVersion ? [`client ${escapeInline(ex.tls.clientVersion)}`] : []),
    ...(ex.tls.upstreamVersion ? [`upstream ${escapeInline(ex.tls.upstreamVersion)}`] : []),
    ...(ex.tls.alpn ? [`alpn ${escapeInline(ex.tls.alpn)}`] : []),
    ...(ex.tls.clientAlpn?.length ? [`offered ${ex.tls.clientAlpn.map(escapeInline).join(' ')}`] : []),
  ];
  lines.push(`tls:     ${tls.join(', ')}`);
  lines.push(`started: ${formatDateTime(ex.timing.startedAt)}`);
  lines.push(
    `timing:  upstream ${formatMs(ex.timing.upstreamConnected)}, first byte ${formatMs(ex.timing.firstByte)}, total ${formatMs(ex.timing.end)}`,
  );
  if (ex.error) {
    const code = ex.error.code ? ` (${escapeInline(ex.error.code)})` : '';
    lines.push(`error:   ${escapeInline(ex.error.kind)}: ${escapeInline(ex.error.message)}${code}`);
  }
  // A passthrough entry has no HTTP to show: why it was not decrypted and the bytes each way.
  if (ex.passthrough) {
    const p = ex.passthrough;
    lines.push(`passthrough: ${escapeInline(p.reason)}${p.detail ? ` (${escapeInline(p.detail)})` : ''}, ${formatBytes(p.bytesUp)} up, ${formatBytes(p.bytesDown)} down`);
    return `${lines.join('\n')}\n`;
  }
  // An HTTP/2 exchange is one stream of a shared connection: its id ties it to the others.
  const stream = ex.streamId !== undefined ? ` stream ${ex.streamId}` : '';
  lines.push('', '--- request', `${escapeInline(req.method)} ${escapeInline(req.url)} HTTP/${escapeInline(req.httpVersion)}${stream}`);
  lines.push(...formatHeaders(req.headers), '', formatBody(Buffer.from(detail.requestBody, 'base64'), req.body, detail.decodedRequestBody));
  lines.push(...formatTrailers(req.trailers));
  if (res) {
    lines.push('', '--- response', `HTTP/${escapeInline(res.httpVersion)} ${res.status} ${escapeInline(res.statusMessage)}`.trimEnd());
    lines.push(...formatHeaders(res.headers), '', formatBody(Buffer.from(detail.responseBody, 'base64'), res.body, detail.decodedResponseBody));
    lines.push(...formatTrailers(res.trailers));
    lines.push(...formatSse(res, detail.sseEvents));
  }
  if (ex.websocket) lines.push('', `--- WebSocket: ${websocketSummary(ex.websocket)}`, ...websocketMessageLines(ex.websocket));
  return `${lines.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------
// errors

/** The line(s) printed on stderr for a failed operation. */
export function formatError(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  let text = `error: ${escapeInline(message)}`;
  if (isAccessDenied(err) && !message.includes('--allow-uid')) text += `\nhint: ${accessDeniedHint()}`;
  return `${text}\n`;
}

/**
 * `{"error": {...}}` for --json mode. RpcErrors keep their wire form (`code`, `message`, `data.code`);
 * local errors have no numeric code but the same `data.code` string, so scripts branch on one field.
 */
export function errorToJson(err: unknown): { error: { code?: number; message: string; data: Record<string, unknown> } } {
  if (err instanceof RpcError) {
    const wire = err.toWire();
    return { error: { code: wire.code, message: wire.message, data: wire.data as Record<string, unknown> } };
  }
  if (isClientError(err)) {
    const data: Record<string, unknown> = { code: err.code };
    if ('socketPath' in err) Object.assign(data, { socketPath: err.socketPath, errno: err.errno, hint: err.hint });
    if ('method' in err) Object.assign(data, { method: err.method, timeoutMs: err.timeoutMs });
    return { error: { message: err.message, data } };
  }
  return { error: { message: err instanceof Error ? err.message : String(err), data: { code: 'failed' } } };
}
