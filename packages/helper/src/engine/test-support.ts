/**
 * Test support for the decrypt engine's in-process tests; production code never imports it. It owns
 * a throw-away PKI for the upstream leg (a test CA distinct from the interception CA, and leaves that
 * are good, misnamed, expired, CN-only or self-signed), loopback upstream servers, and the engine
 * wired exactly as capture/service.ts wires it minus the kernel parts: a plain net.Server stands in
 * for the transparent listener and a loopback connector for the marked connector. Everything here
 * listens on 127.0.0.1 only, needs no root, and every wait is bounded so a hung test fails instead.
 */
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import forge from 'node-forge';
import type { Exchange } from '@tproxy/protocol';
import { LeafCache } from '../ca/cache.js';
import { generateCa } from '../ca/generate.js';
import { createLeafKey, type LeafKey } from '../ca/leaf.js';
import { caMaterialFromPem, type CaMaterial } from '../ca/material.js';
import { loadOrCreateCa, type StoredCa } from '../ca/store.js';
import { randomSerialHex, signCertificate, utf8Attribute, wholeSeconds } from '../ca/x509.js';
import { ExchangeStore, type ExchangeEvent } from '../capture/store.js';
import { silentLogger } from '../log.js';
import { Engine, type EngineOptions } from './engine.js';
import { HttpProxy } from './http-proxy.js';
import { PassthroughRelay } from './passthrough.js';
import { UpstreamPool, type SocketConnector, type UpstreamOptions } from './upstream.js';

/** The SNI every well-behaved test client sends, and the name the good upstream leaf carries. */
export const UPSTREAM_NAME = 'upstream.test';

/** Default bound for one wait: generous against a loaded CI box, far below the test timeout. */
export const WAIT_MS = 5_000;

const DAY_MS = 24 * 3600 * 1000;

/** Resolves like `promise`, or rejects naming `what` once `ms` have passed. */
export function within<T>(promise: Promise<T>, what: string, ms = WAIT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Listens on an ephemeral loopback port and returns it. */
export async function listenLoopback(server: net.Server): Promise<number> {
  await within(
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    }),
    'a loopback listener',
  );
  return (server.address() as net.AddressInfo).port;
}

/** Closes a server and every connection it still holds. */
export async function closeServer(server: net.Server): Promise<void> {
  if (!server.listening) return;
  const closing = new Promise<void>((resolve) => server.close(() => resolve()));
  // http.Server and https.Server can drop their kept-alive connections; plain servers' owners must.
  if ('closeAllConnections' in server && typeof server.closeAllConnections === 'function') server.closeAllConnections();
  await within(closing, 'a server to close');
}

/** A port that refused connections a moment ago: bound, then released. */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  const port = await listenLoopback(server);
  await closeServer(server);
  return port;
}

// ---------------------------------------------------------------------------------------------
// PKI for the upstream leg
// ---------------------------------------------------------------------------------------------

/** The upstream-side certificates; all leaves share `keyPem`. */
export interface UpstreamPki {
  /** The test upstream CA: what the pool trusts. Never the interception CA. */
  caPem: string;
  ca: CaMaterial;
  keyPem: string;
  /** SAN DNS:upstream.test + IP:127.0.0.1, signed by the test CA. */
  good: string;
  /** SAN DNS:other.test only, signed by the test CA. */
  otherName: string;
  /** Right name, signed by the test CA, notAfter a day ago. */
  expired: string;
  /** CN=upstream.test and no subjectAltName at all, signed by the test CA. */
  cnOnly: string;
  /** Right name, signed by its own key: not in the pool's trust. */
  selfSigned: string;
}

interface LeafSpec {
  cn?: string;
  dns?: string[];
  ips?: string[];
  notBefore?: Date;
  notAfter?: Date;
  /** Sign with the leaf's own key and use the subject as issuer. */
  selfSigned?: boolean;
}

function ipv4Bytes(ip: string): string {
  return Buffer.from(ip.split('.').map(Number)).toString('binary');
}

