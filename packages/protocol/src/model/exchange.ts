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
  /** `1.1` or `1.0`. */
  httpVersion: z.string(),
  /** Request headers with secrets masked (see `maskHeaders`). */
  headers: HeadersSchema,
  body: BodyInfoSchema,
});

export const ResponseInfoSchema = z.object({
  status: z.number().int(),
  statusMessage: z.string(),
  httpVersion: z.string(),
  /** Response headers with secrets masked. */
  headers: HeadersSchema,
  body: BodyInfoSchema,
});

export const TlsInfoSchema = z.object({
  /** Server name the client sent, if any. */
  sni: z.string().optional(),
  /** Negotiated TLS version towards the client, e.g. `TLSv1.3`. */
  clientVersion: z.string().optional(),
  /** Negotiated TLS version towards the upstream. */
  upstreamVersion: z.string().optional(),
  /** ALPN protocol agreed with the client (`http/1.1`), if any. */
  alpn: z.string().optional(),
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

export const ExchangeSchema = z.object({
  /** Monotonic id, unique for the helper's lifetime; newer exchanges have larger ids. */
  id: z.number().int().positive(),
  state: ExchangeStateSchema,
  /** The intercepted program's end of the connection. */
  client: EndpointSchema,
  /** The original destination: where the client was connecting, and where we forwarded to. */
  server: EndpointSchema,
  tls: TlsInfoSchema,
  /** The local process that opened the connection, when attribution found it (see ProcessInfoSchema). */
  process: ProcessInfoSchema.optional(),
  request: RequestInfoSchema,
  /** Present once the upstream's response head arrived, or when the helper answered itself (502). */
  response: ResponseInfoSchema.optional(),
  /** Present when state is `error`. */
  error: ExchangeErrorSchema.optional(),
  timing: TimingSchema,
});

/** An exchange with its captured bodies, as returned by `exchanges.get`. */
export const ExchangeDetailSchema = z.object({
  exchange: ExchangeSchema,
  /** Captured request body, base64; empty string when there was none. */
  requestBody: z.string(),
  /** Captured response body, base64; empty string when there was none. */
  responseBody: z.string(),
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
export type Exchange = z.infer<typeof ExchangeSchema>;
export type ExchangeDetail = z.infer<typeof ExchangeDetailSchema>;
