/**
 * One exchange while the engine works on it: mutable, owned by the engine's request handler.
 * Everything that leaves the helper goes through `snapshot()`, a deep copy, so subscribers and the
 * RPC layer never see an object that changes under them. Times are monotonic offsets from a
 * wall-clock start (performance.now), so a clock step never yields a negative duration.
 */
import { performance } from 'node:perf_hooks';
import type { Endpoint, Exchange, ExchangeError, ExchangeState, Headers, ProcessInfo, SseEvent, TlsInfo, WebSocketInfo } from '@tproxy/protocol';
import { BodyCapture } from './body-capture.js';
import { SseCapture, isEventStream, sseLimitsFor } from './sse.js';

export interface ExchangeStart {
  client: Endpoint;
  server: Endpoint;
  tls: TlsInfo;
  /** The local process behind the connection, when attribution already finished (see setProcess). */
  process?: ProcessInfo;
  method: string;
  url: string;
  httpVersion: string;
  /** Already masked. */
  headers: Headers;
  bodyCaptureLimit: number;
  /** HTTP/2 stream id on the client's connection; absent for HTTP/1.x. */
  streamId?: number;
}

interface ResponseHead {
  status: number;
  statusMessage: string;
  httpVersion: string;
  headers: Headers;
}

/** Rough per-exchange overhead besides bodies and headers, for the buffer's byte bound. */
const BASE_BYTES = 512;

/**
 * Most often an open event stream announces new events (see onSseProgress): a stream writing
 * thousands of events a second must not flood subscribers with a snapshot per event.
 */
export const SSE_UPDATE_INTERVAL_MS = 100;

export class LiveExchange {
  id = 0;
  state: ExchangeState = 'in-flight';
  readonly requestBody: BodyCapture;
  readonly responseBody: BodyCapture;
  private response: ResponseHead | undefined;
  /** Trailer fields (already masked), set once the body ended with them. */
  private requestTrailers: Headers | undefined;
  private responseTrailers: Headers | undefined;
  private error: ExchangeError | undefined;
  private readonly startedAt = Date.now();
  private readonly t0 = performance.now();
  private upstreamConnected: number | undefined;
  private firstByte: number | undefined;
  private end: number | undefined;
  /** Set once a WebSocket upgrade succeeded: its live counters (engine/websocket.ts). */
  private websocket: { info(): WebSocketInfo; approxBytes(): number } | undefined;
  /** Set when the response is a `text/event-stream` without a Content-Encoding. */
  private sse: SseCapture | undefined;
  private sseListener: (() => void) | undefined;
  private sseTimer: NodeJS.Timeout | undefined;
  private sseAnnounced = -Infinity;

  constructor(private readonly start: ExchangeStart) {
    this.requestBody = new BodyCapture(start.bodyCaptureLimit);
    this.responseBody = new BodyCapture(start.bodyCaptureLimit);
  }

  private offset(): number {
    return Math.round((performance.now() - this.t0) * 1000) / 1000;
  }

  markUpstreamConnected(): void {
    this.upstreamConnected ??= this.offset();
  }

  setTlsUpstreamVersion(version: string | undefined): void {
    if (version) this.start.tls = { ...this.start.tls, upstreamVersion: version };
  }

  /** Attribution that finished after the exchange was recorded. */
  setProcess(process: ProcessInfo): void {
    this.start.process = process;
  }

  setResponse(head: ResponseHead): void {
    this.firstByte ??= this.offset();
    this.response = head;
    const header = (name: string) => head.headers.find(([n]) => n.toLowerCase() === name)?.[1];
    const coding = header('content-encoding')?.trim().toLowerCase();
    // A compressed stream's events cannot be read from its bytes; its body is decoded on display.
    if (!this.sse && isEventStream(header('content-type')) && (!coding || coding === 'identity')) {
      const sse = new SseCapture(sseLimitsFor(this.start.bodyCaptureLimit));
      this.sse = sse;
      this.responseBody.tap = (chunk) => {
        if (sse.push(chunk, this.offset()) > 0) this.announceSse();
      };
    }
  }

  /**
   * `listener` is called when an open event stream completed new events, at once for the first and
   * then at most every SSE_UPDATE_INTERVAL_MS; never after the exchange finished (its completion
   * carries the final events). The engine passes `() => store.update(ex)`.
   */
  onSseProgress(listener: () => void): void {
    this.sseListener = listener;
  }