function mintLeaf(ca: CaMaterial, key: LeafKey, spec: LeafSpec): string {
  const now = Date.now();
  const cert = forge.pki.createCertificate();
  cert.version = 2;
  cert.serialNumber = randomSerialHex();
  cert.publicKey = key.publicKey!; // an RSA key: createUpstreamPki asks for one
  cert.validity.notBefore = wholeSeconds(spec.notBefore ?? new Date(now - DAY_MS));
  cert.validity.notAfter = wholeSeconds(spec.notAfter ?? new Date(now + 30 * DAY_MS));
  const subject = spec.cn ? [utf8Attribute('CN', spec.cn)] : [];
  cert.setSubject(subject);
  cert.setIssuer(spec.selfSigned ? subject : ca.issuerAttributes);
  const altNames = [...(spec.dns ?? []).map((value) => ({ type: 2, value })), ...(spec.ips ?? []).map((ip) => ({ type: 7, value: ipv4Bytes(ip) }))];
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    ...(altNames.length > 0 ? [{ name: 'subjectAltName', critical: subject.length === 0, altNames }] : []),
    ...(spec.selfSigned ? [] : [{ name: 'authorityKeyIdentifier', keyIdentifier: ca.subjectKeyIdentifier }]),
  ]);
  return signCertificate(cert, spec.selfSigned ? key.privateKey : ca.privateKey);
}

/** Mints the upstream test CA and every leaf the tests need (~100 ms: two RSA key generations). */
export async function createUpstreamPki(): Promise<UpstreamPki> {
  const generated = await generateCa({ commonName: 'tproxy engine test upstream CA' });
  const ca = caMaterialFromPem(generated.certPem, generated.keyPem);
  // RSA: mintLeaf builds these with forge, which cannot encode EC keys.
  const key = await createLeafKey('rsa-2048');
  const now = Date.now();
  return {
    caPem: ca.certPem,
    ca,
    keyPem: key.keyPem,
    good: mintLeaf(ca, key, { cn: UPSTREAM_NAME, dns: [UPSTREAM_NAME], ips: ['127.0.0.1'] }),
    otherName: mintLeaf(ca, key, { cn: 'other.test', dns: ['other.test'] }),
    expired: mintLeaf(ca, key, { cn: UPSTREAM_NAME, dns: [UPSTREAM_NAME], notBefore: new Date(now - 10 * DAY_MS), notAfter: new Date(now - DAY_MS) }),
    cnOnly: mintLeaf(ca, key, { cn: UPSTREAM_NAME }),
    selfSigned: mintLeaf(ca, key, { cn: UPSTREAM_NAME, dns: [UPSTREAM_NAME], selfSigned: true }),
  };
}

/** A certificate as Node's TLS layer hands it to checkServerIdentity. */
export function peerCertificate(pem: string): tls.PeerCertificate {
  return new X509Certificate(pem).toLegacyObject();
}

// ---------------------------------------------------------------------------------------------
// The interception side
// ---------------------------------------------------------------------------------------------

/** Our CA in a temp state dir, the per-run leaf key, and the leaf cache the engine mints from. */
export interface InterceptionPki {
  ca: StoredCa;
  certs: LeafCache;
  dispose(): Promise<void>;
}

export async function createInterceptionPki(): Promise<InterceptionPki> {
  const dir = await mkdtemp(join(tmpdir(), 'tproxy-engine-test-'));
  try {
    const ca = await loadOrCreateCa(dir);
    const certs = new LeafCache(ca, await createLeafKey());
    return { ca, certs, dispose: () => rm(dir, { recursive: true, force: true }) };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** A connector that ignores the original destination and dials a loopback port instead. */
export interface LoopbackConnector {
  connect: SocketConnector;
  /** Every (address, port) the pool asked for, in order. */
  calls: { address: string; port: number }[];
}

export function loopbackConnector(port: number): LoopbackConnector {
  const calls: { address: string; port: number }[] = [];
  const connect: SocketConnector = (address, wantedPort) => {
    calls.push({ address, port: wantedPort });
    // Resolve once connected, as the native marked connect does: connect errors (ECONNREFUSED)
    // surface here, with code and syscall 'connect', not later on the TLS socket.
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port });
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(socket);
      });
      socket.once('error', reject);
    });
  };
  return { connect, calls };
}

