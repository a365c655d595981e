/**
 * Connections to the original destinations. Every upstream socket comes from a connector that, in
 * production, sets the bypass SO_MARK before the SYN, so our own OUTPUT rule returns early on it
 * and it is never intercepted again (the anti-loop). TLS to the upstream is verified against the
 * distribution's CA bundle plus any --upstream-ca file, never against our own CA, and the socket is
 * handed to HTTP only after verification passed: no request byte can reach a server whose
 * certificate we rejected. Connections are pooled per (address, port, server name) with keep-alive.
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
/** Idle connections kept per destination; more are closed when released. */
const MAX_FREE_PER_TARGET = 16;

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

/** Opens, marks, TLS-handshakes and verifies one upstream connection. */
export async function connectUpstream(target: UpstreamTarget, opts: UpstreamOptions): Promise<tls.TLSSocket> {
  const raw = await opts.connect(target.address, target.port);
  const identity = target.serverName ?? target.address;
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      socket: raw,
      // RFC 6066 §3: an IP literal is never sent as SNI.
      ...(target.serverName && net.isIP(target.serverName) === 0 ? { servername: target.serverName } : {}),
      secureContext: opts.trust,
      ALPNProtocols: ['http/1.1'],
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
  });
}

/** An http.Agent whose connections are marked and verified before HTTP sees them. */
class UpstreamAgent extends http.Agent {
  constructor(
    private readonly target: UpstreamTarget,
    private readonly opts: UpstreamOptions,
  ) {
    super({ keepAlive: true, maxFreeSockets: MAX_FREE_PER_TARGET, timeout: opts.idleTimeoutMs ?? IDLE_TIMEOUT_MS, scheduling: 'lifo' });
  }

  override createConnection(_options: http.ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): undefined {
    connectUpstream(this.target, this.opts).then(
      (socket) => callback?.(null, socket),
      (err: Error) => callback?.(err, undefined as unknown as Duplex),
    );
    return undefined;
  }
}

/** Agents kept before idle ones (no active or pooled socket) are dropped. */
const MAX_IDLE_AGENTS = 256;

function isIdle(agent: http.Agent): boolean {
  return Object.keys(agent.sockets).length === 0 && Object.keys(agent.freeSockets).length === 0 && Object.keys(agent.requests).length === 0;
}

/** One agent per destination; a client that visits many destinations cannot grow the map without end. */
export class UpstreamPool {
  private readonly agents = new Map<string, UpstreamAgent>();

  constructor(private readonly opts: UpstreamOptions) {}

  agentFor(target: UpstreamTarget): http.Agent {
    const key = `${target.address}|${target.port}|${target.serverName ?? ''}`;
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
  }
}
