/**
 * The HTTP/1.1 relay for decrypted connections: Node's own parser (llhttp, which already refuses
 * conflicting Content-Length/Transfer-Encoding and malformed chunks) reads the client's requests;
 * each is forwarded over a pooled, verified upstream connection, and both bodies stream with
 * backpressure (pipe) while a capped copy is kept. Keep-alive, chunked bodies both ways, HEAD,
 * 204/304 and 100-continue follow Node's HTTP semantics, and 100 is relayed only when the upstream
 * sends it. This module does not accept connections or terminate TLS: engine.ts hands it sockets.
 */
import http from 'node:http';
import type net from 'node:net';
import { ENGINE_LIMIT_DEFAULTS, type EngineLimits, type Endpoint, type ExchangeError, type TlsInfo } from '@tproxy/protocol';
import { LiveExchange } from '../capture/live-exchange.js';
import { maskRawHeaders } from '../capture/mask.js';
import type { ExchangeStore } from '../capture/store.js';
import type { Logger } from '../log.js';
import type { ProcessLookup } from '../net/attribution.js';
import { classifyUpstreamError } from './errors.js';
import { rawToPairs, requestUrl, stripHopByHop } from './headers.js';
import { checkRequestHead, tooManyResponseHeaders } from './request-guard.js';
import { rawReply, relayUpgrade, upgradeRequestHeaders } from './upgrade-relay.js';
import type { UpstreamPool, UpstreamTarget } from './upstream.js';
import { recordExchange, recordUpstreamSocket } from './exchange-record.js';

/** What the engine learnt about a decrypted connection before HTTP started. */
export interface ConnectionInfo {
  client: Endpoint;
  /** The original destination. */
  server: Endpoint;
  tls: TlsInfo;
  /** Attribution of the client's socket, started at accept; absent when attribution is off. */
  process?: ProcessLookup;
}

export interface HttpProxyOptions {
  pool: UpstreamPool;
  store: ExchangeStore;
  bodyCaptureLimit: number;
  log: Logger;
  /** Head limits and the client idle timeout (config.limits); ENGINE_LIMIT_DEFAULTS when absent. */
  limits?: Pick<EngineLimits, 'maxHeaderBytes' | 'maxHeaderCount' | 'clientIdleTimeoutSeconds'>;
}

/** Per client connection: requests in flight and the idle/slow-head deadline. */
interface ClientState {
  inFlight: number;
  /**
   * socket.bytesRead (decrypted bytes for a TLS socket) when the deadline was armed: more at the
   * deadline means a slow head rather than silence. Not a 'data' listener: Node's HTTP parser
   * consumes the stream natively, so no 'data' events reach JavaScript.
   */
  mark: number;
  timer: NodeJS.Timeout | undefined;
}

export class HttpProxy {
  private readonly server: http.Server;
  private readonly info = new WeakMap<net.Socket, ConnectionInfo>();
  /**
   * The exchange whose request is being read on each socket: a parse error in its body (bad chunk
   * size) reaches clientError, not the request handler, and must be recorded on that exchange.
   */
  private readonly current = new WeakMap<net.Socket, { ex: LiveExchange; finish: (e?: ExchangeError) => void }>();
  private readonly clients = new WeakMap<net.Socket, ClientState>();
  private readonly limits: NonNullable<HttpProxyOptions['limits']>;