/** Every store event, in order, with a bounded wait for a condition over them. */
export class EventLog {
  readonly entries: { event: ExchangeEvent; exchange: Exchange }[] = [];
  private readonly waiters = new Set<() => void>();
  readonly unsubscribe: () => void;

  constructor(store: ExchangeStore) {
    this.unsubscribe = store.subscribe((event, exchange) => {
      this.entries.push({ event, exchange });
      for (const w of this.waiters) w();
    });
  }

  /** The events seen for one exchange id, in order. */
  eventsFor(id: number): ExchangeEvent[] {
    return this.entries.filter((e) => e.exchange.id === id).map((e) => e.event);
  }

  /** Resolves with the first value `pick` returns that is not undefined, checked after every event. */
  waitFor<T>(pick: () => T | undefined, what: string, ms = WAIT_MS): Promise<T> {
    const now = pick();
    if (now !== undefined) return Promise.resolve(now);
    let waiter: () => void = () => {};
    const found = new Promise<T>((resolve) => {
      waiter = () => {
        const v = pick();
        if (v !== undefined) resolve(v);
      };
      this.waiters.add(waiter);
    });
    return within(found, what, ms).finally(() => this.waiters.delete(waiter));
  }

  /** The `completed` snapshot of exchange `id`. */
  completed(id: number, ms = WAIT_MS): Promise<Exchange> {
    return this.waitFor(() => this.entries.find((e) => e.event === 'completed' && e.exchange.id === id)?.exchange, `exchange ${id} to complete`, ms);
  }

  /** Ids announced as started, in order. */
  startedIds(): number[] {
    return this.entries.filter((e) => e.event === 'started').map((e) => e.exchange.id);
  }
}

export interface EngineHarness {
  /** The front port: what an intercepted client would have been steered to. */
  port: number;
  store: ExchangeStore;
  events: EventLog;
  engine: Engine;
  proxy: HttpProxy;
  pool: UpstreamPool;
  close(): Promise<void>;
}

export interface EngineHarnessOptions {
  certs: LeafCache;
  connect: SocketConnector;
  /** PEM trust anchors for the upstream leg. */
  upstreamCaPem: string;
  bodyCaptureLimit?: number;
  upstream?: Partial<Pick<UpstreamOptions, 'handshakeTimeoutMs' | 'idleTimeoutMs'>>;
  /** Engine options beyond the defaults (h2 server, limits, attribution). */
  engine?: Partial<Pick<EngineOptions, 'certs' | 'h2' | 'handshakeTimeoutMs' | 'maxConnectionsPerProcess' | 'attribution'>>;
}

/** The engine as capture/service.ts assembles it, behind a plain loopback listener. */
export async function startEngine(opts: EngineHarnessOptions): Promise<EngineHarness> {
  const store = new ExchangeStore();
  const events = new EventLog(store);
  const pool = new UpstreamPool({ connect: opts.connect, trust: tls.createSecureContext({ ca: opts.upstreamCaPem }), ...opts.upstream });
  const proxy = new HttpProxy({ pool, store, bodyCaptureLimit: opts.bodyCaptureLimit ?? 1024, log: silentLogger });
  const passthrough = new PassthroughRelay({ connect: opts.connect, store, log: silentLogger, idleTimeoutMs: 60_000 });
  const engine = new Engine({ certs: { contextFor: (name) => opts.certs.get(name) }, proxy, pool, passthrough, log: silentLogger, ...opts.engine });
  const front = net.createServer((socket) => engine.handleConnection(socket));
  const port = await listenLoopback(front);
  return {
    port,
    store,
    events,
    engine,
    proxy,
    pool,
    close: async () => {
      events.unsubscribe();
      engine.closeAll();
      proxy.close();
      pool.destroy();
      await closeServer(front);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Upstreams
// ---------------------------------------------------------------------------------------------

/** What a real upstream received, as its own HTTP parser saw it. */
export interface ReceivedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
}

export interface Upstream {
  port: number;
  server: https.Server;
  requests: ReceivedRequest[];
  /** The raw TCP socket under a TLS connection, found by the peer port (to send a real RST). */
  rawSocketFor(tlsSocket: net.Socket): net.Socket | undefined;
  close(): Promise<void>;
}

export type UpstreamHandler = (req: http.IncomingMessage, res: http.ServerResponse, upstream: Upstream) => void;

/** An HTTPS upstream on loopback; every request is logged before `handler` runs. */
export async function startUpstream(tlsOpts: { key: string; cert: string }, handler: UpstreamHandler, onCheckContinue?: UpstreamHandler): Promise<Upstream> {
  const raw = new Map<number, net.Socket>();
  const server = https.createServer({ key: tlsOpts.key, cert: tlsOpts.cert });
  const upstream: Upstream = {
    port: 0,
    server,
    requests: [],
    rawSocketFor: (s) => (s.remotePort === undefined ? undefined : raw.get(s.remotePort)),
    close: () => closeServer(server),
  };
  const log = (req: http.IncomingMessage) => upstream.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders });
  server.on('connection', (socket: net.Socket) => {
    const port = socket.remotePort;
    if (port === undefined) return;
    raw.set(port, socket);
    socket.once('close', () => raw.delete(port));
  });
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    log(req);
    handler(req, res, upstream);
  });
  if (onCheckContinue) {
    server.on('checkContinue', (req: http.IncomingMessage, res: http.ServerResponse) => {
      log(req);
      onCheckContinue(req, res, upstream);
    });
  }
  upstream.port = await listenLoopback(server);
  return upstream;
}

