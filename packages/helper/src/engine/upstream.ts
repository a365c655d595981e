/**
 * Connections to the original destinations. Every upstream socket comes from a connector that, in
 * production, sets the bypass SO_MARK before the SYN, so our own OUTPUT rule returns early on it
 * and it is never intercepted again (the anti-loop). TLS to the upstream is verified against the
 * distribution's CA bundle plus any --upstream-ca file, never against our own CA, and the socket is
 * handed to HTTP only after verification passed: no request byte can reach a server whose
 * certificate we rejected. HTTP/1.1 connections are pooled per (address, port, server name, ALPN)
 * with keep-alive. The engine first connects with the client's own ALPN offer to learn what the
 * upstream speaks (`learnAlpn`); when that was http/1.1 (or nothing), the verified "warm" socket is
 * handed to the pool and serves the first request instead of being thrown away. What was learnt is
 * remembered briefly, so a client opening many short connections pays one upstream handshake per
 * pooled connection, not one per client connection.
 */
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';

/**
 * Opens the TCP connection to an original destination. In production this is the native marked
 * connect (net/upstream-socket.ts); tests substitute a plain loopback connect.
 */
export type SocketConnector = (address: string, port: number) => Promise<net.Socket>;

export interface UpstreamTarget {
  address: string;
  port: number;
  /** Name to send as SNI and to verify the certificate against; absent for IP-only clients. */
  serverName: string | undefined;
}

export interface UpstreamOptions {
  connect: SocketConnector;
  /** Trust anchors for upstream verification (system bundle minus our CA, plus --upstream-ca). */
  trust: tls.SecureContext;
  handshakeTimeoutMs?: number;
  /** Idle pooled connections are closed after this long. */
  idleTimeoutMs?: number;
}

const HANDSHAKE_TIMEOUT_MS = 10_000;
/** Below typical server keep-alive timeouts (nginx 75 s) so we rarely reuse a socket the server is closing. */
const IDLE_TIMEOUT_MS = 30_000;
/**
 * Idle connections kept per destination; more are closed when released. As many as the clients
 * that typically talk to one origin at once: with 16, 256 concurrent keep-alive clients kept
 * redialling verified upstream TLS (bench: h1 596 → 5999 req/s and 446 → 210 MiB at 256 with 256).
 * The idle timeout still closes them when the clients go away.
 */
const MAX_FREE_PER_TARGET = 256;

/** A verification failure; carries the Node/OpenSSL code (CERT_HAS_EXPIRED, ...). */
export class UpstreamTlsError extends Error {
  override readonly name = 'UpstreamTlsError';
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

/**
 * Stricter than Node's default identity check: a certificate without any subjectAltName is
 * rejected (Node falls back to the CN; browsers have not since Chrome 58, RFC 6125 §6.4.4).
 */
export function checkIdentity(identity: string, cert: tls.PeerCertificate): Error | undefined {
  if (!cert.subjectaltname) {
    const err = new Error(`certificate for ${identity} has no subjectAltName (CN-only certificates are rejected, RFC 6125 §6.4.4)`);
    (err as NodeJS.ErrnoException).code = 'ERR_TLS_CERT_ALTNAME_INVALID';
    return err;
  }
  return tls.checkServerIdentity(identity, cert);
}

/** The ALPN offer for pooled HTTP/1.1 connections. */
export const H1_ALPN: readonly string[] = ['http/1.1'];

/**
 * Opens, marks, TLS-handshakes and verifies one upstream connection, offering `alpn` (none when
 * empty: a client that offered no ALPN gets an upstream leg without it too). `onHelloSent` runs
 * once our ClientHello is on its way: work done there overlaps the origin's half of the handshake.
 */
export async function connectUpstream(target: UpstreamTarget, opts: UpstreamOptions, alpn: readonly string[] = H1_ALPN, onHelloSent?: () => void): Promise<tls.TLSSocket> {
  const raw = await opts.connect(target.address, target.port);
  const identity = target.serverName ?? target.address;
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      socket: raw,
      // RFC 6066 §3: an IP literal is never sent as SNI.
      ...(target.serverName && net.isIP(target.serverName) === 0 ? { servername: target.serverName } : {}),
      secureContext: opts.trust,
      ...(alpn.length > 0 ? { ALPNProtocols: [...alpn] } : {}),
      rejectUnauthorized: true,
      checkServerIdentity: (_host, cert) => checkIdentity(identity, cert),
    });
    const timer = setTimeout(() => {
      socket.destroy(new UpstreamTlsError(`TLS handshake with ${target.address}:${target.port} timed out`, 'ERR_TLS_HANDSHAKE_TIMEOUT'));
    }, opts.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS);
    const fail = (err: Error) => {
      clearTimeout(timer);
      raw.destroy();
      reject(err);
    };
    socket.once('error', fail);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      socket.off('error', fail);
      resolve(socket);
    });
    onHelloSent?.();
  });
}

/** A warm socket not claimed by a request within this is closed (the client went quiet). */
const WARM_TTL_MS = 10_000;

/** An http.Agent whose connections are marked and verified before HTTP sees them. */
class UpstreamAgent extends http.Agent {
  /** Warm sockets → what un-registers each (its expiry timer and close listener). */
  private readonly warm = new Map<tls.TLSSocket, () => void>();