  constructor(private readonly opts: HttpProxyOptions) {
    this.limits = opts.limits ?? ENGINE_LIMIT_DEFAULTS;
    this.server = http.createServer({
      // No whole-request deadline: a 1 GiB upload legitimately takes long. Node's headersTimeout
      // and keepAliveTimeout are not relied on (the first is only checked for servers that
      // listen(), and this one is fed sockets): the client deadline below covers both.
      requestTimeout: 0,
      keepAliveTimeout: 0,
      // Bigger heads get 431 from the parser (HPE_HEADER_OVERFLOW), before any buffering past it.
      maxHeaderSize: this.limits.maxHeaderBytes,
      insecureHTTPParser: false,
    });
    // llhttp drops fields past this count silently: keep one more than allowed, so we can tell.
    this.server.maxHeadersCount = this.limits.maxHeaderCount + 1;
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => this.handle(req, res);
    this.server.on('request', handler);
    // With a checkContinue listener Node does not answer 100 itself: we relay the upstream's.
    this.server.on('checkContinue', handler);
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => this.clientError(err, socket));
    this.server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => this.upgrade(req, socket, head));
  }

  /** Serves HTTP/1.1 on a decrypted socket. */
  serve(socket: net.Socket, info: ConnectionInfo): void {
    this.info.set(socket, info);
    // Streamed responses (SSE, token streams) write small pieces: Nagle would hold each one back
    // until the previous is acknowledged, up to a delayed-ACK time (40 ms) per event.
    socket.setNoDelay(true);
    const state: ClientState = { inFlight: 0, mark: 0, timer: undefined };
    this.clients.set(socket, state);
    socket.once('close', () => clearTimeout(state.timer));
    this.armDeadline(socket);
    this.server.emit('connection', socket);
  }

  private get idleMs(): number {
    return this.limits.clientIdleTimeoutSeconds * 1000;
  }

  /**
   * Starts the client deadline while no request is in flight: a connection that sends no complete
   * request head within clientIdleTimeoutSeconds is closed, whether it sits idle between requests
   * or trickles a head byte by byte (slowloris). Bytes received do not extend it; a complete head
   * stops it.
   */
  private armDeadline(socket: net.Socket): void {
    const st = this.clients.get(socket);
    if (!st || socket.destroyed) return;
    clearTimeout(st.timer);
    st.mark = socket.bytesRead;
    st.timer = setTimeout(() => {
      st.timer = undefined;
      if (st.inFlight > 0 || socket.destroyed) return;
      const info = this.info.get(socket);
      const who = info ? `${info.client.address}:${info.client.port}` : 'client';
      if (socket.bytesRead > st.mark) {
        this.opts.log.debug(`${who}: request head not complete after ${this.limits.clientIdleTimeoutSeconds}s; closing`);
        rawReply(socket, 408, 'Request Timeout', `tproxy: the request head did not arrive within ${this.limits.clientIdleTimeoutSeconds}s\n`);
      } else {
        this.opts.log.debug(`${who}: idle for ${this.limits.clientIdleTimeoutSeconds}s; closing`);
        socket.end();
        // A peer that does not answer our close cannot keep the socket either.
        setTimeout(() => socket.destroy(), 1000).unref();
      }
    }, this.idleMs);
    st.timer.unref();
  }

  /** A complete request head arrived: no deadline until the last in-flight request ends. */
  private requestStarted(socket: net.Socket, done: { once(event: 'close', cb: () => void): unknown } | undefined): void {
    const st = this.clients.get(socket);
    if (!st) return;
    st.inFlight++;
    clearTimeout(st.timer);
    st.timer = undefined;
    done?.once('close', () => {
      st.inFlight--;
      if (st.inFlight === 0) this.armDeadline(socket);
    });
  }

  private clientError(err: NodeJS.ErrnoException, socket: net.Socket): void {
    const info = this.info.get(socket);
    this.opts.log.debug(`client ${info ? `${info.client.address}:${info.client.port}` : ''} sent invalid HTTP: ${err.code ?? ''} ${err.message}`);
    const [status, statusMessage] = err.code === 'HPE_HEADER_OVERFLOW' ? [431, 'Request Header Fields Too Large'] : [400, 'Bad Request'];
    const body = `tproxy: invalid HTTP request (${err.code ?? 'parse error'})\n`;
    const inFlight = this.current.get(socket);
    if (inFlight && !inFlight.ex.finished) {
      if (err.code !== 'ECONNRESET' && !inFlight.ex.hasResponse) {
        inFlight.ex.setResponse({ status, statusMessage, httpVersion: '1.1', headers: [['Content-Type', 'text/plain; charset=utf-8']] });
        inFlight.ex.responseBody.add(Buffer.from(body));
      }
      inFlight.finish({ kind: 'client-protocol', ...(err.code ? { code: err.code } : {}), message: `invalid HTTP from the client: ${err.message.split('\n')[0]}` });
    }
    if (err.code === 'ECONNRESET' || !socket.writable) return void socket.destroy();
    socket.end(`HTTP/1.1 ${status} ${statusMessage}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const info = this.info.get(req.socket);
    if (!info) {
      res.writeHead(500, { 'content-type': 'text/plain', connection: 'close' }).end('tproxy: connection without context\n');
      return;
    }
    this.requestStarted(req.socket, res);
    const { ex, finish, target } = this.open(req, info);
    const rejection = checkRequestHead(req.httpVersion, req.rawHeaders, this.limits);
    if (rejection) {
      // Refused before anything is sent upstream: a head the hops could read differently.
      this.reply(req, res, ex, rejection.status, rejection.statusMessage, { kind: 'client-protocol', message: rejection.reason }, finish);
      return;
    }
    try {
      this.relay(req, res, ex, target, finish);
    } catch (err) {
      // Node validates what we hand it (paths, header values) by throwing: a request we cannot
      // relay safely is refused before it reaches the upstream, and never takes the helper down.
      const message = `request cannot be relayed: ${(err as Error).message.split('\n')[0]}`;
      this.reply(req, res, ex, 400, 'Bad Request', { kind: 'client-protocol', message }, finish);
    }
  }

  /**
   * A request with `Connection: upgrade` (Node hands it over with the raw socket). WebSocket
   * handshakes are forwarded, and after the upstream's 101 the frames are relayed untouched while
   * a parsed copy is counted; any other protocol is relayed as opaque bytes after its 101.
   */
  private upgrade(req: http.IncomingMessage, socket: net.Socket, head: Buffer): void {
    const info = this.info.get(socket);
    const st = this.clients.get(socket);
    if (!info || !st) return void socket.destroy();
    // The socket leaves Node's HTTP server here: its deadline stops, and it is paused (Node
    // removed its reader) so no early frame is lost before the tunnel's pipe resumes it.
    socket.pause();
    this.requestStarted(socket, undefined);
    const { ex, finish, target } = this.open(req, info);
    const refuse = (status: number, statusMessage: string, message: string) => {
      const body = `tproxy: ${message}\n`;
      ex.setResponse({ status, statusMessage, httpVersion: '1.1', headers: [['Content-Type', 'text/plain; charset=utf-8']] });
      ex.responseBody.add(Buffer.from(body));
      finish({ kind: 'client-protocol', message });
      rawReply(socket, status, statusMessage, body);
    };
    const rejection = checkRequestHead(req.httpVersion, req.rawHeaders, this.limits);
    if (rejection) return refuse(rejection.status, rejection.statusMessage, rejection.reason);
    // Node hands the body bytes over as raw stream data here, unframed: a body (never part of a
    // WebSocket handshake) cannot be relayed faithfully, so it is refused rather than guessed at.
    if (req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0') {
      return refuse(400, 'Bad Request', 'an upgrade request with a body cannot be relayed');
    }
    let upReq: http.ClientRequest;
    try {
      upReq = http.request({
        agent: this.opts.pool.agentFor(target),
        host: target.address,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: upgradeRequestHeaders(req.rawHeaders),
        setHost: false,
        maxHeaderSize: this.limits.maxHeaderBytes,
      });
    } catch (err) {
      return refuse(400, 'Bad Request', `request cannot be relayed: ${(err as Error).message.split('\n')[0]}`);
    }
    upReq.maxHeadersCount = this.limits.maxHeaderCount + 1;
    relayUpgrade({
      client: socket,
      clientHead: head,
      upReq,
      ex,
      target,
      websocket: /^websocket$/i.test(req.headers.upgrade ?? ''),
      store: this.opts.store,
      textBudget: this.opts.bodyCaptureLimit,
      idleMs: this.idleMs,
      maxHeaderCount: this.limits.maxHeaderCount,
      finish,
    });
  }

  /** Records a new exchange for a request head and returns how to finish it. */
  private open(req: http.IncomingMessage, info: ConnectionInfo): { ex: LiveExchange; finish: (e?: ExchangeError) => void; target: UpstreamTarget } {
    const { store, bodyCaptureLimit } = this.opts;
    const ex = new LiveExchange({
      client: info.client,
      server: info.server,
      tls: info.tls,
      ...(info.process?.result ? { process: info.process.result } : {}),
      method: req.method ?? 'GET',
      url: requestUrl(req.url ?? '/', req.headers.host, info.tls.sni, info.server.address, info.server.port),
      httpVersion: req.httpVersion,
      headers: maskRawHeaders(req.rawHeaders),
      bodyCaptureLimit,
    });
    const finish = recordExchange(store, ex, info.process);
    const target = { address: info.server.address, port: info.server.port, serverName: info.tls.sni };
    this.current.set(req.socket, { ex, finish });
    return { ex, finish, target };
  }

  /**
   * Answers the client ourselves (400 or 502) with a one-line plain-text reason, records that
   * answer and the error in the capture, and closes the connection: after a failed relay the
   * client's framing may be out of step with ours.
   */
  private reply(req: http.IncomingMessage, res: http.ServerResponse, ex: LiveExchange, status: number, statusMessage: string, error: ExchangeError, finish: (e?: ExchangeError) => void): void {
    if (res.headersSent) {
      finish(error);
      res.destroy();
      return;
    }
    const body = `tproxy: ${error.message}\n`;
    ex.setResponse({ status, statusMessage, httpVersion: '1.1', headers: [['Content-Type', 'text/plain; charset=utf-8']] });
    ex.responseBody.add(Buffer.from(body));
    finish(error);
    req.resume(); // discard the rest of the request body
    res.writeHead(status, statusMessage, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close' });
    res.end(body);
  }

  private relay(req: http.IncomingMessage, res: http.ServerResponse, ex: LiveExchange, target: UpstreamTarget, finish: (e?: ExchangeError) => void): void {
    const upReq = http.request({
      agent: this.opts.pool.agentFor(target),
      host: target.address,
      port: target.port,
      method: req.method,
      path: req.url,
      headers: stripHopByHop(req.rawHeaders, true),
      setHost: false,
      // A huge upstream head fails the parser (HPE_HEADER_OVERFLOW → 502) instead of growing memory.
      maxHeaderSize: this.limits.maxHeaderBytes,
    });
    upReq.maxHeadersCount = this.limits.maxHeaderCount + 1;
    if (req.headers.expect?.toLowerCase() === '100-continue') upReq.flushHeaders();

    recordUpstreamSocket(ex, upReq);
    const stall = this.watchBodyStall(req, () => {
      upReq.destroy();
      const message = `the request body stalled: nothing arrived for ${this.limits.clientIdleTimeoutSeconds}s`;
      this.reply(req, res, ex, 408, 'Request Timeout', { kind: 'client-protocol', message }, finish);
    });
    upReq.on('continue', () => {
      res.writeContinue();
      stall.start();
    });
    // With Expect: 100-continue the client waits for the upstream's 100 before sending the body.
    if (req.headers.expect?.toLowerCase() !== '100-continue') stall.start();

    req.on('data', (chunk: Buffer) => ex.requestBody.add(chunk));
    req.pipe(upReq);

    upReq.on('response', (upRes) => {
      const tooMany = tooManyResponseHeaders(upRes.rawHeaders, this.limits);
      if (tooMany) {
        upRes.destroy();
        this.reply(req, res, ex, 502, 'Bad Gateway', { kind: 'upstream-protocol', message: tooMany }, finish);
        return;
      }
      try {
        this.respond(upRes, res, ex, target, finish);
      } catch (err) {
        // e.g. a header Node refuses to write: the client must not get half a response.
        upRes.destroy();
        const message = `upstream response cannot be relayed: ${(err as Error).message.split('\n')[0]}`;
        this.reply(req, res, ex, 502, 'Bad Gateway', { kind: 'upstream-protocol', message }, finish);
      }
    });
    upReq.on('error', (err) => this.reply(req, res, ex, 502, 'Bad Gateway', classifyUpstreamError(err, target, ex.hasResponse), finish));

    res.on('finish', () => finish());
    res.on('close', () => {
      if (!res.writableFinished && !ex.finished) {
        finish({ kind: 'client-aborted', message: 'the client closed the connection before the exchange finished' });
        upReq.destroy();
      }
    });
  }

  /**
   * A request body that stops arriving (a slow-POST attack, or a client that went half-open in
   * the middle of it) is cut off after clientIdleTimeoutSeconds without a byte; a body that keeps
   * moving, however slowly, and a client waiting for its response are left alone.
   */
  private watchBodyStall(req: http.IncomingMessage, onStall: () => void): { start(): void } {
    let timer: NodeJS.Timeout | undefined;
    let done = false;
    const touch = () => {
      clearTimeout(timer);
      if (done) return;
      timer = setTimeout(onStall, this.idleMs);
      timer.unref();
    };
    const stop = () => {
      done = true;
      clearTimeout(timer);
    };
    req.once('end', stop);
    req.once('close', stop);
    return {
      start: () => {
        if (done || req.complete) return;
        req.on('data', touch);
        touch();
      },
    };
  }

  private respond(upRes: http.IncomingMessage, res: http.ServerResponse, ex: LiveExchange, target: UpstreamTarget, finish: (e?: ExchangeError) => void): void {
    ex.setResponse({
      status: upRes.statusCode ?? 502,
      statusMessage: upRes.statusMessage ?? '',
      httpVersion: upRes.httpVersion,
      headers: maskRawHeaders(upRes.rawHeaders),
    });
    this.opts.store.update(ex);
    res.sendDate = false; // relay the upstream's Date (or its absence) untouched
    res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, stripHopByHop(upRes.rawHeaders));
    let bodySeen = false;
    upRes.on('data', (chunk: Buffer) => {
      bodySeen = true;
      ex.responseBody.add(chunk);
    });
    // A streamed response (SSE, long poll) may send its head long before any body, and the client
    // must see that head now; Node holds it until the first body write. Deferred one turn, so a
    // body read together with the head still leaves in the same write as the head.
    setImmediate(() => {
      if (!bodySeen && !res.writableEnded && !res.destroyed) res.flushHeaders();
    });
    // Registered before pipe() so trailers are added before pipe ends the response.
    upRes.on('end', () => {
      if (upRes.rawTrailers.length === 0) return;
      try {
        res.addTrailers(rawToPairs(upRes.rawTrailers));
      } catch (err) {
        this.opts.log.info(`dropping upstream trailers Node refuses to write: ${(err as Error).message}`);
      }
    });
    upRes.on('error', (err) => {
      finish(classifyUpstreamError(err, target, true));
      res.destroy();
    });
    upRes.on('close', () => {
      if (!upRes.complete && !ex.finished) {
        finish(classifyUpstreamError(new Error('upstream closed before the response body ended'), target, true));
        res.destroy();
      }
    });
    upRes.pipe(res);
  }

  /** Stops serving: destroys kept-alive client connections. */
  close(): void {
    // The server never listens (engine.ts feeds it sockets), so there is nothing to close() beyond them.
    this.server.closeAllConnections();
  }
}
