/**
 * Exchanges (plus their captured bodies) → HAR 1.2, pure, shared by the helper's streamed
 * `exchanges.export` and the dashboard's export. Field names and rules follow the HAR 1.2 spec
 * (http://www.softwareishard.com/blog/har-12-spec/): every required field is present, unknown sizes
 * are -1, `time` is the sum of the timings that are not -1, and our own additions start with `_`.
 * Exchanges that never got a response still get the required `response` object (status 0, as
 * browsers export failed requests) plus `_error`. `toHar` builds a whole document; `harHead`,
 * `harEntry` and `HAR_TAIL` build the same document piece by piece (head, entries joined by
 * commas, tail), so a writer holds one entry at a time. Nothing here fetches bodies or writes files.
 */
import type { DecodedBody, Exchange, ExchangeDetail, Headers } from '../model/exchange.js';

/** UTF-8 text when the bytes are valid UTF-8 without NUL; otherwise null (binary). */
function decodeText(bytes: Uint8Array): string | null {
  if (bytes.includes(0)) return null;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return null;
  }
}

/** First value of header `name`, case-insensitively. */
function headerValue(headers: Headers, name: string): string | undefined {
  const lower = name.toLowerCase();
  return headers.find(([n]) => n.toLowerCase() === lower)?.[1];
}

export interface HarNameValue {
  name: string;
  value: string;
}

export interface HarCookie {
  name: string;
  value: string;
}

export interface HarContent {
  size: number;
  /** Bytes saved by the Content-Encoding: decoded size minus the size on the wire. */
  compression?: number;
  mimeType: string;
  text?: string;
  encoding?: 'base64';
  comment?: string;
}

export interface HarEntry {
  startedDateTime: string;
  time: number;
  request: {
    method: string;
    url: string;
    httpVersion: string;
    cookies: HarCookie[];
    headers: HarNameValue[];
    queryString: HarNameValue[];
    postData?: { mimeType: string; text: string; comment?: string; _encoding?: 'base64' };
    headersSize: number;
    bodySize: number;
  };
  response: {
    status: number;
    statusText: string;
    httpVersion: string;
    cookies: HarCookie[];
    headers: HarNameValue[];
    content: HarContent;
    redirectURL: string;
    headersSize: number;
    bodySize: number;
  };
  cache: Record<string, never>;
  timings: { blocked: number; dns: number; connect: number; send: number; wait: number; receive: number; ssl: number };
  serverIPAddress: string;
  connection: string;
  comment?: string;
  _id: number;
  _state: Exchange['state'];
  _error?: { kind: string; message: string; code?: string };
  _tls: Exchange['tls'];
}

export interface Har {
  log: {
    version: '1.2';
    creator: HarCreator;
    comment: string;
    entries: HarEntry[];
  };
}

/** One exchange with the bodies `exchanges.get` returned, when it could be fetched. */
export interface HarItem {
  readonly exchange: Exchange;
  readonly requestBody?: Uint8Array;
  readonly responseBody?: Uint8Array;
  /** Comment on a body that is absent although the exchange had one. Default `body not fetched`. */
  readonly missingBodyNote?: string;
  /** The response body with its Content-Encoding undone (exchanges.get), used for `content.text` as HAR wants it. */
  readonly decodedResponseBody?: HarDecodedBody;
  /** The same for the request body (`postData.text`). */
  readonly decodedRequestBody?: HarDecodedBody;
}

/** A body the helper decoded (see DecodedBodySchema), as bytes. */
export interface HarDecodedBody {
  readonly encoding: string;
  readonly bytes: Uint8Array;
  /** Not the whole decoded body (the capture or the decoding stopped early). */
  readonly truncated: boolean;
}

/** A decoded body as HarItem wants it; none when decoding failed (the wire bytes are then the best text there is). */
export function harDecoded(d: DecodedBody | undefined): HarDecodedBody | undefined {
  // A failed decoding leaves the wire bytes as the best text there is.
  return d && d.error === undefined ? { encoding: d.encoding, bytes: Buffer.from(d.base64, 'base64'), truncated: d.truncated } : undefined;
}

