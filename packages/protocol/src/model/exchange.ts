/**
 * One captured HTTP exchange as it travels over the protocol: plain, documented data. The helper
 * builds these as immutable snapshots of a live exchange; clients only ever read them.
 * Bodies are not part of the summary: `exchanges.get` returns them separately, base64-encoded.
 */
import { z } from 'zod';

/** A network endpoint. */
export const EndpointSchema = z.object({
  /** IPv4 or IPv6 address, without brackets. */
  address: z.string(),
  /** TCP port. */
  port: z.number().int(),
});

/** Headers in wire order, duplicates kept, names in the case the peer sent them. */
export const HeadersSchema = z.array(z.tuple([z.string(), z.string()]));

export const ExchangeStateSchema = z.enum(['in-flight', 'complete', 'error']);

/**
 * Why an exchange failed, as opposed to an HTTP error status which is a successful exchange.
 * - `upstream-connect`: the original destination could not be reached (refused, timeout, unreachable).
 * - `upstream-tls`: the upstream's TLS handshake or certificate was rejected.
 * - `upstream-protocol`: the upstream answered something that is not valid HTTP.
 * - `upstream-aborted`: the upstream closed or reset mid-exchange.
 * - `client-aborted`: the intercepted client went away before the exchange finished.
 * - `client-protocol`: the client sent something that is not valid HTTP.
 */
export const ExchangeErrorKindSchema = z.enum([
  'upstream-connect',
  'upstream-tls',
  'upstream-protocol',
  'upstream-aborted',
  'client-aborted',
  'client-protocol',
]);

export const ExchangeErrorSchema = z.object({
  kind: ExchangeErrorKindSchema,
  /** One line, human readable: what failed and, where known, the errno or TLS reason. */
  message: z.string(),
  /** Node error code where there is one (ECONNREFUSED, UNABLE_TO_VERIFY_LEAF_SIGNATURE, ...). */
  code: z.string().optional(),
});

/** A body as far as it was seen: total size on the wire (after de-chunking) and the captured part. */
export const BodyInfoSchema = z.object({
  /** Bytes that passed through, even past the capture limit. */
  size: z.number().int().nonnegative(),
  /** Bytes kept in the capture (at most the body capture limit). */
  captured: z.number().int().nonnegative(),
  /** True when `size` exceeds what was captured. */
  truncated: z.boolean(),
});

export const RequestInfoSchema = z.object({
  method: z.string(),
  /** Absolute URL as the client meant it: `https://<Host header or SNI>[:port]<path>`. */
  url: z.string(),
  /** `1.1`, `1.0`, or `2` for an HTTP/2 stream. */
  httpVersion: z.string(),
  /** Request headers with secrets masked (see `maskHeaders`); HTTP/2 pseudo-headers are not listed (they are `method` and `url`). */
  headers: HeadersSchema,
  body: BodyInfoSchema,
  /** Trailer fields the client sent after the body (HTTP/2 trailing HEADERS, chunked trailers), masked; absent when none. */
  trailers: HeadersSchema.optional(),
});

/** One server-sent event (HTML Living Standard, "Parsing an event stream"), parsed by the helper as it passed through. */
export const SseEventSchema = z.object({
  /** Position in the stream, from 0; kept and merely counted events share the numbering. */
  seq: z.number().int().nonnegative(),
  /** When the blank line ending the event passed through: ms offset from `timing.startedAt`, the clock of every `timing` field. */
  t: z.number(),
  /** `event:` field; absent means the default type `message`. */
  event: z.string().optional(),
  /** `id:` field, when this event set one. */
  id: z.string().optional(),
  /** The `data:` lines joined with `\n`; empty for a block with fields but no data (which an EventSource would not fire). Untrusted text. */
  data: z.string(),
  /** `retry:` field (ms), when the event carried a valid one. */
  retry: z.number().int().nonnegative().optional(),
  /** True when `data` (or another field) was cut: the event was larger than the helper keeps, or this is a preview. */
  truncated: z.boolean().optional(),
});