/**
 * A bare TLS server for upstreams whose certificate must be refused: it counts connections and
 * every decrypted byte that reaches it, and answers anything it gets with a 200 so that a leak
 * shows as a success on the client side too.
 */
export interface TlsSink {
  port: number;
  /** TCP connections accepted. */
  connections: number;
  /** Decrypted application bytes received over all connections. */
  bytes: number;
  /** The SNI of each completed handshake (false: none sent). */
  servernames: (string | false)[];
  /** Resolves once `n` handshakes have completed on the server side. */
  handshakes(n: number, ms?: number): Promise<void>;
  /** Resolves once every accepted connection has closed. */
  idle(ms?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startTlsSink(tlsOpts: { key: string; cert: string }): Promise<TlsSink> {
  const open = new Set<net.Socket>();
  let onIdle: (() => void) | undefined;
  let onHandshake: (() => void) | undefined;
  const server = tls.createServer({ key: tlsOpts.key, cert: tlsOpts.cert });
  server.on('connection', (socket: net.Socket) => {
    sink.connections++;
    open.add(socket);
    socket.once('close', () => {
      open.delete(socket);
      if (open.size === 0) onIdle?.();
    });
  });
  server.on('secureConnection', (socket: tls.TLSSocket) => {
    sink.servernames.push(socket.servername || false);
    onHandshake?.();
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      sink.bytes += chunk.length;
      socket.end('HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nleaked');
    });
  });
  server.on('tlsClientError', () => {});
  const sink: TlsSink = {
    port: 0,
    connections: 0,
    bytes: 0,
    servernames: [],
    handshakes: (n, ms = WAIT_MS) =>
      within(
        new Promise<void>((resolve) => {
          onHandshake = () => {
            if (sink.servernames.length >= n) resolve();
          };
          onHandshake();
        }),
        `${n} upstream handshakes`,
        ms,
      ),
    idle: (ms = WAIT_MS) =>
      open.size === 0
        ? Promise.resolve()
        : within(
            new Promise<void>((resolve) => {
              onIdle = resolve;
            }),
            'the upstream connections to close',
            ms,
          ),
    close: async () => {
      for (const s of open) s.destroy();
      await closeServer(server);
    },
  };
  sink.port = await listenLoopback(server);
  return sink;
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

export interface FetchOptions {
  method?: string;
  path?: string;
  headers?: http.OutgoingHttpHeaders;
  /** Written in one go; an array is written chunk by chunk (no content-length: chunked framing). */
  body?: string | Buffer | (string | Buffer)[];
  /** A keep-alive agent to share a connection; by default a fresh connection per request. */
  agent?: https.Agent;
  /** SNI; '' sends none. Defaults to upstream.test. */
  servername?: string;
  ms?: number;
}

export interface FetchResult {
  status: number;
  statusMessage: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  trailers: NodeJS.Dict<string>;
  /** True when the response came over a connection an earlier request had used. */
  reusedSocket: boolean;
  /** The client's own port: the capture records it as the client endpoint. */
  localPort: number;
  peerCertificate: tls.PeerCertificate;
}

/**
 * One HTTPS request to the engine's front port, trusting only our interception CA. The Host header
 * says upstream.test, as a real client's would.
 */
export function fetchVia(port: number, caPem: string, opts: FetchOptions = {}): Promise<FetchResult> {
  const done = new Promise<FetchResult>((resolve, reject) => {
    // https.Agent hands every option to tls.connect, ALPN included; @types/node omits it here.
    const options: https.RequestOptions & Pick<tls.ConnectionOptions, 'ALPNProtocols'> = {
      host: '127.0.0.1',
      port,
      method: opts.method ?? 'GET',
      path: opts.path ?? '/',
      servername: opts.servername ?? UPSTREAM_NAME,
      ca: caPem,
      ALPNProtocols: ['http/1.1'],
      agent: opts.agent ?? false,
      headers: { host: UPSTREAM_NAME, ...opts.headers },
    };
    const req = https.request(options);
    req.once('error', reject);
    req.once('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.once('error', reject);
      // Read now: once the response ends, a non-kept-alive socket may already be torn down.
      const socket = res.socket as tls.TLSSocket;
      const peerCertificate = socket.getPeerCertificate();
      const localPort = socket.localPort ?? 0;
      res.once('end', () => {
        resolve({
          status: res.statusCode ?? 0,
          statusMessage: res.statusMessage ?? '',
          headers: res.headers,
          body: Buffer.concat(chunks),
          trailers: res.trailers,
          reusedSocket: req.reusedSocket,
          localPort,
          peerCertificate,
        });
      });
    });
    const body = opts.body;
    if (Array.isArray(body)) {
      for (const chunk of body) req.write(chunk);
      req.end();
    } else req.end(body);
  });
  return within(done, `${opts.method ?? 'GET'} ${opts.path ?? '/'}`, opts.ms);
}