/** The HarItem for an `exchanges.get` result: bodies from base64, decoded bodies when the helper made them. */
export function harItemFromDetail(d: ExchangeDetail): HarItem {
  const decodedRequestBody = harDecoded(d.decodedRequestBody);
  const decodedResponseBody = harDecoded(d.decodedResponseBody);
  return {
    exchange: d.exchange,
    requestBody: Buffer.from(d.requestBody, 'base64'),
    responseBody: Buffer.from(d.responseBody, 'base64'),
    ...(decodedRequestBody ? { decodedRequestBody } : {}),
    ...(decodedResponseBody ? { decodedResponseBody } : {}),
  };
}

/** The comment on a decoded body: what was undone, and whether the text is all of it. */
function decodedNote(d: HarDecodedBody): string {
  return `decoded by tproxy from Content-Encoding ${d.encoding}${d.truncated ? '; the text is only the start of the body' : ''}`;
}

/** Who wrote the document: goes into `log.creator` and the log comment. */
export interface HarCreator {
  name: string;
  version: string;
}

function logComment(creator: HarCreator): string {
  return `Exported by ${creator.name}. Header values that carry credentials (Authorization, Cookie, API keys, ...) were masked by tproxy-helper at capture time.`;
}

function harHeaders(headers: Headers): HarNameValue[] {
  return headers.map(([name, value]) => ({ name, value }));
}

/** `a=1; b=2` → cookies, as the client sent them (values may be masked). */
function requestCookies(headers: Headers): HarCookie[] {
  return headers
    .filter(([n]) => n.toLowerCase() === 'cookie')
    .flatMap(([, v]) => v.split(';'))
    .map((part) => part.trim())
    .filter((part) => part.includes('='))
    .map((part) => ({ name: part.slice(0, part.indexOf('=')), value: part.slice(part.indexOf('=') + 1) }));
}

/** The `name=value` pair of each Set-Cookie; attributes are left out. */
function responseCookies(headers: Headers): HarCookie[] {
  return headers
    .filter(([n]) => n.toLowerCase() === 'set-cookie')
    .map(([, v]) => v.split(';')[0]!.trim())
    .filter((pair) => pair.includes('='))
    .map((pair) => ({ name: pair.slice(0, pair.indexOf('=')), value: pair.slice(pair.indexOf('=') + 1) }));
}

function queryString(url: string): HarNameValue[] {
  const q = url.indexOf('?');
  if (q === -1) return [];
  const hash = url.indexOf('#', q);
  const params = new URLSearchParams(url.slice(q + 1, hash === -1 ? undefined : hash));
  return [...params].map(([name, value]) => ({ name, value }));
}

/** Text when the bytes are UTF-8, else base64. */
function bodyText(bytes: Uint8Array): { text: string; base64: boolean } {
  const text = decodeText(bytes);
  return text !== null ? { text, base64: false } : { text: Buffer.from(bytes).toString('base64'), base64: true };
}

function truncationNote(size: number, captured: number): string | undefined {
  return captured < size ? `tproxy captured the first ${captured} of ${size} bytes` : undefined;
}

/** Rounds to microseconds: HAR times are milliseconds, and float noise should not leak into files. */
const ms = (n: number) => Math.round(n * 1000) / 1000;

/** HAR timings from our offsets; the phases we cannot see (blocked, dns, ssl, send) are -1 or 0. */
function timings(ex: Exchange): HarEntry['timings'] {
  const t = ex.timing;
  const connect = t.upstreamConnected !== undefined ? ms(t.upstreamConnected) : -1;
  const start = t.upstreamConnected ?? 0;
  const wait = t.firstByte !== undefined ? ms(Math.max(0, t.firstByte - start)) : t.end !== undefined ? ms(Math.max(0, t.end - start)) : 0;
  const receive = t.firstByte !== undefined && t.end !== undefined ? ms(Math.max(0, t.end - t.firstByte)) : 0;
  // `send` is required and cannot be -1; the request body is relayed while connecting, so 0.
  return { blocked: -1, dns: -1, connect, send: 0, wait, receive, ssl: -1 };
}