/**
 * The events of a `text/event-stream` response, updated while the stream is open (`exchange.updated`,
 * at most about every 100 ms). The summary carries only the newest few, previewed, so that lists and
 * notifications stay small; `exchanges.get` returns every kept event in `sseEvents`.
 */
export const SseInfoSchema = z.object({
  /** Events completed so far, kept or not. */
  count: z.number().int().nonnegative(),
  /** Events kept (the first ones, up to the helper's count and byte caps): `exchanges.get` `sseEvents`. */
  captured: z.number().int().nonnegative(),
  /** True when some events or some event data were not kept. */
  truncated: z.boolean(),
  /** The newest events seen (kept or not), at most 8, each `data` cut to 256 characters (`truncated` then set). */
  events: z.array(SseEventSchema),
});

export const ResponseInfoSchema = z.object({
  status: z.number().int(),
  statusMessage: z.string(),
  httpVersion: z.string(),
  /** Response headers with secrets masked; the HTTP/2 `:status` pseudo-header is `status`, not listed. */
  headers: HeadersSchema,
  body: BodyInfoSchema,
  /** Trailer fields after the body (e.g. gRPC's `grpc-status`), masked; absent when none. A trailers-only response (HEADERS with END_STREAM) has them in `headers`. */
  trailers: HeadersSchema.optional(),
  /** Present for a `text/event-stream` response: its events as the helper parsed them, live (see SseInfoSchema). */
  sse: SseInfoSchema.optional(),
});

export const TlsInfoSchema = z.object({
  /** Server name the client sent, if any. */
  sni: z.string().optional(),
  /** Negotiated TLS version towards the client, e.g. `TLSv1.3`. */
  clientVersion: z.string().optional(),
  /** Negotiated TLS version towards the upstream. */
  upstreamVersion: z.string().optional(),
  /** ALPN protocol agreed with the client (`http/1.1`, `h2`), if any: the one the upstream chose. */
  alpn: z.string().optional(),
  /** ALPN protocols the client offered, in its order (from its ClientHello). */
  clientAlpn: z.array(z.string()).optional(),
});

/**
 * Timings: `startedAt` is wall-clock epoch milliseconds; every other value is a monotonic offset in
 * milliseconds from it, so clock changes never produce negative durations.
 */
export const TimingSchema = z.object({
  /** Wall-clock time the request head was received from the client (epoch ms). */
  startedAt: z.number(),
  /** Offset at which an upstream connection was ready for this request (new or reused). */
  upstreamConnected: z.number().optional(),
  /** Offset at which the first byte of the response head arrived from the upstream. */
  firstByte: z.number().optional(),
  /** Offset at which the exchange ended (complete or failed). */
  end: z.number().optional(),
});

/** Longest `command` the helper reports, in UTF-16 code units; longer command lines end in `…`. */
export const PROCESS_COMMAND_MAX = 1024;

/**
 * The local program that opened an intercepted connection, as the kernel's socket tables
 * (/proc/net/tcp, tcp6) and /proc/<pid> told the helper when it accepted the connection. It is a
 * best-effort snapshot: the process may have exited or exec'd since, and the lookup gives up after a
 * short bound, in which case only `uid` (which comes with the socket itself) is known. Every string
 * here is controlled by the local program (its argv), so clients treat it as untrusted text.
 */
export const ProcessInfoSchema = z.object({
  /** Process id owning the socket; absent when no process holding it was found within the bound. */
  pid: z.number().int().positive().optional(),
  /** Uid the socket belongs to (the creator's fsuid, per the kernel's socket table). */
  uid: z.number().int().nonnegative(),
  /** User name for `uid` from /etc/passwd, when there is an entry. */
  user: z.string().optional(),
  /** Command line (/proc/<pid>/cmdline) joined with spaces, at most PROCESS_COMMAND_MAX long; `[comm]` for a process without one. */
  command: z.string().max(PROCESS_COMMAND_MAX + 1).optional(),
});

/** Direction of a WebSocket message: `up` is client → server, `down` server → client. */
export const WebSocketDirectionSchema = z.enum(['up', 'down']);