export interface RawTlsResult {
  /** Whether the TLS handshake completed. */
  secure: boolean;
  /** Everything the server sent after the handshake, as latin1. */
  received: string;
  error?: NodeJS.ErrnoException;
  peerCertificate?: tls.PeerCertificate;
}

/**
 * Opens a TLS connection to the front port, writes `payload` once it is secure, and collects what
 * comes back until the connection closes.
 */
export function rawTls(port: number, caPem: string, servername: string | undefined, payload: string | Buffer, ms = WAIT_MS): Promise<RawTlsResult> {
  const done = new Promise<RawTlsResult>((resolve) => {
    const result: RawTlsResult = { secure: false, received: '' };
    const socket = tls.connect({ host: '127.0.0.1', port, ca: caPem, ...(servername !== undefined ? { servername } : {}) });
    socket.once('secureConnect', () => {
      result.secure = true;
      result.peerCertificate = socket.getPeerCertificate();
      socket.write(payload);
    });
    socket.on('data', (chunk: Buffer) => (result.received += chunk.toString('latin1')));
    socket.once('error', (err: NodeJS.ErrnoException) => (result.error = err));
    socket.once('close', () => resolve(result));
  });
  return within(done, 'the front to close a raw TLS connection', ms);
}

/** Plain TCP to the front port: writes `payload`, collects the reply until the connection closes. */
export function rawTcp(port: number, payload: string | Buffer, ms = WAIT_MS): Promise<{ received: Buffer; error?: NodeJS.ErrnoException }> {
  const done = new Promise<{ received: Buffer; error?: NodeJS.ErrnoException }>((resolve) => {
    const chunks: Buffer[] = [];
    let error: NodeJS.ErrnoException | undefined;
    const socket = net.connect({ host: '127.0.0.1', port }, () => socket.write(payload));
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.once('error', (err: NodeJS.ErrnoException) => (error = err));
    socket.once('close', () => resolve({ received: Buffer.concat(chunks), ...(error ? { error } : {}) }));
  });
  return within(done, 'the front to close a plain TCP connection', ms);
}