export function harEntry(item: HarItem): HarEntry {
  const ex = item.exchange;
  const req = ex.request;
  const res = ex.response;
  const t = timings(ex);
  const entry: HarEntry = {
    startedDateTime: new Date(ex.timing.startedAt).toISOString(),
    time: ms([t.blocked, t.dns, t.connect, t.send, t.wait, t.receive].filter((x) => x >= 0).reduce((a, b) => a + b, 0)),
    request: {
      method: req.method,
      url: req.url,
      httpVersion: `HTTP/${req.httpVersion}`,
      cookies: requestCookies(req.headers),
      headers: harHeaders(req.headers),
      queryString: queryString(req.url),
      headersSize: -1,
      bodySize: req.body.size,
    },
    response: {
      status: res?.status ?? 0,
      statusText: res?.statusMessage ?? '',
      httpVersion: res ? `HTTP/${res.httpVersion}` : '',
      cookies: res ? responseCookies(res.headers) : [],
      headers: res ? harHeaders(res.headers) : [],
      content: { size: 0, mimeType: res ? (headerValue(res.headers, 'content-type') ?? '') : '' },
      redirectURL: res ? (headerValue(res.headers, 'location') ?? '') : '',
      headersSize: -1,
      bodySize: res ? res.body.size : -1,
    },
    cache: {},
    timings: t,
    serverIPAddress: ex.server.address,
    connection: `${ex.client.address}:${ex.client.port}`,
    _id: ex.id,
    _state: ex.state,
    _tls: ex.tls,
  };
  if (req.body.size > 0 || (item.requestBody?.length ?? 0) > 0) {
    const decoded = item.decodedRequestBody;
    const body = decoded ? bodyText(decoded.bytes) : item.requestBody ? bodyText(item.requestBody) : undefined;
    const cut = item.requestBody ? truncationNote(req.body.size, item.requestBody.length) : (item.missingBodyNote ?? 'body not fetched');
    const note = [cut, decoded ? decodedNote(decoded) : undefined].filter(Boolean).join('; ') || undefined;
    entry.request.postData = {
      mimeType: headerValue(req.headers, 'content-type') ?? '',
      text: body?.text ?? '',
      ...(body?.base64 ? { _encoding: 'base64' as const } : {}),
      ...(note ? { comment: note } : {}),
    };
  }
  if (res) {
    // HAR's content.text is the decoded body; bodySize stays the size on the wire.
    const decoded = item.decodedResponseBody;
    const body = decoded ? bodyText(decoded.bytes) : item.responseBody ? bodyText(item.responseBody) : undefined;
    const cut = item.responseBody ? truncationNote(res.body.size, item.responseBody.length) : res.body.size > 0 ? (item.missingBodyNote ?? 'body not fetched') : undefined;
    const note = [cut, decoded ? decodedNote(decoded) : undefined].filter(Boolean).join('; ') || undefined;
    const whole = decoded && !decoded.truncated && !res.body.truncated;
    entry.response.content = {
      ...entry.response.content,
      size: decoded ? decoded.bytes.length : (item.responseBody?.length ?? 0),
      ...(whole ? { compression: decoded.bytes.length - res.body.size } : {}),
      ...(body && body.text !== '' ? { text: body.text } : {}),
      ...(body?.base64 ? { encoding: 'base64' as const } : {}),
      ...(note ? { comment: note } : {}),
    };
  }
  if (ex.error) entry._error = { kind: ex.error.kind, message: ex.error.message, ...(ex.error.code ? { code: ex.error.code } : {}) };
  if (ex.state === 'in-flight') entry.comment = 'still in flight when exported';
  return entry;
}

/** Oldest first, as HAR prefers; ties (same millisecond) by id, which is arrival order. */
export function compareHarItems(a: HarItem, b: HarItem): number {
  return a.exchange.timing.startedAt - b.exchange.timing.startedAt || a.exchange.id - b.exchange.id;
}

export function toHar(items: readonly HarItem[], creator: HarCreator): Har {
  return {
    log: {
      version: '1.2',
      creator: { name: creator.name, version: creator.version },
      comment: logComment(creator),
      entries: [...items].sort(compareHarItems).map(harEntry),
    },
  };
}

/**
 * The document up to and including the `[` of `entries`. `harHead(c) + entries.map((e) =>
 * JSON.stringify(e)).join(',') + HAR_TAIL` is a valid HAR 1.2 document equal to `toHar`'s.
 */
export function harHead(creator: HarCreator): string {
  const head = JSON.stringify({ log: { version: '1.2', creator: { name: creator.name, version: creator.version }, comment: logComment(creator), entries: [] } });
  return head.slice(0, -']}}'.length);
}

/** Closes what `harHead` opened. */
export const HAR_TAIL = ']}}';
