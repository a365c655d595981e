/**
 * The HTTP/2 relay for decrypted connections whose client negotiated `h2`: a server-side session on
 * the client's TLS socket, and each client stream relayed to a stream on a pooled upstream session
 * (h2-pool.ts) for the same (address, port, server name). Each stream is one exchange. Bodies are
 * piped both ways, so HTTP/2 flow control holds end to end: a slow reader on one side stops the
 * window on the other and nothing is buffered whole. Trailers travel both ways (gRPC's grpc-status),
 * RST_STREAM codes are passed on in both directions, a stream the upstream refused in a GOAWAY is
 * refused to the client with REFUSED_STREAM (safe to retry), and failures before any response head
 * are answered with a 502 naming the reason, exactly as the HTTP/1.1 relay does. This module does
 * not accept connections or terminate TLS: engine.ts hands it negotiated sockets.
 */
import http2 from 'node:http2';
import type tls from 'node:tls';
import type { EngineLimits, ExchangeError } from '@tproxy/protocol';
import { LiveExchange } from '../capture/live-exchange.js';
import { maskRawHeaders } from '../capture/mask.js';
import type { ExchangeStore } from '../capture/store.js';
import type { Logger } from '../log.js';
import { classifyUpstreamError } from './errors.js';
import { forwardableFields, h2ErrorName, splitPseudo, toHeaderObject } from './h2-headers.js';
import { dialH2, H2SessionPool, UpstreamNotH2Error, type H2Dialer } from './h2-pool.js';
import { requestUrl } from './headers.js';
import type { ConnectionInfo } from './http-proxy.js';
import type { UpstreamOptions, UpstreamTarget } from './upstream.js';
import { recordExchange } from './exchange-record.js';

export type H2Limits = Pick<EngineLimits, 'h2MaxConcurrentStreams' | 'maxHeaderBytes' | 'maxHeaderCount' | 'clientIdleTimeoutSeconds' | 'upstreamIdleTimeoutSeconds'>;

export interface H2ProxyOptions {
  store: ExchangeStore;
  bodyCaptureLimit: number;
  limits: H2Limits;
  log: Logger;
  /** The marked connector and upstream trust, the same ones the HTTP/1.1 pool uses. */
  upstream: UpstreamOptions;
  /** Replaces `dialH2(upstream)` (tests count or break dials with it). */
  dial?: H2Dialer;
}

const { NGHTTP2_NO_ERROR, NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR, NGHTTP2_REFUSED_STREAM } = http2.constants;

/** Per client session: open streams, so the idle timer never closes a session with a stream in flight. */
interface ClientSessionState {
  active: number;
}

export class H2Proxy {
  readonly pool: H2SessionPool;
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  /**
   * Client streams whose whole response we have handed to Node: the upstream's body ended and was
   * all written into the stream (only the frame ending the stream may still be queued), or we
   * answered ourselves.
   */
  private readonly answered = new WeakSet<http2.ServerHttp2Stream>();
  /** The upstream response's Content-Length, per client stream, when it declared one. */
  private readonly declaredLength = new WeakMap<http2.ServerHttp2Stream, number>();

  constructor(private readonly opts: H2ProxyOptions) {
    this.pool = new H2SessionPool({
      dial: opts.dial ?? dialH2(opts.upstream),
      log: opts.log,
      idleTimeoutMs: opts.limits.upstreamIdleTimeoutSeconds * 1000,
      maxHeaderListSize: opts.limits.maxHeaderBytes,
      maxHeaderListPairs: opts.limits.maxHeaderCount + 4,
    });
  }

  /** Client sessions currently open. */
  get openSessions(): number {
    return this.sessions.size;
  }