  private announceSse(): void {
    if (!this.sseListener || this.sseTimer || this.finished) return;
    const fire = () => {
      this.sseTimer = undefined;
      if (this.finished) return;
      this.sseAnnounced = performance.now();
      this.sseListener?.();
    };
    const wait = this.sseAnnounced + SSE_UPDATE_INTERVAL_MS - performance.now();
    if (wait <= 0) fire();
    else this.sseTimer = setTimeout(fire, wait).unref();
  }

  /** Every kept SSE event (exchanges.get); undefined when the response is not an event stream. */
  sseEvents(): SseEvent[] | undefined {
    return this.sse?.events();
  }

  /** Already masked; an empty list records nothing. */
  setRequestTrailers(trailers: Headers): void {
    if (trailers.length > 0) this.requestTrailers = trailers;
  }

  /** Already masked; an empty list records nothing. */
  setResponseTrailers(trailers: Headers): void {
    if (trailers.length > 0) this.responseTrailers = trailers;
  }

  /** The exchange became a WebSocket connection; snapshots carry its counters from now on. */
  setWebSocket(ws: { info(): WebSocketInfo; approxBytes(): number }): void {
    this.websocket = ws;
  }

  get hasResponse(): boolean {
    return this.response !== undefined;
  }

  complete(): void {
    if (this.state !== 'in-flight') return;
    this.state = 'complete';
    this.end = this.offset();
    this.endSse();
  }

  fail(error: ExchangeError): void {
    if (this.state !== 'in-flight') return;
    this.state = 'error';
    this.error = error;
    this.end = this.offset();
    this.endSse();
  }

  private endSse(): void {
    clearTimeout(this.sseTimer);
    this.sseTimer = undefined;
    this.sse?.end();
  }

  get finished(): boolean {
    return this.state !== 'in-flight';
  }

  /** Approximate memory held, for the buffer's byte bound. */
  approxBytes(): number {
    const headerBytes = (h: Headers | undefined) => (h ?? []).reduce((n, [k, v]) => n + k.length + v.length, 0);
    return (
      BASE_BYTES +
      this.start.url.length +
      (this.start.process?.command?.length ?? 0) +
      headerBytes(this.start.headers) +
      headerBytes(this.response?.headers) +
      headerBytes(this.requestTrailers) +
      headerBytes(this.responseTrailers) +
      this.requestBody.captured +
      this.responseBody.captured +
      (this.sse?.approxChars ?? 0) +
      (this.websocket?.approxBytes() ?? 0)
    );
  }

  snapshot(): Exchange {
    const s = this.start;
    return {
      id: this.id,
      state: this.state,
      client: { ...s.client },
      server: { ...s.server },
      tls: { ...s.tls },
      ...(s.streamId !== undefined ? { streamId: s.streamId } : {}),
      ...(s.process ? { process: { ...s.process } } : {}),
      request: {
        method: s.method,
        url: s.url,
        httpVersion: s.httpVersion,
        headers: s.headers.map(([k, v]) => [k, v] as [string, string]),
        body: this.requestBody.info(),
        ...(this.requestTrailers ? { trailers: this.requestTrailers.map(([k, v]) => [k, v] as [string, string]) } : {}),
      },
      ...(this.response
        ? {
            response: {
              ...this.response,
              headers: this.response.headers.map(([k, v]) => [k, v] as [string, string]),
              body: this.responseBody.info(),
              ...(this.sse ? { sse: this.sse.info() } : {}),
              ...(this.responseTrailers ? { trailers: this.responseTrailers.map(([k, v]) => [k, v] as [string, string]) } : {}),
            },
          }
        : {}),
      ...(this.error ? { error: { ...this.error } } : {}),
      timing: {
        startedAt: this.startedAt,
        ...(this.upstreamConnected !== undefined ? { upstreamConnected: this.upstreamConnected } : {}),
        ...(this.firstByte !== undefined ? { firstByte: this.firstByte } : {}),
        ...(this.end !== undefined ? { end: this.end } : {}),
      },
      ...(this.websocket ? { websocket: this.websocket.info() } : {}),
    };
  }
}
