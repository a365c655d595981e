/**
 * The decrypt engine's connection owner: takes each socket accepted by a transparent listener,
 * reads the original destination from its local address, and decides from the client's first
 * flight what to do with it:
 *
 *   accept ─▶ peek ClientHello (client-hello.ts; bounded bytes and time)
 *     ├─ not TLS / malformed / no SNI / SNI refused (sni.ts) ─▶ passthrough.ts: opaque relay, recorded
 *     └─ SNI ok ─▶ connect upstream with that SNI and the client's ALPN offer (upstream.ts learnAlpn)
 *                  ─▶ finish the client handshake with a leaf for the canonical name and the protocol
 *                     the upstream chose ─▶ h2 → H2Proxy (with the warm upstream socket)
 *                                           http/1.1 or none → HttpProxy (warm socket → the pool)
 *
 * If the upstream cannot be reached or its certificate is rejected, the client handshake still
 * completes (http/1.1) and HttpProxy answers 502 with the reason, which the capture records: the
 * client cannot mistake it for success. The engine owns every client socket it accepted and can
 * close them all; it does not choose what to intercept (the firewall did).
 */
import type net from 'node:net';
import tls from 'node:tls';
import type { Endpoint, PassthroughReason } from '@tproxy/protocol';
import type { Logger } from '../log.js';
import { ProcessAttributor, trackLookup, type ProcessLookup } from '../net/attribution.js';
import { parseClientHello, type ParsedClientHello } from './client-hello.js';
import type { ConnectionInfo, HttpProxy } from './http-proxy.js';
import type { PassthroughRelay } from './passthrough.js';
import { canonicalSni } from './sni.js';
import type { UpstreamPool, UpstreamTarget } from './upstream.js';

/** Supplies the TLS context (leaf certificate + key) for a server name or IP literal. Throws for a name it refuses to mint. */
export interface CertSource {
  contextFor(name: string): tls.SecureContext;
}

/** What serves a client connection that negotiated h2 (engine/h2-proxy.ts H2Proxy). */
export interface H2Server {
  serve(socket: tls.TLSSocket, info: ConnectionInfo, warm?: tls.TLSSocket): void;
}

export interface EngineOptions {
  certs: CertSource;
  proxy: HttpProxy;
  /** Learns each upstream's ALPN choice and keeps the warm h1 sockets. */
  pool: UpstreamPool;
  /** Relays what we do not decrypt. */
  passthrough: PassthroughRelay;
  /** Serves h2 clients; without it, h2 is never offered to the upstream nor the client. */
  h2?: H2Server | undefined;
  log: Logger;
  /** A client that has not sent its ClientHello and finished its TLS handshake by then is dropped. */
  handshakeTimeoutMs?: number;
  /** Open intercepted connections one process may hold; more are closed as soon as the owner is known. */
  maxConnectionsPerProcess?: number;
  /**
   * Finds the local process behind each accepted connection; a /proc-backed one by default, `null`
   * to turn attribution off. The helper shares the intercepted clients' network namespace, so the
   * socket tables it reads hold their sockets.
   */
  attribution?: Pick<ProcessAttributor, 'lookup'> | null;
}

const HANDSHAKE_TIMEOUT_MS = 10_000;