  /**
   * Serves HTTP/2 on a client socket that negotiated `h2`. `warm` is the verified upstream socket
   * that agreed to h2 while the engine learnt the upstream's ALPN: it becomes the destination's
   * pooled session at once (or is closed if one is already pooled).
   */
  serve(socket: tls.TLSSocket, info: ConnectionInfo, warm?: tls.TLSSocket): void {
    const { limits, log } = this.opts;
    const target: UpstreamTarget = { address: info.server.address, port: info.server.port, serverName: info.tls.sni };
    const who = `${info.client.address}:${info.client.port}`;
    if (warm) {
      this.pool.session(target, warm).catch((err: Error) => log.debug(`${who}: warm upstream h2 session failed: ${err.message}`));
    }
    // A server-side TLSSocket built by hand (engine.ts) keeps `secureConnecting` true after its
    // 'secure' event; only tls.Server clears it (before 'secureConnection'). http2 would then wait
    // for a 'secureConnect' that never comes. The handshake is done when we are called: say so.
    (socket as tls.TLSSocket & { secureConnecting: boolean }).secureConnecting = false;
    const session = http2.performServerHandshake(socket, {
      // maxHeaderListPairs counts names and values and adds 4 for pseudo-headers (Node's accounting).
      maxHeaderListPairs: limits.maxHeaderCount + 4,
      settings: {
        maxConcurrentStreams: limits.h2MaxConcurrentStreams,
        maxHeaderListSize: limits.maxHeaderBytes,
        enablePush: false,
      },
    });
    this.sessions.add(session);
    const state: ClientSessionState = { active: 0 };
    session.on('stream', (stream: http2.ServerHttp2Stream, _headers: http2.IncomingHttpHeaders, _flags: number, raw: string[]) => {
      state.active++;
      stream.once('close', () => state.active--);
      try {
        this.relay(stream, raw, info, target, () => session.closed || session.destroyed);
      } catch (err) {
        log.error(`${who}: stream ${stream.id} cannot be relayed: ${(err as Error).message}`);
        if (!stream.destroyed) resetStream(stream, NGHTTP2_INTERNAL_ERROR);
      }
    });
    // No frame for that long and no stream open: a graceful GOAWAY (Node waits for open streams).
    session.setTimeout(limits.clientIdleTimeoutSeconds * 1000, () => {
      if (state.active === 0) session.close();
    });
    session.on('goaway', (code: number) => log.debug(`${who}: client sent GOAWAY (${h2ErrorName(code)}); open streams finish`));
    session.on('error', (err: Error) => log.debug(`${who}: client h2 session failed: ${err.message}`));
    session.on('close', () => {
      this.sessions.delete(session);
      socket.destroy();
    });
  }

  /** One client stream → one exchange → one upstream stream. */
  private relay(stream: http2.ServerHttp2Stream, raw: string[], info: ConnectionInfo, target: UpstreamTarget, connectionGone: () => boolean): void {
    const { store, bodyCaptureLimit, log } = this.opts;
    const { pseudo, fields } = splitPseudo(raw);
    const method = pseudo[':method'] ?? 'GET';
    const path = pseudo[':path'] ?? '/';
    const ex = new LiveExchange({
      client: info.client,
      server: info.server,
      tls: info.tls,
      ...(info.process?.result ? { process: info.process.result } : {}),
      method,
      url: requestUrl(path, pseudo[':authority'] ?? headerValue(fields, 'host'), info.tls.sni, info.server.address, info.server.port),
      httpVersion: '2',
      headers: maskRawHeaders(fields),
      bodyCaptureLimit,
      streamId: stream.id,
    });
    const finish = recordExchange(store, ex, info.process);

    let clientTrailers: string[] | undefined;
    stream.on('trailers', (_h: unknown, _f: number, rawTrailers: string[]) => {
      clientTrailers = forwardableFields(rawTrailers);
      ex.setRequestTrailers(maskRawHeaders(rawTrailers));
    });
    stream.on('error', (err: Error) => log.debug(`client stream ${stream.id}: ${err.message}`));

    let up: http2.ClientHttp2Stream | undefined;
    stream.once('close', () => {
      const code = stream.rstCode ?? NGHTTP2_NO_ERROR;
      // A client that has the whole body may close its connection before the frame ending the
      // stream arrives (curl stops at Content-Length and exits; Node then cancels every open
      // stream with CANCEL): that response was delivered. A RST_STREAM the client sent, or a
      // connection closed before the body was all relayed, is an abort.
      const declared = this.declaredLength.get(stream);
      const whole = this.answered.has(stream) || (declared !== undefined && ex.responseBody.size >= declared);
      const delivered = code === NGHTTP2_CANCEL && whole && connectionGone();
      if (code === NGHTTP2_NO_ERROR || delivered) finish();
      else finish({ kind: 'client-aborted', code: h2ErrorName(code), message: `the client reset the stream (RST_STREAM ${h2ErrorName(code)})` });
      // The client's reset (or our own, propagated from the upstream) ends the upstream stream too.
      if (up && !up.closed && !up.destroyed) resetStream(up, code === NGHTTP2_NO_ERROR ? NGHTTP2_CANCEL : code);
    });

    const outHeaders = toHeaderObject(
      {
        ':method': method,
        ...(method === 'CONNECT' ? {} : { ':scheme': pseudo[':scheme'] ?? 'https', ':path': path }),
        ...(pseudo[':authority'] ? { ':authority': pseudo[':authority'] } : {}),
        ...(pseudo[':protocol'] ? { ':protocol': pseudo[':protocol'] } : {}),
      },
      forwardableFields(fields),
    );
    const endStream = stream.endAfterHeaders;
    // Node announces SETTINGS_MAX_HEADER_LIST_SIZE but does not enforce it on what it receives.
    const headBytes = headerListSize(raw);
    if (headBytes > this.opts.limits.maxHeaderBytes) {
      const message = `request header list is ${headBytes} bytes, over the ${this.opts.limits.maxHeaderBytes}-byte limit (limits.maxHeaderBytes)`;
      this.reply(stream, ex, 431, { kind: 'client-protocol', message }, finish);
      return;
    }

    this.pool.session(target).then(
      (session) => {
        if (stream.destroyed || stream.closed) return;
        try {
          up = session.request(outHeaders, { endStream, waitForTrailers: !endStream });
        } catch (err) {
          // Node validates what we hand it by throwing: refuse the request, never crash.
          this.reply(stream, ex, 400, { kind: 'client-protocol', message: `request cannot be relayed: ${(err as Error).message.split('\n')[0]}` }, finish);
          return;
        }
        ex.markUpstreamConnected();
        ex.setTlsUpstreamVersion((session.socket as unknown as tls.TLSSocket).getProtocol?.() ?? undefined);
        this.wire(stream, up, ex, target, finish, () => clientTrailers);
      },
      (err: Error) => {
        const error: ExchangeError =
          err instanceof UpstreamNotH2Error ? { kind: 'upstream-protocol', code: err.code, message: err.message } : classifyUpstreamError(err, target, false);
        this.reply(stream, ex, 502, error, finish);
      },
    );
  }

