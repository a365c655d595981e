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
import type { TLSSocket } from 'node:tls';
import type { Endpoint, ExchangeError, TlsInfo } from '@tproxy/protocol';
import { LiveExchange } from '../capture/live-exchange.js';
import { maskRawHeaders } from '../capture/mask.js';
import type { ExchangeStore } from '../capture/store.js';
import type { Logger } from '../log.js';
import type { ProcessLookup } from '../net/attribution.js';
import { classifyUpstreamError } from './errors.js';
import { rawToPairs, requestUrl, stripHopByHop } from './headers.js';
import type { UpstreamPool, UpstreamTarget } from './upstream.js';

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
}

/** How long a client may take to send a request head (slowloris guard). */
const HEADERS_TIMEOUT_MS = 60_000;
/** Idle time a kept-alive client connection may sit between requests. */
const KEEP_ALIVE_TIMEOUT_MS = 60_000;

export class HttpProxy {
  private readonly server: http.Server;
  private readonly info = new WeakMap<net.Socket, ConnectionInfo>();
  /**
   * The exchange whose request is being read on each socket: a parse error in its body (bad chunk
   * size) reaches clientError, not the request handler, and must be recorded on that exchange.
   */
  private readonly current = new WeakMap<net.Socket, { ex: LiveExchange; finish: (e?: ExchangeError) => void }>();

  constructor(private readonly opts: HttpProxyOptions) {
    this.server = http.createServer({
      // No whole-request deadline: a 1 GiB upload legitimately takes long. Slow heads are bounded
      // by headersTimeout; idle connections by keepAliveTimeout.
      requestTimeout: 0,
      headersTimeout: HEADERS_TIMEOUT_MS,
      keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
    });
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => this.handle(req, res);
    this.server.on('request', handler);
    // With a checkContinue listener Node does not answer 100 itself: we relay the upstream's.
    this.server.on('checkContinue', handler);
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => this.clientError(err, socket));
  }

  /** Serves HTTP/1.1 on a decrypted socket. */
  serve(socket: net.Socket, info: ConnectionInfo): void {
    this.info.set(socket, info);
    this.server.emit('connection', socket);
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
    store.add(ex);
    this.attachLateProcess(ex, info);
    const target = { address: info.server.address, port: info.server.port, serverName: info.tls.sni };
    const finish = (error?: ExchangeError) => {
      if (ex.finished) return;
      if (error) ex.fail(error);
      else ex.complete();
      // The end time is taken now; `completed` is announced once attribution has settled (bounded
      // by its budget), so subscribers see started → updated* → completed, process included.
      const lookup = info.process;
      if (lookup && !lookup.settled) void lookup.done.then(() => store.finish(ex));
      else store.finish(ex);
    };
    this.current.set(req.socket, { ex, finish });
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
   * Attribution normally settles during the TLS handshake; when it has not yet, the exchange is
   * recorded at once (the relay never waits for it) and gets the process when the lookup ends:
   * announced as an update while in flight, or in the (deferred) completion otherwise. Registered
   * before `finish` can chain on the same promise, so the process is set first.
   */
  private attachLateProcess(ex: LiveExchange, info: ConnectionInfo): void {
    const lookup = info.process;
    if (!lookup || lookup.settled) return;
    void lookup.done.then((process) => {
      if (!process) return;
      ex.setProcess(process);
      if (!ex.finished) this.opts.store.update(ex);
    });
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
    });
    if (req.headers.expect?.toLowerCase() === '100-continue') upReq.flushHeaders();

    upReq.on('socket', (socket) => {
      const onReady = () => {
        ex.markUpstreamConnected();
        ex.setTlsUpstreamVersion((socket as TLSSocket).getProtocol?.() ?? undefined);
      };
      // Pooled sockets are ready at once; new ones only reach us after the TLS verification.
      if (socket.connecting) socket.once('connect', onReady);
      else onReady();
    });
    upReq.on('continue', () => res.writeContinue());

    req.on('data', (chunk: Buffer) => ex.requestBody.add(chunk));
    req.pipe(upReq);

    upReq.on('response', (upRes) => {
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
    upRes.on('data', (chunk: Buffer) => ex.responseBody.add(chunk));
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