  constructor(
    private readonly target: UpstreamTarget,
    private readonly opts: UpstreamOptions,
  ) {
    super({ keepAlive: true, maxFreeSockets: MAX_FREE_PER_TARGET, timeout: opts.idleTimeoutMs ?? IDLE_TIMEOUT_MS, scheduling: 'lifo' });
  }

  /** Keeps a verified socket (made while learning ALPN) for the next connection this agent needs. */
  adopt(socket: tls.TLSSocket): void {
    const onError = () => socket.destroy();
    const drop = () => {
      clearTimeout(timer);
      socket.off('close', drop);
      socket.off('error', onError);
      this.warm.delete(socket);
    };
    const timer = setTimeout(() => {
      drop();
      socket.destroy();
    }, WARM_TTL_MS);
    timer.unref();
    socket.once('close', drop);
    // An idle warm socket may be reset by the server; that must not be an uncaught error.
    socket.on('error', onError);
    this.warm.set(socket, drop);
  }

  override destroy(): void {
    for (const socket of [...this.warm.keys()]) socket.destroy();
    this.warm.clear();
    super.destroy();
  }

  override createConnection(_options: http.ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): undefined {
    for (const [warm, drop] of this.warm) {
      drop();
      if (warm.destroyed || !warm.writable) continue;
      // The http client adds its own error handling once the socket is assigned to a request.
      process.nextTick(() => callback?.(null, warm));
      return undefined;
    }
    connectUpstream(this.target, this.opts).then(
      (socket) => callback?.(null, socket),
      (err: Error) => callback?.(err, undefined as unknown as Duplex),
    );
    return undefined;
  }
}

/** How long a learnt ALPN choice is trusted; a server that changes its protocols is re-learnt after this. */
const ALPN_MEMORY_MS = 60_000;
/** Learnt choices kept; the oldest goes first. */
const MAX_LEARNT = 4096;

function alpnKey(target: UpstreamTarget, offered: readonly string[]): string {
  return `${target.address}|${target.port}|${target.serverName ?? ''}|${offered.join(',')}`;
}

/** Agents kept before idle ones (no active or pooled socket) are dropped. */
const MAX_IDLE_AGENTS = 256;

function isIdle(agent: http.Agent): boolean {
  return Object.keys(agent.sockets).length === 0 && Object.keys(agent.freeSockets).length === 0 && Object.keys(agent.requests).length === 0;
}

/** One agent per destination; a client that visits many destinations cannot grow the map without end. */
export class UpstreamPool {
  private readonly agents = new Map<string, UpstreamAgent>();
  /** (address, port, server name, offered ALPN) → the upstream's choice, briefly. */
  private readonly learnt = new Map<string, { protocol: string | null; until: number }>();

  constructor(private readonly opts: UpstreamOptions) {}

  /** The keep-alive agent for HTTP/1.1 to `target` (ALPN offer http/1.1). */
  agentFor(target: UpstreamTarget): http.Agent {
    return this.agent(target);
  }

  /** Hands a verified socket that negotiated http/1.1 (or no ALPN) to the pool for the next request. */
  adopt(target: UpstreamTarget, socket: tls.TLSSocket): void {
    this.agent(target).adopt(socket);
  }

  /** What `target` answered to an offer of `offered`, if learnt within the last ALPN_MEMORY_MS. */
  knownAlpn(target: UpstreamTarget, offered: readonly string[]): string | null | undefined {
    const key = alpnKey(target, offered);
    const hit = this.learnt.get(key);
    if (!hit) return undefined;
    if (hit.until < Date.now()) {
      this.learnt.delete(key);
      return undefined;
    }
    return hit.protocol;
  }

  /**
   * Connects to `target` offering the client's ALPN list and returns the verified socket and the
   * protocol the upstream chose (null: none). Remembered for knownAlpn(); failures are not.
   */
  async learnAlpn(target: UpstreamTarget, offered: readonly string[], onHelloSent?: () => void): Promise<{ socket: tls.TLSSocket; protocol: string | null }> {
    const socket = await connectUpstream(target, this.opts, offered, onHelloSent);
    // Until the pool, the h1 client or the h2 session takes it (after the client's handshake), a
    // reset from the upstream must not become an uncaught 'error' that takes the helper down.
    socket.on('error', () => socket.destroy());
    const protocol = typeof socket.alpnProtocol === 'string' ? socket.alpnProtocol : null;
    if (this.learnt.size >= MAX_LEARNT) this.learnt.delete(this.learnt.keys().next().value as string);
    this.learnt.set(alpnKey(target, offered), { protocol, until: Date.now() + ALPN_MEMORY_MS });
    return { socket, protocol };
  }

  private agent(target: UpstreamTarget, alpn: readonly string[] = H1_ALPN): UpstreamAgent {
    const key = `${target.address}|${target.port}|${target.serverName ?? ''}|${alpn.join(',')}`;
    let agent = this.agents.get(key);
    if (!agent) {
      if (this.agents.size >= MAX_IDLE_AGENTS) this.pruneIdle();
      agent = new UpstreamAgent(target, this.opts);
      this.agents.set(key, agent);
    }
    return agent;
  }

  get size(): number {
    return this.agents.size;
  }

  private pruneIdle(): void {
    for (const [key, agent] of this.agents) {
      if (isIdle(agent)) this.agents.delete(key);
    }
  }

  /** Closes every pooled connection (in-flight ones are destroyed too). */
  destroy(): void {
    for (const agent of this.agents.values()) agent.destroy();
    this.agents.clear();
    this.learnt.clear();
  }
}