/** One WebSocket message (data) or control frame, as the helper's frame parser saw it. */
export const WebSocketMessageSchema = z.object({
  /** Who sent it. */
  dir: WebSocketDirectionSchema,
  /** Wall-clock time it was complete (epoch ms). */
  time: z.number(),
  /** RFC 6455 opcode: 1 text, 2 binary, 8 close, 9 ping, 10 pong. */
  opcode: z.number().int(),
  /** Payload bytes (all fragments together; still compressed when `compressed`). */
  size: z.number().int().nonnegative(),
  /** Text of a text message (up to the capture budget) or a close frame's reason. Untrusted. */
  text: z.string().optional(),
  /** True when the text is cut short by the capture budget. */
  truncated: z.boolean().optional(),
  /** permessage-deflate payload: counted, not decoded. */
  compressed: z.boolean().optional(),
  /** Status code of a close frame. */
  closeCode: z.number().int().optional(),
});

/**
 * A WebSocket connection relayed after a 101 response. Frames go through untouched; these are
 * counts from a parsed copy. Updated while the connection is open (`exchange.updated`).
 */
export const WebSocketInfoSchema = z.object({
  /** Data messages (text or binary) from the client. */
  messagesUp: z.number().int().nonnegative(),
  /** Data messages from the server. */
  messagesDown: z.number().int().nonnegative(),
  /** Bytes the client sent after the handshake (frame headers included). */
  bytesUp: z.number().int().nonnegative(),
  /** Bytes the server sent after the handshake. */
  bytesDown: z.number().int().nonnegative(),
  /** Code of the first close frame seen, either direction. */
  closeCode: z.number().int().optional(),
  /** First framing violation seen (`client: ...` or `server: ...`); counting stopped there, relaying did not. */
  error: z.string().optional(),
  /** The first messages and control frames, capped (the counters go on past the cap). */
  messages: z.array(WebSocketMessageSchema),
});

/**
 * Why a connection was relayed opaquely instead of decrypted:
 * - `not-tls`: the first bytes were not a TLS ClientHello (another protocol on an intercepted port).
 * - `no-sni`: TLS without a server name; without one we cannot mint a certificate the client would check.
 * - `sni-rejected`: the server name is not one we mint for (wildcard, bad characters, `_`: see `detail`).
 * - `invalid-client-hello`: it starts like TLS but the ClientHello is malformed or too large.
 * - `client-hello-timeout`: the client did not send a complete ClientHello in time (it may speak first only after the server).
 */
export const PassthroughReasonSchema = z.enum(['not-tls', 'no-sni', 'sni-rejected', 'invalid-client-hello', 'client-hello-timeout']);

/** A connection relayed byte for byte to its original destination, without decryption. */
export const PassthroughInfoSchema = z.object({
  reason: PassthroughReasonSchema,
  /** One line: what exactly made it a passthrough (e.g. the parser's complaint). Untrusted input may appear, escaped by clients. */
  detail: z.string().optional(),
  /** Bytes the client sent (including the first bytes we looked at). */
  bytesUp: z.number().int().nonnegative(),
  /** Bytes the destination sent back. */
  bytesDown: z.number().int().nonnegative(),
});

export const ExchangeSchema = z.object({
  /** Monotonic id, unique for the helper's lifetime; newer exchanges have larger ids. */
  id: z.number().int().positive(),
  state: ExchangeStateSchema,
  /** The intercepted program's end of the connection. */
  client: EndpointSchema,
  /** The original destination: where the client was connecting, and where we forwarded to. */
  server: EndpointSchema,
  tls: TlsInfoSchema,
  /**
   * `passthrough` for a connection relayed opaquely (see `passthrough`); absent or `http` for a
   * decrypted exchange. A passthrough entry has `request.method` `TLS` or `TCP`, `request.url`
   * `tls://host:port` / `tcp://address:port`, and its duration in `timing`.
   */
  kind: z.enum(['http', 'passthrough']).optional(),
  /** Present when `kind` is `passthrough`: why, and the bytes each way (updated while open). */
  passthrough: PassthroughInfoSchema.optional(),
  /** HTTP/2 stream id on the client's connection (odd, ≥ 1); absent for HTTP/1.x, where each exchange has the connection to itself. */
  streamId: z.number().int().positive().optional(),
  /** The local process that opened the connection, when attribution found it (see ProcessInfoSchema). */
  process: ProcessInfoSchema.optional(),
  request: RequestInfoSchema,
  /** Present once the upstream's response head arrived, or when the helper answered itself (502). */
  response: ResponseInfoSchema.optional(),
  /** Present when state is `error`. */
  error: ExchangeErrorSchema.optional(),
  timing: TimingSchema,
  /** Present once a WebSocket upgrade succeeded (101): the relayed messages. */
  websocket: WebSocketInfoSchema.optional(),
});

