/**
 * The HTTP/2 test origin: the same endpoints as upstream-app.ts (through Node's http2 compatibility
 * API, so every /hello, /echo, /bytes... works over h2 and, with allowHTTP1, over http/1.1 too),
 * a few h2-only endpoints, and a real gRPC server (@grpc/grpc-js) on its own port. It owns HTTP/2
 * and gRPC semantics only; h2-upstream-server.ts owns argv and process lifetime.
 *
 *   POST     /h2/trailers        200 JSON {bytes, trailers} (the request's trailers as raw pairs),
 *                                then response trailers x-body-bytes and x-origin-trailer: yes
 *   GET      /h2/reset?code=N    200 head and 5 bytes, then RST_STREAM with error code N
 *   GET      /h2/info            200 JSON {httpVersion, alpn, streamId, rawHeaders} (pseudo-headers included)
 *
 * gRPC service `tproxy.test.Echo` (messages are JSON in raw bytes, no .proto needed):
 *   Unary(GrpcEchoRequest) → {echo, n}; trailing metadata x-unary-trailer: done
 *   Stream(GrpcEchoRequest) → n messages {echo, i}, 20 ms apart; trailing metadata x-stream-trailer: done
 */
import http2 from 'node:http2';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { handleUpstreamRequest } from './upstream-app.js';

/** The gRPC port on every h2 origin address (captured by starting capture with it in `ports`). */
export const H2_GRPC_PORT = 50051;

export interface GrpcEchoRequest {
  echo: string;
  /** Stream: how many messages (1..1000). */
  n: number;
}

const json = {
  serialize: (v: unknown) => Buffer.from(JSON.stringify(v)),
  deserialize: (b: Buffer) => JSON.parse(b.toString()) as unknown,
};

/** The service definition both the origin and the test client use. */
export const ECHO_SERVICE: grpc.ServiceDefinition = {
  Unary: {
    path: '/tproxy.test.Echo/Unary',
    requestStream: false,
    responseStream: false,
    requestSerialize: json.serialize,
    requestDeserialize: json.deserialize,
    responseSerialize: json.serialize,
    responseDeserialize: json.deserialize,
  },
  Stream: {
    path: '/tproxy.test.Echo/Stream',
    requestStream: false,
    responseStream: true,
    requestSerialize: json.serialize,
    requestDeserialize: json.deserialize,
    responseSerialize: json.serialize,
    responseDeserialize: json.deserialize,
  },
};

function sendJson(res: http2.Http2ServerResponse, value: unknown, trailers?: Record<string, string>): void {
  const body = `${JSON.stringify(value)}\n`;
  res.writeHead(200, { 'content-type': 'application/json' });
  if (trailers) res.addTrailers(trailers);
  res.end(body);
}

/** Sends RST_STREAM(code) without the END_STREAM Node's close() would put on the wire first. */
function reset(stream: http2.ServerHttp2Stream, code: number): void {
  (stream as unknown as { _final: (cb: () => void) => void })._final = (cb) => cb();
  stream.close(code);
}

function handleH2(req: http2.Http2ServerRequest, res: http2.Http2ServerResponse): void {
  const url = new URL(req.url ?? '/', 'https://upstream.test');
  if (url.pathname === '/h2/trailers') {
    let bytes = 0;
    req.on('data', (c: Buffer) => (bytes += c.length));
    req.on('end', () => sendJson(res, { bytes, trailers: req.rawTrailers }, { 'x-body-bytes': String(bytes), 'x-origin-trailer': 'yes' }));
    return;
  }
  if (url.pathname === '/h2/reset') {
    const code = Number(url.searchParams.get('code') ?? '2');
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('part.', () => setTimeout(() => reset(res.stream, code), 20));
    return;
  }
  if (url.pathname === '/h2/info') {
    const socket = req.socket as TLSSocket;
    sendJson(res, { httpVersion: req.httpVersion, alpn: socket.alpnProtocol ?? null, streamId: req.stream?.id ?? null, rawHeaders: req.rawHeaders });
    return;
  }
  // Http2ServerRequest/Response implement what the shared handler uses (heads, bodies, events).
  handleUpstreamRequest(req as unknown as IncomingMessage, res as unknown as ServerResponse);
}

export interface H2UpstreamOptions {
  cert: string | Buffer;
  key: string | Buffer;
  hosts: readonly string[];
  port: number;
  grpcPort: number;
  log?: (line: string) => void;
}

export interface RunningH2Upstream {
  listening: string[];
  close(): Promise<void>;
}

function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

export async function startH2UpstreamServer(opts: H2UpstreamOptions): Promise<RunningH2Upstream> {
  const log = opts.log ?? (() => undefined);
  const servers: http2.Http2SecureServer[] = [];
  const listening: string[] = [];
  const grpcServer = new grpc.Server();
  const closeAll = async () => {
    await Promise.all(
      servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            if (!s.listening) return resolve();
            s.close(() => resolve());
          }),
      ),
    );
    grpcServer.forceShutdown();
  };
  for (const host of opts.hosts) {
    const server = http2.createSecureServer({ cert: opts.cert, key: opts.key, allowHTTP1: true, settings: { maxConcurrentStreams: 1000 } }, (req, res) => {
      const t0 = performance.now();
      res.on('close', () => log(`${new Date().toISOString()} ${req.socket.remoteAddress} -> ${host} ${req.method} ${req.url} HTTP/${req.httpVersion} ${res.statusCode} ${Math.round(performance.now() - t0)}ms`));
      handleH2(req, res);
    });
    server.on('session', (s: http2.ServerHttp2Session) => s.on('error', () => undefined));
    server.on('stream', (s: http2.ServerHttp2Stream) => s.on('error', () => undefined));
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
      await closeAll();
      throw new Error(`listening on ${host}:${opts.port}: ${(err as Error).message}`);
    }
    listening.push(hostPort(host, (server.address() as AddressInfo).port));
  }

  grpcServer.addService(ECHO_SERVICE, {
    Unary: (call: grpc.ServerUnaryCall<GrpcEchoRequest, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      const trailer = new grpc.Metadata();
      trailer.set('x-unary-trailer', 'done');
      callback(null, { echo: call.request.echo, n: call.request.n }, trailer);
    },
    Stream: (call: grpc.ServerWritableStream<GrpcEchoRequest, unknown>) => {
      const n = Math.max(1, Math.min(1000, call.request.n));
      let i = 0;
      const tick = () => {
        if (call.cancelled) return;
        call.write({ echo: call.request.echo, i });
        i++;
        if (i < n) return void setTimeout(tick, 20);
        const trailer = new grpc.Metadata();
        trailer.set('x-stream-trailer', 'done');
        call.end(trailer);
      };
      tick();
    },
  });
  const creds = grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(opts.cert), private_key: Buffer.from(opts.key) }], false);
  for (const host of opts.hosts) {
    const target = hostPort(host, opts.grpcPort);
    try {
      await new Promise<void>((resolve, reject) => grpcServer.bindAsync(target, creds, (err) => (err ? reject(err) : resolve())));
    } catch (err) {
      await closeAll();
      throw new Error(`gRPC listening on ${target}: ${(err as Error).message}`);
    }
    listening.push(`grpc ${target}`);
  }
  return { listening, close: closeAll };
}