/** `::ffff:1.2.3.4` (a v4 peer on a dual-stack socket) → `1.2.3.4`. */
export function normalizeAddress(address: string | undefined): string {
  if (!address) return '';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

export function endpoint(address: string | undefined, port: number | undefined): Endpoint {
  return { address: normalizeAddress(address), port: port ?? 0 };
}

/** Counts for capture status and tests. */
export interface EngineStats {
  accepted: number;
  passthrough: number;
  /** Closed because their process had maxConnectionsPerProcess open already. */
  refusedOverLimit: number;
}

interface Accepted {
  socket: net.Socket;
  client: Endpoint;
  server: Endpoint;
  owner: ProcessLookup | undefined;
  who: string;
  /** Fires once: the deadline for ClientHello + upstream learning + client handshake. */
  deadline: NodeJS.Timeout;
}

export class Engine {
  private readonly sockets = new Set<net.Socket>();
  private readonly stats: EngineStats = { accepted: 0, passthrough: 0, refusedOverLimit: 0 };
  private readonly perProcess = new Map<number, number>();
  private readonly attribution: Pick<ProcessAttributor, 'lookup'> | null;
  private readonly handshakeTimeoutMs: number;

  constructor(private readonly opts: EngineOptions) {
    this.attribution = opts.attribution === undefined ? new ProcessAttributor() : opts.attribution;
    this.handshakeTimeoutMs = opts.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS;
  }

  /** Connections accepted since the engine was created. */
  get connectionCount(): number {
    return this.stats.accepted;
  }

  /** Connections currently open. */
  get openConnections(): number {
    return this.sockets.size;
  }

  counters(): EngineStats {
    return { ...this.stats };
  }

  handleConnection(socket: net.Socket): void {
    this.stats.accepted++;
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    socket.on('error', () => {
      // Reported through the TLS socket or the relay; this keeps an early RST from being unhandled.
    });
    const client = endpoint(socket.remoteAddress, socket.remotePort);
    // TPROXY keeps the original destination as the accepted socket's local address.
    const server = endpoint(socket.localAddress, socket.localPort);
    // Started now, before the client can close: its socket's row and fd vanish with it.
    const owner = this.attribution ? trackLookup(this.attribution.lookup(client, server)) : undefined;
    const who = `${client.address}:${client.port} -> ${server.address}:${server.port}`;
    if (owner) this.enforceProcessLimit(socket, owner, who);

    const chunks: Buffer[] = [];
    let total = 0;
    const conn: Accepted = {
      socket,
      client,
      server,
      owner,
      who,
      deadline: setTimeout(() => {
        stop();
        // Silence from the start: maybe a protocol where the server speaks first; relay it.
        if (total === 0 && !socket.destroyed) return this.passthrough(conn, Buffer.alloc(0), false, 'client-hello-timeout', 'no bytes from the client');
        this.opts.log.debug(`${who}: no complete ClientHello in ${this.handshakeTimeoutMs} ms`);
        socket.destroy();
      }, this.handshakeTimeoutMs),
    };
    const stop = () => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.pause();
    };
    const onEnd = () => {
      clearTimeout(conn.deadline);
      socket.destroy();
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      total += chunk.length;
      const first = chunks.length === 1 ? chunk : Buffer.concat(chunks);
      const hello = parseClientHello(first);
      if (hello.kind === 'need-more') return;
      stop();
      if (hello.kind === 'not-tls') return this.passthrough(conn, first, false, 'not-tls', hello.reason);
      if (hello.kind === 'invalid') return this.passthrough(conn, first, true, 'invalid-client-hello', hello.reason);
      if (hello.sni === undefined) return this.passthrough(conn, first, true, 'no-sni');
      const sni = canonicalSni(hello.sni);
      if (!sni.ok) return this.passthrough(conn, first, true, 'sni-rejected', sni.reason, hello.sni);
      this.intercept(conn, first, hello, sni.name).catch((err: unknown) => {
        this.opts.log.error(`${who}: cannot intercept: ${(err as Error).message}`);
        clearTimeout(conn.deadline);
        socket.destroy();
      });
    };
    socket.on('data', onData);
    socket.once('end', onEnd);
  }

  private passthrough(conn: Accepted, first: Buffer, isTls: boolean, reason: PassthroughReason, detail?: string, sni?: string): void {
    clearTimeout(conn.deadline);
    this.stats.passthrough++;
    this.opts.passthrough.relay(conn.socket, {
      client: conn.client,
      server: conn.server,
      first,
      reason,
      tls: isTls,
      ...(detail ? { detail } : {}),
      ...(sni ? { sni } : {}),
      ...(conn.owner ? { process: conn.owner } : {}),
    });
  }

  /** The ALPN list we offer the upstream: the client's, restricted to what we can serve, in its order. */
  private offerFor(clientAlpn: readonly string[]): string[] {
    return clientAlpn.filter((p) => p === 'http/1.1' || (p === 'h2' && this.opts.h2 !== undefined));
  }

  private async intercept(conn: Accepted, first: Buffer, hello: ParsedClientHello, name: string): Promise<void> {
    const { pool, log } = this.opts;
    const { socket, who } = conn;
    const target: UpstreamTarget = { address: conn.server.address, port: conn.server.port, serverName: name };
    const offer = this.offerFor(hello.alpn);
    // The client offered ALPN but nothing we serve (e.g. only h2 without an H2 server): http/1.1 is
    // all we can speak; the client decides whether that is acceptable.
    const upstreamOffer = hello.alpn.length > 0 && offer.length === 0 ? ['http/1.1'] : offer;

    // The leaf for a new name is minted while the origin works on our ClientHello (its signature,
    // the network), not after: on a never-seen host the two used to add up.
    let minted: { context: tls.SecureContext } | { error: Error } | undefined;
    const mint = () => {
      if (minted) return;
      try {
        minted = { context: this.opts.certs.contextFor(name) };
      } catch (err) {
        minted = { error: err as Error };
      }
    };
    let protocol: string | null | undefined;
    let warm: tls.TLSSocket | undefined;
    const known = pool.knownAlpn(target, upstreamOffer);
    if (known !== undefined) {
      protocol = known;
    } else {
      const learnt = await this.learn(target, upstreamOffer, who, mint);
      protocol = learnt.protocol;
      warm = learnt.socket;
    }
    if (socket.destroyed) {
      warm?.destroy();
      return;
    }

    // What the client gets: the upstream's choice when it is one the client offered; on failure
    // (protocol undefined) http/1.1 so HttpProxy can answer 502, else h2 when that is all it offered.
    let clientProtocol: string | null;
    if (protocol === undefined) {
      clientProtocol = hello.alpn.length === 0 ? null : hello.alpn.includes('http/1.1') || !offer.includes('h2') ? 'http/1.1' : 'h2';
    } else if (protocol === null) {
      clientProtocol = null;
    } else {
      clientProtocol = hello.alpn.includes(protocol) ? protocol : 'http/1.1';
    }

    mint(); // when the ALPN was known, or the upstream failed before our ClientHello left
    if (!minted || 'error' in minted) {
      // sni.ts accepted it; the CA refusing it too would be a bug, so say so and drop.
      log.warn(`${who}: no certificate for ${JSON.stringify(name)}: ${minted && 'error' in minted ? minted.error.message : 'none minted'}`);
      warm?.destroy();
      clearTimeout(conn.deadline);
      socket.destroy();
      return;
    }
    const { context } = minted;
    // The ClientHello goes back in front of the stream; TLSSocket reads what the socket buffered.
    socket.unshift(first);
    const tlsSocket = new tls.TLSSocket(socket, {
      isServer: true,
      secureContext: context,
      ...(clientProtocol ? { ALPNProtocols: [clientProtocol] } : {}),
    });
    const onDeadline = () => {
      log.debug(`${who}: TLS handshake timed out`);
      warm?.destroy();
      tlsSocket.destroy();
    };
    // The peek deadline keeps running; on expiry now it is the TLS socket that goes.
    clearTimeout(conn.deadline);
    const remaining = setTimeout(onDeadline, this.handshakeTimeoutMs);
    tlsSocket.once('secure', () => {
      clearTimeout(remaining);
      try {
        this.serveDecrypted(tlsSocket, conn, hello, target, warm, protocol);
      } catch (err) {
        log.error(`${who}: cannot serve the decrypted connection: ${(err as Error).message}`);
        warm?.destroy();
        tlsSocket.destroy();
      }
    });
    tlsSocket.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(remaining);
      warm?.destroy();
      // Most often the client does not trust our CA (alert 46 certificate_unknown / 48 unknown_ca).
      log.debug(`${who}: client TLS failed: ${err.code ?? ''} ${err.message.split('\n')[0]}`);
      tlsSocket.destroy();
    });
    tlsSocket.once('close', () => clearTimeout(remaining));
  }

  /**
   * Connects upstream to learn its ALPN choice, within half the handshake budget so that a slow or
   * silent upstream still leaves time to finish the client handshake and answer 502. `protocol`
   * undefined means the attempt failed or ran out of time (HttpProxy will retry and report why).
   */
  private async learn(target: UpstreamTarget, offer: string[], who: string, onHelloSent: () => void): Promise<{ protocol: string | null | undefined; socket?: tls.TLSSocket }> {
    const attempt = this.opts.pool.learnAlpn(target, offer, onHelloSent);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), this.handshakeTimeoutMs / 2);
    });
    try {
      const r = await Promise.race([attempt, late]);
      if (r === 'late') {
        // Still useful to the pool if it succeeds for h1; otherwise closed.
        attempt.then(
          (done) => (done.protocol === 'h2' ? done.socket.destroy() : this.opts.pool.adopt(target, done.socket)),
          () => undefined,
        );
        this.opts.log.debug(`${who}: upstream did not finish its handshake in time; answering the client without it`);
        return { protocol: undefined };
      }
      return r;
    } catch (err) {
      this.opts.log.debug(`${who}: upstream failed while learning ALPN: ${(err as Error).message.split('\n')[0]}`);
      return { protocol: undefined };
    } finally {
      clearTimeout(timer);
    }
  }

  private serveDecrypted(tlsSocket: tls.TLSSocket, conn: Accepted, hello: ParsedClientHello, target: UpstreamTarget, warm: tls.TLSSocket | undefined, upstreamProtocol: string | null | undefined): void {
    const alpn = typeof tlsSocket.alpnProtocol === 'string' ? tlsSocket.alpnProtocol : undefined;
    const version = tlsSocket.getProtocol();
    const info: ConnectionInfo = {
      client: conn.client,
      server: conn.server,
      tls: {
        sni: target.serverName!,
        ...(version ? { clientVersion: version } : {}),
        ...(alpn ? { alpn } : {}),
        ...(hello.alpn.length > 0 ? { clientAlpn: [...hello.alpn] } : {}),
      },
      ...(conn.owner ? { process: conn.owner } : {}),
    };
    if (alpn === 'h2' && this.opts.h2) {
      this.opts.h2.serve(tlsSocket, info, upstreamProtocol === 'h2' ? warm : (warm?.destroy(), undefined));
      return;
    }
    if (warm) {
      if (upstreamProtocol === 'h2') warm.destroy();
      else this.opts.pool.adopt(target, warm);
    }
    this.opts.proxy.serve(tlsSocket, info);
  }

  /**
   * Once attribution names the owner, counts the connection against its pid and closes it when the
   * process already holds maxConnectionsPerProcess. The lookup starts at accept and usually ends
   * during the ClientHello peek, so an excess connection is refused before any upstream work.
   */
  private enforceProcessLimit(socket: net.Socket, owner: ProcessLookup, who: string): void {
    const max = this.opts.maxConnectionsPerProcess;
    if (!max) return;
    void owner.done.then((p) => {
      const pid = p?.pid;
      if (pid === undefined || socket.destroyed) return;
      const open = this.perProcess.get(pid) ?? 0;
      if (open >= max) {
        this.stats.refusedOverLimit++;
        // Logged once per power of two so a runaway client cannot flood the log.
        const n = this.stats.refusedOverLimit;
        if ((n & (n - 1)) === 0) this.opts.log.warn(`${who}: refused: pid ${pid} (${p?.command ?? '?'}) already has ${open} connections (limits.maxConnectionsPerProcess ${max}); ${n} refused so far`);
        socket.destroy();
        return;
      }
      this.perProcess.set(pid, open + 1);
      socket.once('close', () => {
        const left = (this.perProcess.get(pid) ?? 1) - 1;
        if (left <= 0) this.perProcess.delete(pid);
        else this.perProcess.set(pid, left);
      });
    });
  }

  /** Destroys every open client connection and passthrough relay. */
  closeAll(): void {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    this.opts.passthrough.closeAll();
  }
}
