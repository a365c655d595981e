/**
 * The upstream HTTPS origin the e2e tests talk to (through tproxy-helper, or directly in the smoke
 * test): a request handler with a fixed set of endpoints, and a starter that serves it on several
 * addresses with one certificate. It owns only HTTP semantics; the CLI wrapper (upstream-server.ts)
 * owns argv and process lifetime. Large bodies are always streamed, never buffered whole, except
 * /echo, which is capped at ECHO_MAX_BYTES because it must know the digest before replying.
 *
 *   GET|HEAD /hello              200 "hello from upstream\n"
 *   POST|PUT /echo               200, body echoed; x-request-bytes, x-request-sha256 headers
 *   POST|PUT /upload             200 JSON {bytes, sha256} of the streamed body (any size)
 *   *        /echo-headers       200 JSON {method, url, httpVersion, headers, rawHeaders, tls, remote, local}
 *   GET|HEAD /bytes?n=N&seed=S   N pattern bytes (pattern.ts), content-length, streamed
 *   GET      /chunked?n=N&seed=S the same bytes, chunked (no content-length)
 *   GET      /status/NNN         status NNN (204/304 without a body)
 *   GET      /set-cookie         two Set-Cookie headers
 *   GET      /delay?ms=N         200 after N ms (at most 60 000)
 *   GET      /sse?n=N&interval=MS text/event-stream: N events, one every MS ms (first at once); each
 *                                 event's data is JSON {i, sentAt} (sentAt: epoch ms, fractional)
 *   GET      /gzip, /br, /zstd   CODED_BODY_TEXT with that Content-Encoding (zstd: a fixed frame)
 *   GET      /ws (Upgrade)       WebSocket echo (the `ws` package): each message back with its type;
 *                                 other upgrade paths get 404 and a close
 * `Expect: 100-continue` is answered by Node itself (no 'checkContinue' listener).
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import { WebSocketServer } from 'ws';
import { DEFAULT_PATTERN_SEED, patternChunks } from './pattern.js';

export const HELLO_BODY = 'hello from upstream\n';
/** /echo buffers the body to compute its digest before replying; bigger bodies get 413 (use /upload). */
export const ECHO_MAX_BYTES = 64 * 1024 * 1024;
/** Upper bound for /bytes and /chunked: 1 TiB, i.e. effectively "any test size". */
const MAX_PATTERN_BYTES = 2 ** 40;
const MAX_DELAY_MS = 60_000;

/** The text /gzip, /br and /zstd send compressed. */
export const CODED_BODY_TEXT = `coded body: ${'tproxy decodes this. '.repeat(500)}end\n`;
/** `zstd -19` of CODED_BODY_TEXT, made once with the zstd CLI: Node 20 cannot compress zstd. */
const CODED_BODY_ZSTD = Buffer.from('KLUv/WQUKG0BAEQCY29kZWQgYm9keTogdHByb3h5IGRlY29kZXMgdGhpcy5lbmQKAQBoR8jPJ2zIi1U=', 'base64');

/** The data of /sse's event i: when it was written, so a client can measure how late it arrived. */
export interface SseTestEvent {
  i: number;
  /** performance.timeOrigin + performance.now() at the write: epoch ms with sub-ms precision. */
  sentAt: number;
}

/** /sse: `n` events `intervalMs` apart, each written the moment it is due, then the end. */
function serveSse(res: ServerResponse, n: number, intervalMs: number): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.flushHeaders();
  let i = 0;
  const tick = () => {
    if (res.destroyed) return;
    const data: SseTestEvent = { i, sentAt: performance.timeOrigin + performance.now() };
    res.write(`event: tick\nid: ${i}\ndata: ${JSON.stringify(data)}\n\n`);
    i++;
    if (i >= n) return void res.end();
    timer = setTimeout(tick, intervalMs);
  };
  let timer = setTimeout(tick, 0);
  res.on('close', () => clearTimeout(timer));
}

function serveCoded(res: ServerResponse, coding: 'gzip' | 'br' | 'zstd'): void {
  const text = Buffer.from(CODED_BODY_TEXT);
  const body = coding === 'gzip' ? gzipSync(text) : coding === 'br' ? brotliCompressSync(text) : CODED_BODY_ZSTD;
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-encoding': coding, 'content-length': body.length });
  res.end(body);
}

/** JSON body of /echo-headers. */
export interface SeenRequest {
  method: string;
  url: string;
  httpVersion: string;
  headers: Record<string, string | string[] | undefined>;
  /** Names in received case and order, alternating with values. */
  rawHeaders: string[];
  tls: { servername: string | null; alpn: string | null; protocol: string | null };
  remote: { address: string | undefined; port: number | undefined };
  local: { address: string | undefined; port: number | undefined };
}