  /** Pipes the two streams together and propagates heads, trailers and resets. */
  private wire(
    stream: http2.ServerHttp2Stream,
    up: http2.ClientHttp2Stream,
    ex: LiveExchange,
    target: UpstreamTarget,
    finish: (e?: ExchangeError) => void,
    clientTrailers: () => string[] | undefined,
  ): void {
    let upError: (Error & { code?: string }) | undefined;
    let upTrailers: string[] | undefined;

    up.on('wantTrailers', () => up.sendTrailers(toHeaderObject({}, clientTrailers() ?? [])));
    stream.on('data', (chunk: Buffer) => ex.requestBody.add(chunk));
    pipeUnlessReset(stream, up);

    // 1xx (100 Continue, 103 Early Hints) before the final head.
    up.on('headers', (_h: unknown, _f: number, raw: string[]) => {
      const { pseudo, fields } = splitPseudo(raw);
      if (!stream.headersSent && !stream.destroyed) stream.additionalHeaders(toHeaderObject({ ':status': pseudo[':status'] ?? '100' }, forwardableFields(fields)));
    });
    up.on('response', (_h: unknown, _f: number, raw: string[]) => {
      const { pseudo, fields } = splitPseudo(raw);
      const status = Number(pseudo[':status'] ?? 502);
      const length = headerValue(fields, 'content-length');
      if (length !== undefined && /^\d+$/.test(length.trim())) this.declaredLength.set(stream, Number(length));
      ex.setResponse({ status, statusMessage: '', httpVersion: '2', headers: maskRawHeaders(fields) });
      this.opts.store.update(ex);
      if (stream.destroyed || stream.closed) return;
      // A trailers-only response (gRPC errors) stays one HEADERS frame with END_STREAM.
      const upEnded = up.endAfterHeaders;
      try {
        stream.respond(toHeaderObject({ ':status': status }, forwardableFields(fields)), { endStream: upEnded, waitForTrailers: !upEnded, sendDate: false } as http2.ServerStreamResponseOptions);
      } catch (err) {
        resetStream(up, NGHTTP2_CANCEL);
        this.reply(stream, ex, 502, { kind: 'upstream-protocol', message: `upstream response cannot be relayed: ${(err as Error).message.split('\n')[0]}` }, finish);
        return;
      }
      if (upEnded) return void this.answered.add(stream);
      stream.on('wantTrailers', () => {
        this.answered.add(stream);
        stream.sendTrailers(toHeaderObject({}, upTrailers ?? []));
      });
      up.on('data', (chunk: Buffer) => ex.responseBody.add(chunk));
      // Once the upstream's body ended and is all written into the stream, only the frame that
      // ends the stream (END_STREAM or trailers) is left.
      pipeUnlessReset(up, stream, () => this.answered.add(stream));
    });
    up.on('trailers', (_h: unknown, _f: number, raw: string[]) => {
      upTrailers = forwardableFields(raw);
      ex.setResponseTrailers(maskRawHeaders(raw));
    });
    up.on('error', (err: Error) => {
      upError = err;
    });
    up.once('close', () => {
      const code = up.rstCode ?? NGHTTP2_NO_ERROR;
      if (code === NGHTTP2_NO_ERROR && !upError) return; // ended normally; the client stream finishes through the pipe
      if (ex.finished || stream.destroyed || stream.closed) return;
      // ERR_HTTP2_STREAM_ERROR (or a bare CANCEL, which Node reports without an error) is a real
      // RST_STREAM from the upstream; anything else means the upstream session itself failed.
      const reset = upError === undefined || upError.code === 'ERR_HTTP2_STREAM_ERROR';
      if (reset && (code === NGHTTP2_REFUSED_STREAM || ex.hasResponse || stream.headersSent)) {
        finish({ kind: 'upstream-aborted', code: h2ErrorName(code), message: `${describe(target)} reset the stream (RST_STREAM ${h2ErrorName(code)})` });
        resetStream(stream, code);
        return;
      }
      if (!stream.headersSent) {
        const error = reset
          ? { kind: 'upstream-aborted' as const, code: h2ErrorName(code), message: `${describe(target)} reset the stream before answering (RST_STREAM ${h2ErrorName(code)})` }
          : classifyUpstreamError(upError, target, false);
        if (reset) {
          finish(error);
          resetStream(stream, code);
        } else this.reply(stream, ex, 502, error, finish);
        return;
      }
      finish(classifyUpstreamError(upError ?? new Error('upstream stream closed early'), target, true));
      resetStream(stream, NGHTTP2_INTERNAL_ERROR);
    });
  }

