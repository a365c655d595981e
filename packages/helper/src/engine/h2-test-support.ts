/**
 * Test support for the HTTP/2 relay; production code never imports it. An h2 upstream on loopback
 * (real http2 secure server, the upstream test PKI), a front TLS listener that negotiates h2 with
 * our minted leaf and hands the socket to H2Proxy.serve exactly as engine.ts does, and an h2
 * client trusting our CA. Loopback only, no root; every wait is bounded.
 */
import http2 from 'node:http2';
import type net from 'node:net';
import tls from 'node:tls';
import type { LeafCache } from '../ca/cache.js';
import { ExchangeStore } from '../capture/store.js';
import { silentLogger } from '../log.js';
import { endpoint } from './engine.js';
import { dialH2 } from './h2-pool.js';
import { H2Proxy, type H2Limits } from './h2-proxy.js';
import { EventLog, UPSTREAM_NAME, closeServer, listenLoopback, within } from './test-support.js';
import type { SocketConnector } from './upstream.js';

export interface H2Upstream {
  port: number;
  server: http2.Http2SecureServer;
  /** TCP connections the upstream accepted (a pooling measure). */
  connections: number;
  /** Server sessions currently open. */
  sessions: Set<http2.ServerHttp2Session>;
  close(): Promise<void>;
}

export type H2StreamHandler = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, raw: string[], flags: number) => void;

/** An h2-only upstream (ALPN h2, no HTTP/1.1 fallback) on loopback. */
export async function startH2Upstream(tlsOpts: { key: string; cert: string }, handler: H2StreamHandler, settings: http2.Settings = {}): Promise<H2Upstream> {
  const server = http2.createSecureServer({ key: tlsOpts.key, cert: tlsOpts.cert, settings });
  const up: H2Upstream = {
    port: 0,
    server,
    connections: 0,
    sessions: new Set(),
    close: async () => {
      for (const s of up.sessions) s.destroy();
      await closeServer(server);
    },
  };
  server.on('connection', () => up.connections++);
  server.on('session', (s: http2.ServerHttp2Session) => {
    up.sessions.add(s);
    s.on('close', () => up.sessions.delete(s));
    s.on('error', () => {});
  });
  server.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, raw: string[]) => {
    stream.on('error', () => {});
    handler(stream, headers, raw, flags);
  });
  up.port = await listenLoopback(server);
  return up;
}

export interface H2Harness {
  port: number;
  store: ExchangeStore;
  events: EventLog;
  proxy: H2Proxy;
  /** Dials the pool made (new upstream sockets, the warm one excluded). */
  dials: () => number;
  close(): Promise<void>;
}

export interface H2HarnessOptions {
  certs: LeafCache;
  connect: SocketConnector;
  upstreamCaPem: string;
  bodyCaptureLimit?: number;
  limits?: Partial<H2Limits>;
}

export const TEST_H2_LIMITS: H2Limits = {
  h2MaxConcurrentStreams: 256,
  maxHeaderBytes: 64 * 1024,
  maxHeaderCount: 256,
  clientIdleTimeoutSeconds: 120,
  upstreamIdleTimeoutSeconds: 60,
};

/** H2Proxy behind a loopback TLS listener that offers only h2, as engine.ts does once ALPN says h2. */
export async function startH2Proxy(opts: H2HarnessOptions): Promise<H2Harness> {
  const store = new ExchangeStore();
  const events = new EventLog(store);
  const upstream = { connect: opts.connect, trust: tls.createSecureContext({ ca: opts.upstreamCaPem }) };
  const realDial = dialH2(upstream);
  let dials = 0;
  const proxy = new H2Proxy({
    store,
    bodyCaptureLimit: opts.bodyCaptureLimit ?? 1024,
    limits: { ...TEST_H2_LIMITS, ...opts.limits },
    log: silentLogger,
    upstream,
    dial: (t) => (dials++, realDial(t)),
  });
  const front = tls.createServer({
    ALPNProtocols: ['h2'],
    SNICallback: (name, cb) => cb(null, opts.certs.get(name)),
  });
  const sockets = new Set<net.Socket>();
  front.on('secureConnection', (socket: tls.TLSSocket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    const sni = typeof socket.servername === 'string' ? socket.servername : undefined;
    proxy.serve(socket, {
      client: endpoint(socket.remoteAddress, socket.remotePort),
      server: endpoint(socket.localAddress, socket.localPort),
      tls: { ...(sni ? { sni } : {}), alpn: 'h2', clientVersion: socket.getProtocol() ?? '' },
    });
  });
  front.on('tlsClientError', () => {});
  const port = await listenLoopback(front);
  return {
    port,
    store,
    events,
    proxy,
    dials: () => dials,
    close: async () => {
      events.unsubscribe();
      proxy.close();
      for (const s of sockets) s.destroy();
      await closeServer(front);
    },
  };
}

/** An h2 client session to the front, trusting our CA and sending SNI upstream.test. */
export async function connectH2(port: number, caPem: string, settings: http2.Settings = {}): Promise<http2.ClientHttp2Session> {
  // No DNS: the socket goes to loopback while :authority says upstream.test.
  const session = http2.connect(`https://${UPSTREAM_NAME}:${port}`, {
    settings,
    createConnection: () => tls.connect({ host: '127.0.0.1', port, ca: caPem, servername: UPSTREAM_NAME, ALPNProtocols: ['h2'] }),
  });
  session.on('error', () => {});
  await within(
    new Promise<void>((resolve, reject) => {
      session.once('connect', () => resolve());
      session.once('error', reject);
    }),
    'the h2 client to connect',
  );
  return session;
}

export interface H2Result {
  status: number;
  headers: http2.IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
  trailers?: string[];
  rstCode: number;
}

/** Sends one request (body optional, trailers optional) and collects the whole answer. */
export function h2Request(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body?: Buffer | string,
  trailers?: http2.OutgoingHttpHeaders,
  ms?: number,
): Promise<H2Result> {
  const hasBody = body !== undefined || trailers !== undefined;
  const req = session.request(headers, { endStream: !hasBody, waitForTrailers: trailers !== undefined });
  if (trailers) req.on('wantTrailers', () => req.sendTrailers(trailers));
  if (hasBody) req.end(body ?? '');
  return within(collect(req), `${String(headers[':method'] ?? 'GET')} ${String(headers[':path'] ?? '/')} over h2`, ms);
}

export function collect(req: http2.ClientHttp2Stream): Promise<H2Result> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const result: H2Result = { status: 0, headers: {}, rawHeaders: [], body: Buffer.alloc(0), rstCode: 0 };
    req.on('response', (h: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader, _f: number, raw: string[]) => {
      result.status = Number(h[':status']);
      result.headers = h;
      result.rawHeaders = raw;
    });
    req.on('trailers', (_h: unknown, _f: number, raw: string[]) => (result.trailers = raw));
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', () => {});
    req.on('close', () => {
      result.body = Buffer.concat(chunks);
      result.rstCode = req.rstCode ?? 0;
      resolve(result);
    });
    req.on('aborted', () => {});
    void reject;
  });
}