function send(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

function sendJson(res: ServerResponse, value: unknown): void {
  send(res, 200, `${JSON.stringify(value)}\n`, { 'content-type': 'application/json' });
}

function methodNotAllowed(res: ServerResponse, allow: string): void {
  send(res, 405, 'method not allowed\n', { allow });
}

function parseCount(raw: string | null, max: number): number | undefined {
  if (raw === null || !/^\d+$/.test(raw)) return undefined;
  const n = Number(raw);
  return Number.isSafeInteger(n) && n <= max ? n : undefined;
}

/** Writes `chunks` honouring backpressure; stops quietly if the client goes away. */
async function streamChunks(res: ServerResponse, chunks: Iterable<Buffer>): Promise<void> {
  for (const chunk of chunks) {
    if (res.destroyed) return;
    if (!res.write(chunk)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          res.off('drain', done);
          res.off('close', done);
          resolve();
        };
        res.on('drain', done);
        res.on('close', done);
      });
    }
  }
  res.end();
}

function servePattern(req: IncomingMessage, res: ServerResponse, url: URL, chunked: boolean): void {
  const n = parseCount(url.searchParams.get('n'), MAX_PATTERN_BYTES);
  if (n === undefined) return send(res, 400, `need n=<bytes> (at most ${MAX_PATTERN_BYTES})\n`);
  const seed = url.searchParams.get('seed') ?? DEFAULT_PATTERN_SEED;
  const headers: Record<string, string | number> = { 'content-type': 'application/octet-stream' };
  if (!chunked) headers['content-length'] = n;
  res.writeHead(200, headers);
  if (req.method === 'HEAD') return void res.end();
  streamChunks(res, patternChunks(n, seed)).catch((err: Error) => res.destroy(err));
}

function readDigest(req: IncomingMessage, keepUpTo: number): Promise<{ bytes: number; sha256: string; body: Buffer[] | null }> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let bytes = 0;
    let body: Buffer[] | null = [];
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      hash.update(chunk);
      if (body && bytes <= keepUpTo) body.push(chunk);
      else body = null;
    });
    req.on('end', () => resolve({ bytes, sha256: hash.digest('hex'), body }));
    req.on('error', reject);
  });
}

function seenRequest(req: IncomingMessage): SeenRequest {
  const socket = req.socket as TLSSocket;
  const servername = (socket as TLSSocket & { servername?: string | false }).servername;
  return {
    method: req.method ?? '',
    url: req.url ?? '',
    httpVersion: req.httpVersion,
    headers: req.headers,
    rawHeaders: req.rawHeaders,
    tls: {
      servername: typeof servername === 'string' ? servername : null,
      alpn: typeof socket.alpnProtocol === 'string' ? socket.alpnProtocol : null,
      protocol: typeof socket.getProtocol === 'function' ? socket.getProtocol() : null,
    },
    remote: { address: socket.remoteAddress, port: socket.remotePort },
    local: { address: socket.localAddress, port: socket.localPort },
  };
}

/** The request handler behind every listener. */
export function handleUpstreamRequest(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'https://upstream.test');
  const method = req.method ?? 'GET';
  const path = url.pathname;
  const getOrHead = method === 'GET' || method === 'HEAD';

  if (path === '/hello') {
    if (!getOrHead) return methodNotAllowed(res, 'GET, HEAD');
    return send(res, 200, HELLO_BODY);
  }
  if (path === '/echo' || path === '/upload') {
    if (method !== 'POST' && method !== 'PUT') return methodNotAllowed(res, 'POST, PUT');
    const keep = path === '/echo' ? ECHO_MAX_BYTES : 0;
    readDigest(req, keep).then(
      ({ bytes, sha256, body }) => {
        if (path === '/upload') return sendJson(res, { bytes, sha256 });
        if (body === null) return send(res, 413, `/echo takes at most ${ECHO_MAX_BYTES} bytes; use /upload\n`);
        res.writeHead(200, {
          'content-type': req.headers['content-type'] ?? 'application/octet-stream',
          'content-length': bytes,
          'x-request-bytes': bytes,
          'x-request-sha256': sha256,
        });
        res.end(Buffer.concat(body));
      },
      (err: Error) => res.destroy(err),
    );
    return;
  }
  if (path === '/echo-headers') {
    // Drain any body so keep-alive stays usable; only the head is reported.
    req.resume();
    req.on('end', () => sendJson(res, seenRequest(req)));
    return;
  }
  if (path === '/bytes' || path === '/chunked') {
    if (path === '/bytes' ? !getOrHead : method !== 'GET') return methodNotAllowed(res, path === '/bytes' ? 'GET, HEAD' : 'GET');
    return servePattern(req, res, url, path === '/chunked');
  }
  const status = /^\/status\/(\d{3})$/.exec(path);
  if (status) {
    const code = Number(status[1]);
    if (code < 200 || code > 599) return send(res, 400, 'status must be 200-599\n');
    // RFC 9110 6.4.1: 204 and 304 never carry content.
    if (code === 204 || code === 304) {
      res.writeHead(code);
      return void res.end();
    }
    return send(res, code, `status ${code}\n`);
  }
  if (path === '/set-cookie') {
    if (!getOrHead) return methodNotAllowed(res, 'GET, HEAD');
    res.setHeader('set-cookie', ['a=1; Path=/; HttpOnly', 'b=2; Path=/; Secure; SameSite=Lax']);
    return send(res, 200, 'cookies set\n');
  }
  if (path === '/sse') {
    if (method !== 'GET') return methodNotAllowed(res, 'GET');
    const n = parseCount(url.searchParams.get('n'), 10_000);
    const interval = parseCount(url.searchParams.get('interval'), MAX_DELAY_MS);
    if (n === undefined || n < 1 || interval === undefined) return send(res, 400, 'need n=<1..10000>&interval=<ms>\n');
    return serveSse(res, n, interval);
  }
  if (path === '/gzip' || path === '/br' || path === '/zstd') {
    if (method !== 'GET') return methodNotAllowed(res, 'GET');
    return serveCoded(res, path.slice(1) as 'gzip' | 'br' | 'zstd');
  }
  if (path === '/delay') {
    const ms = parseCount(url.searchParams.get('ms'), MAX_DELAY_MS);
    if (ms === undefined) return send(res, 400, `need ms=<0..${MAX_DELAY_MS}>\n`);
    const timer = setTimeout(() => send(res, 200, `delayed ${ms} ms\n`), ms);
    res.on('close', () => clearTimeout(timer));
    return;
  }
  send(res, 404, 'not found\n');
}