  /**
   * Answers the stream ourselves (400 or 502) with a one-line plain-text reason and records that
   * answer and the error; after a response head was sent, the stream is reset instead.
   */
  private reply(stream: http2.ServerHttp2Stream, ex: LiveExchange, status: number, error: ExchangeError, finish: (e?: ExchangeError) => void): void {
    if (stream.headersSent || stream.destroyed || stream.closed) {
      finish(error);
      if (!stream.destroyed) resetStream(stream, NGHTTP2_INTERNAL_ERROR);
      return;
    }
    const body = `tproxy: ${error.message}\n`;
    ex.setResponse({ status, statusMessage: '', httpVersion: '2', headers: [['content-type', 'text/plain; charset=utf-8']] });
    ex.responseBody.add(Buffer.from(body));
    finish(error);
    stream.resume(); // discard the rest of the request body
    stream.respond({ ':status': status, 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
    stream.end(body);
    this.answered.add(stream);
  }

  /** Destroys every client session and every pooled upstream session. */
  close(): void {
    for (const s of this.sessions) s.destroy();
    this.sessions.clear();
    this.pool.destroy();
  }
}

/**
 * Sends RST_STREAM with `code`. Node's close(code) first ends the writable side, and when nothing
 * is buffered that END_STREAM reaches the wire before the reset, so the peer sees a clean end and
 * the code is lost. With this stream's `_final` (the Writable hook that sends END_STREAM) made a
 * no-op, close() sends only the RST_STREAM.
 */
export function resetStream(stream: http2.Http2Stream, code: number): void {
  if (stream.closed || stream.destroyed) return;
  if (code !== NGHTTP2_NO_ERROR && !stream.writableEnded) {
    (stream as unknown as { _final: (cb: (err?: Error) => void) => void })._final = (cb) => cb();
  }
  stream.close(code);
}

/**
 * pipe() with backpressure, except that the end is passed on only when the source ended with
 * END_STREAM: Node also ends a stream's readable side when it was reset, and pipe() would turn that
 * RST_STREAM into a clean end on the other side. A reset is propagated by the 'close' handlers.
 */
function pipeUnlessReset(from: http2.Http2Stream, to: http2.Http2Stream, onEnd?: () => void): void {
  from.pipe(to, { end: false });
  from.once('end', () => {
    const code = from.rstCode;
    if (code !== undefined && code !== NGHTTP2_NO_ERROR) return;
    onEnd?.();
    to.end();
  });
}

/** RFC 9113 §6.5.2: the size of a header list is each field's name + value + 32 octets. */
export function headerListSize(raw: readonly string[]): number {
  let n = 0;
  for (let i = 0; i + 1 < raw.length; i += 2) n += Buffer.byteLength(raw[i]!) + Buffer.byteLength(raw[i + 1]!) + 32;
  return n;
}

function headerValue(fields: readonly string[], name: string): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i]!.toLowerCase() === name) return fields[i + 1];
  return undefined;
}

function describe(t: UpstreamTarget): string {
  const host = t.address.includes(':') ? `[${t.address}]` : t.address;
  return t.serverName ? `${t.serverName} (${host}:${t.port})` : `${host}:${t.port}`;
}
