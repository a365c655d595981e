/**
 * HTTP/2 and gRPC test clients, run inside the client namespace (through the helper's interception)
 * with `node --use-openssl-ca --import tsx`, so they trust exactly the (sandboxed) system store the
 * helper installed its CA into. Each subcommand prints one JSON line and exits 0, or prints the
 * error and exits 1. There is no DNS: sockets go to the address given, SNI and :authority say
 * upstream.test.
 *
 *   h2-client.ts streams ADDR N        N concurrent GET /hello?i=<i> on ONE h2 connection
 *   h2-client.ts trailers ADDR         POST /h2/trailers with a request trailer
 *   h2-client.ts reset ADDR CODE       GET /h2/reset?code=CODE: what the client saw
 *   h2-client.ts grpc ADDR PORT        a unary and a server-streaming call with @grpc/grpc-js
 */
import http2 from 'node:http2';
import tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { ECHO_SERVICE } from './h2-upstream-app.js';

const NAME = 'upstream.test';
const TIMEOUT_MS = 30_000;

function connect(addr: string): Promise<{ session: http2.ClientHttp2Session; socket: tls.TLSSocket }> {
  let socket!: tls.TLSSocket;
  const session = http2.connect(`https://${NAME}`, {
    createConnection: () => (socket = tls.connect({ host: addr, port: 443, servername: NAME, ALPNProtocols: ['h2'] })),
  });
  return new Promise((resolve, reject) => {
    session.once('connect', () => resolve({ session, socket }));
    session.once('error', reject);
  });
}

interface Answer {
  status: number;
  body: string;
  trailers: string[] | null;
  rstCode: number;
}

function request(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: string, trailers?: http2.OutgoingHttpHeaders): Promise<Answer> {
  const req = session.request(headers, { endStream: body === undefined, waitForTrailers: trailers !== undefined });
  if (trailers) req.on('wantTrailers', () => req.sendTrailers(trailers));
  if (body !== undefined) req.end(body);
  return new Promise((resolve) => {
    const out: Answer = { status: 0, body: '', trailers: null, rstCode: 0 };
    const chunks: Buffer[] = [];
    req.on('response', (h) => (out.status = Number(h[':status'])));
    req.on('trailers', (_h, _f, raw: string[]) => (out.trailers = raw));
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', () => undefined);
    req.on('close', () => {
      out.body = Buffer.concat(chunks).toString();
      out.rstCode = req.rstCode ?? 0;
      resolve(out);
    });
  });
}

async function streams(addr: string, n: number): Promise<unknown> {
  const { session, socket } = await connect(addr);
  const answers = await Promise.all(Array.from({ length: n }, (_, i) => request(session, { ':path': `/hello?i=${i}` })));
  session.close();
  return { alpn: socket.alpnProtocol, localPort: socket.localPort, answers: answers.map((a) => ({ status: a.status, body: a.body })) };
}

async function trailers(addr: string): Promise<unknown> {
  const { session } = await connect(addr);
  const a = await request(session, { ':method': 'POST', ':path': '/h2/trailers', 'content-type': 'text/plain' }, 'twelve bytes', { 'x-client-trailer': 'sent' });
  session.close();
  return a;
}

async function reset(addr: string, code: number): Promise<unknown> {
  const { session } = await connect(addr);
  const a = await request(session, { ':path': `/h2/reset?code=${code}` });
  session.close();
  return a;
}

async function grpcCalls(addr: string, port: number): Promise<unknown> {
  const Client = grpc.makeGenericClientConstructor(ECHO_SERVICE, 'Echo');
  const target = addr.includes(':') ? `ipv6:[${addr}]:${port}` : `ipv4:${addr}:${port}`;
  const client = new Client(target, grpc.credentials.createSsl(), { 'grpc.ssl_target_name_override': NAME, 'grpc.default_authority': NAME });
  const deadline = () => Date.now() + TIMEOUT_MS;
  const unary = await new Promise<{ value: unknown; trailers: Record<string, unknown> }>((resolve, reject) => {
    let trailersSeen: Record<string, unknown> = {};
    const call = client.makeUnaryRequest(
      ECHO_SERVICE.Unary!.path,
      ECHO_SERVICE.Unary!.requestSerialize,
      ECHO_SERVICE.Unary!.responseDeserialize,
      { echo: 'unary hello', n: 1 },
      new grpc.Metadata(),
      { deadline: deadline() },
      (err, value) => (err ? reject(err) : setImmediate(() => resolve({ value, trailers: trailersSeen }))),
    );
    call.on('status', (s: grpc.StatusObject) => (trailersSeen = s.metadata.getMap()));
  });
  const stream = await new Promise<{ messages: unknown[]; code: number; trailers: Record<string, unknown> }>((resolve, reject) => {
    const messages: unknown[] = [];
    const call = client.makeServerStreamRequest(
      ECHO_SERVICE.Stream!.path,
      ECHO_SERVICE.Stream!.requestSerialize,
      ECHO_SERVICE.Stream!.responseDeserialize,
      { echo: 'stream hello', n: 5 },
      new grpc.Metadata(),
      { deadline: deadline() },
    );
    call.on('data', (m: unknown) => messages.push(m));
    call.on('error', reject);
    call.on('status', (s: grpc.StatusObject) => resolve({ messages, code: s.code, trailers: s.metadata.getMap() }));
  });
  client.close();
  return { unary, stream };
}

const [cmd, addr, arg] = process.argv.slice(2);
const timer = setTimeout(() => {
  console.error(`h2-client ${cmd}: timed out after ${TIMEOUT_MS} ms`);
  process.exit(1);
}, TIMEOUT_MS);
try {
  if (!addr) throw new Error('usage: h2-client.ts streams|trailers|reset|grpc ADDR [ARG]');
  const result =
    cmd === 'streams' ? await streams(addr, Number(arg ?? 100))
    : cmd === 'trailers' ? await trailers(addr)
    : cmd === 'reset' ? await reset(addr, Number(arg ?? 2))
    : cmd === 'grpc' ? await grpcCalls(addr, Number(arg ?? 50051))
    : (() => { throw new Error(`unknown command ${cmd}`); })();
  console.log(JSON.stringify(result));
  clearTimeout(timer);
  process.exit(0);
} catch (err) {
  console.error(`h2-client ${cmd}: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
}
