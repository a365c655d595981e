/**
 * One exchange while the engine works on it: mutable, owned by the engine's request handler.
 * Everything that leaves the helper goes through `snapshot()`, a deep copy, so subscribers and the
 * RPC layer never see an object that changes under them. Times are monotonic offsets from a
 * wall-clock start (performance.now), so a clock step never yields a negative duration.
 */
import { performance } from 'node:perf_hooks';
import type { Endpoint, Exchange, ExchangeError, ExchangeState, Headers, ProcessInfo, TlsInfo } from '@tproxy/protocol';
import { BodyCapture } from './body-capture.js';

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
}

interface ResponseHead {
  status: number;
  statusMessage: string;
  httpVersion: string;
  headers: Headers;
}

/** Rough per-exchange overhead besides bodies and headers, for the buffer's byte bound. */
const BASE_BYTES = 512;

export class LiveExchange {
  id = 0;
  state: ExchangeState = 'in-flight';
  readonly requestBody: BodyCapture;
  readonly responseBody: BodyCapture;
  private response: ResponseHead | undefined;
  private error: ExchangeError | undefined;
  private readonly startedAt = Date.now();
  private readonly t0 = performance.now();
  private upstreamConnected: number | undefined;
  private firstByte: number | undefined;
  private end: number | undefined;

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
  }

  get hasResponse(): boolean {
    return this.response !== undefined;
  }

  complete(): void {
    if (this.state !== 'in-flight') return;
    this.state = 'complete';
    this.end = this.offset();
  }

  fail(error: ExchangeError): void {
    if (this.state !== 'in-flight') return;
    this.state = 'error';
    this.error = error;
    this.end = this.offset();
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
      this.requestBody.captured +
      this.responseBody.captured
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
      ...(s.process ? { process: { ...s.process } } : {}),
      request: {
        method: s.method,
        url: s.url,
        httpVersion: s.httpVersion,
        headers: s.headers.map(([k, v]) => [k, v] as [string, string]),
        body: this.requestBody.info(),
      },
      ...(this.response
        ? {
            response: {
              ...this.response,
              headers: this.response.headers.map(([k, v]) => [k, v] as [string, string]),
              body: this.responseBody.info(),
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
    };
  }
}