/**
 * A captured body with its Content-Encoding undone by the helper, for display only: the wire bytes
 * were relayed untouched. Decoding is capped (1 MiB of output) so a compression bomb costs nothing,
 * and a failure is reported in `error`, never thrown.
 */
export const DecodedBodySchema = z.object({
  /** The Content-Encoding that was undone, lower case, as declared (e.g. `gzip`, `gzip, br`: br is undone first). */
  encoding: z.string(),
  /** The decoded bytes, base64: all of them, or as far as decoding got (see `truncated`, `error`). */
  base64: z.string(),
  /** Length of the decoded bytes. */
  size: z.number().int().nonnegative(),
  /** True when these are not the whole decoded body: the capture was truncated, or decoding stopped at the cap. */
  truncated: z.boolean(),
  /** Why decoding failed or stopped early (unsupported coding, corrupt or mislabelled data); absent when it succeeded. */
  error: z.string().optional(),
});

/** An exchange with its captured bodies, as returned by `exchanges.get`. */
export const ExchangeDetailSchema = z.object({
  exchange: ExchangeSchema,
  /** Captured request body, base64; empty string when there was none. */
  requestBody: z.string(),
  /** Captured response body, base64; empty string when there was none. */
  responseBody: z.string(),
  /** The request body with its Content-Encoding undone; present when the request declared one and a body was captured. */
  decodedRequestBody: DecodedBodySchema.optional(),
  /** The response body with its Content-Encoding undone (gzip, deflate, br, zstd, stacked); present when the response declared one and a body was captured. */
  decodedResponseBody: DecodedBodySchema.optional(),
  /** Every kept event of a `text/event-stream` response, oldest first (the summary's `sse.events` holds only the newest). */
  sseEvents: z.array(SseEventSchema).optional(),
});

export type Endpoint = z.infer<typeof EndpointSchema>;
export type Headers = z.infer<typeof HeadersSchema>;
export type ExchangeState = z.infer<typeof ExchangeStateSchema>;
export type ExchangeErrorKind = z.infer<typeof ExchangeErrorKindSchema>;
export type ExchangeError = z.infer<typeof ExchangeErrorSchema>;
export type BodyInfo = z.infer<typeof BodyInfoSchema>;
export type RequestInfo = z.infer<typeof RequestInfoSchema>;
export type ResponseInfo = z.infer<typeof ResponseInfoSchema>;
export type TlsInfo = z.infer<typeof TlsInfoSchema>;
export type Timing = z.infer<typeof TimingSchema>;
export type ProcessInfo = z.infer<typeof ProcessInfoSchema>;
export type WebSocketDirection = z.infer<typeof WebSocketDirectionSchema>;
export type WebSocketMessage = z.infer<typeof WebSocketMessageSchema>;
export type WebSocketInfo = z.infer<typeof WebSocketInfoSchema>;
export type PassthroughReason = z.infer<typeof PassthroughReasonSchema>;
export type PassthroughInfo = z.infer<typeof PassthroughInfoSchema>;
export type Exchange = z.infer<typeof ExchangeSchema>;
export type ExchangeDetail = z.infer<typeof ExchangeDetailSchema>;
export type SseEvent = z.infer<typeof SseEventSchema>;
export type SseInfo = z.infer<typeof SseInfoSchema>;
export type DecodedBody = z.infer<typeof DecodedBodySchema>;