export interface UpstreamServerOptions {
  cert: string | Buffer;
  key: string | Buffer;
  hosts: readonly string[];
  /** 0 picks a free port per host (see `listening`). */
  port: number;
  /** One line per request and per failed handshake. */
  log?: (line: string) => void;
  /** ALPN protocols offered; `[]` for an origin that negotiates no ALPN at all. Default `['http/1.1']`. */
  alpn?: string[];
}

export interface RunningUpstream {
  /** "host:port" per listener, IPv6 in brackets. */
  listening: string[];
  close(): Promise<void>;
}

function hostPort(a: AddressInfo): string {
  return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

/** Serves handleUpstreamRequest over TLS (ALPN http/1.1 only) on every host; resolves once all listen. */
export async function startUpstreamServer(opts: UpstreamServerOptions): Promise<RunningUpstream> {
  const log = opts.log ?? (() => undefined);
  const servers: Server[] = [];
  for (const host of opts.hosts) {
    const server = createServer(
      {
        cert: opts.cert,
        key: opts.key,
        // Only http/1.1 (or none): the helper's upstream leg must work against plain HTTP/1.1 origins.
        ALPNProtocols: opts.alpn ?? ['http/1.1'],
        // Node's 300 s default would cut off multi-GiB uploads through a slow path; the test
        // client's own timeout bounds every request instead.
        requestTimeout: 0,
      },
      (req, res) => {
        const t0 = performance.now();
        res.on('close', () => {
          const tls = req.socket as TLSSocket & { servername?: string | false };
          log(
            `${new Date().toISOString()} ${req.socket.remoteAddress}:${req.socket.remotePort} -> ${host} ` +
              `sni=${tls.servername || '-'} ${req.method} ${req.url} HTTP/${req.httpVersion} ` +
              `${res.statusCode}${res.writableFinished ? '' : ' (aborted)'} ${Math.round(performance.now() - t0)}ms`,
          );
        });
        handleUpstreamRequest(req, res);
      },
    );
    // /ws: one echo server for every listener; the handshake is logged like a request.
    const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
    wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      log(`${new Date().toISOString()} ${req.socket.remoteAddress}:${req.socket.remotePort} -> ${host} upgrade ${req.method} ${req.url} HTTP/${req.httpVersion}`);
      socket.on('error', () => undefined);
      if (new URL(req.url ?? '/', 'https://upstream.test').pathname !== '/ws') {
        socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nConnection: close\r\n\r\nnot found\n');
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
    });
    server.on('tlsClientError', (err, socket) => {
      log(`${new Date().toISOString()} ${socket.remoteAddress}:${socket.remotePort} -> ${host} tls error: ${err.message}`);
    });
    servers.push(server);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host, port: opts.port }, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      await closeAll(servers);
      throw new Error(`listening on ${host}:${opts.port}: ${(err as Error).message}`);
    }
  }
  return {
    listening: servers.map((s) => hostPort(s.address() as AddressInfo)),
    close: () => closeAll(servers),
  };
}

async function closeAll(servers: readonly Server[]): Promise<void> {
  await Promise.all(
    servers.map(
      (s) =>
        new Promise<void>((resolve) => {
          if (!s.listening) return resolve();
          s.close(() => resolve());
          s.closeAllConnections();
        }),
    ),
  );
}
