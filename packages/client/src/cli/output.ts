/**
 * Everything tproxyctl prints, as pure functions from data to text: no I/O, no client, so each
 * format is unit-tested on its own. Captured exchanges are untrusted input (any site can put bytes
 * in a URL, header or body), so every string that came over the wire goes through `escapeInline`
 * or `escapeMultiline` before it reaches a terminal, and `jsonLine` escapes what JSON.stringify
 * leaves raw. Nothing here decides exit codes or talks to the helper.
 */
import {
  type BodyInfo,
  type CaGetResult,
  type CaptureStatus,
  type Endpoint,
  type Exchange,
  type ExchangeDetail,
  type Headers,
  type HelperInfoResult,
  PROTOCOL_VERSION,
  RpcError,
} from '@tproxy/protocol';
import { accessDeniedHint, isAccessDenied, isClientError } from '../rpc/errors.js';

// ---------------------------------------------------------------------------------------------
// Escaping

/**
 * Characters a terminal may act on: C0 controls (ESC starts cursor/title sequences, CR rewrites a
 * line, BS erases), DEL, C1 controls (U+009B is a one-character CSI in some terminals, ECMA-48
 * §8.3), and the bidi overrides/isolates that can make text display in a different order than it
 * is stored (CVE-2021-42574, "Trojan Source").
 */
// eslint-disable-next-line no-control-regex -- matching control characters is this regex's job
const UNSAFE_INLINE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;
/** The same, but keeping \t and \n, for multi-line text such as bodies. */
// eslint-disable-next-line no-control-regex -- as above
const UNSAFE_MULTILINE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

function escapeChar(c: string): string {
  const code = c.charCodeAt(0);
  if (c === '\n') return '\\n';
  if (c === '\r') return '\\r';
  if (c === '\t') return '\\t';
  return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/** For one-line fields (URL, header, status text): every control character, \n and \t included, becomes visible. */
export function escapeInline(text: string): string {
  return text.replace(UNSAFE_INLINE, escapeChar);
}

/** For multi-line text: keeps \n and \t, turns CRLF into \n, and makes every other control visible. */
export function escapeMultiline(text: string): string {
  return text.replace(/\r\n/g, '\n').replace(UNSAFE_MULTILINE, escapeChar);
}

/**
 * One JSON document on one line. JSON.stringify escapes C0 controls but leaves DEL, C1 and the
 * bidi controls raw; escaping them too keeps the value identical and the line terminal-safe.
 * Outside strings JSON.stringify emits only ASCII, so the replacement only ever touches string contents.
 */
export function jsonLine(value: unknown): string {
  const text = JSON.stringify(value).replace(/[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => {
    return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
  });
  return `${text}\n`;
}

// ---------------------------------------------------------------------------------------------
// Small units

const pad2 = (n: number) => String(n).padStart(2, '0');
const pad3 = (n: number) => String(n).padStart(3, '0');

/** `HH:MM:SS.mmm` in local time. */
export function formatClock(epochMs: number): string {
  const d = new Date(epochMs);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}.${pad3(d.getMilliseconds())}`;
}

/** `YYYY-MM-DD HH:MM:SS.mmm` in local time. */
export function formatDateTime(epochMs: number): string {
  const d = new Date(epochMs);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${formatClock(epochMs)}`;
}

/** Binary units, one decimal below 10: `0 B`, `512 B`, `1.5 KiB`, `64 KiB`, `3.2 MiB`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value < 10 ? value.toFixed(1).replace(/\.0$/, '') : Math.round(value)} ${units[unit]}`;
}

/** Whole milliseconds, `153ms`; `-` when unknown. */
export function formatMs(ms: number | undefined): string {
  return ms === undefined ? '-' : `${Math.round(ms)}ms`;
}

/** Coarse uptime: `45s`, `3m 5s`, `2h 7m`, `3d 4h`. */
export function formatUptime(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

/** `127.0.0.1:443`, `[::1]:443`. */
export function formatEndpoint(e: Endpoint): string {
  const address = escapeInline(e.address);
  return e.address.includes(':') ? `[${address}]:${e.port}` : `${address}:${e.port}`;
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
        `config: ports ${c.ports.join(',')}, mark ${formatHex(c.mark)}, bypass mark ${formatHex(c.bypassMark)}, ` +
          `table ${c.routeTable}, ipv6 ${c.ipv6 ? 'on' : 'off'}, listen port ${c.listenPort}, ` +
          `body limit ${formatBytes(c.bodyCaptureLimit)}`,
      );
    }
  } else if (!status.available) {
    lines.push(`capture: unavailable: ${escapeInline(status.reason ?? 'no reason given')}`);
  } else {
    lines.push('capture: stopped');
  }
  if (status.rules.length) {
    lines.push('rules applied:');
    for (const rule of status.rules) lines.push(`  ${escapeInline(rule)}`);
  }
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
  }
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
    '',
  ].join('\n');
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

/**
 * Decodes as UTF-8 when the bytes are valid UTF-8 without NUL; otherwise null (binary). Other
 * control characters do not make a body binary: they are shown escaped.
 */
export function decodeText(bytes: Uint8Array): string | null {
  if (bytes.includes(0)) return null;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return null;
  }
}

/** `hexdump -C`-style lines for the first `maxBytes` bytes; the ASCII column shows only printable ASCII. */
export function hexSummary(bytes: Uint8Array, maxBytes = 256): string {
  const lines: string[] = [];
  const shown = bytes.subarray(0, maxBytes);
  for (let off = 0; off < shown.length; off += 16) {
    const row = shown.subarray(off, off + 16);
    const hex = [...row].map((b) => b.toString(16).padStart(2, '0'));
    const left = hex.slice(0, 8).join(' ');
    const right = hex.slice(8).join(' ');
    const ascii = [...row].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
    lines.push(`${off.toString(16).padStart(8, '0')}  ${`${left}  ${right}`.padEnd(48)}  |${ascii}|`);
  }
  if (bytes.length > shown.length) lines.push(`... ${bytes.length - shown.length} more bytes`);
  return lines.join('\n');
}

/** A captured body for a terminal: a note on size/truncation, then escaped text or a hex summary; no final newline. */
export function formatBody(bytes: Uint8Array, info: BodyInfo): string {
  if (info.size === 0 && bytes.length === 0) return '(no body)';
  const notes: string[] = [`${info.size} bytes`];
  if (info.truncated) notes.push(`only the first ${info.captured} captured`);
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
  const tls = [
    ex.tls.sni !== undefined ? `sni ${escapeInline(ex.tls.sni)}` : 'no sni',
    ...(ex.tls.clientVersion ? [`client ${escapeInline(ex.tls.clientVersion)}`] : []),
    ...(ex.tls.upstreamVersion ? [`upstream ${escapeInline(ex.tls.upstreamVersion)}`] : []),
    ...(ex.tls.alpn ? [`alpn ${escapeInline(ex.tls.alpn)}`] : []),
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
  lines.push('', '--- request', `${escapeInline(req.method)} ${escapeInline(req.url)} HTTP/${escapeInline(req.httpVersion)}`);
  lines.push(...formatHeaders(req.headers), '', formatBody(Buffer.from(detail.requestBody, 'base64'), req.body));
  if (res) {
    lines.push('', '--- response', `HTTP/${escapeInline(res.httpVersion)} ${res.status} ${escapeInline(res.statusMessage)}`.trimEnd());
    lines.push(...formatHeaders(res.headers), '', formatBody(Buffer.from(detail.responseBody, 'base64'), res.body));
  }
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
