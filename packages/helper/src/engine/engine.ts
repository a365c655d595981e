/**
 * The decrypt engine's connection owner: takes each socket accepted by a transparent listener,
 * reads the original destination from its local address, terminates TLS with a leaf for the
 * client's SNI (or for the destination IP when there is none) and hands the decrypted stream to the
 * HTTP relay. It owns every client socket it accepted and can close them all. It does not decide
 * what to intercept (the firewall did) and does not talk to upstreams (upstream.ts does).
 */
import type net from 'node:net';
import tls from 'node:tls';
import type { Endpoint } from '@tproxy/protocol';
import type { Logger } from '../log.js';
import { ProcessAttributor, trackLookup, type ProcessLookup } from '../net/attribution.js';
import type { HttpProxy } from './http-proxy.js';

/** Supplies the TLS context (leaf certificate + key) for a server name or IP literal. Throws for a name it refuses to mint. */
export interface CertSource {
  contextFor(name: string): tls.SecureContext;
}

export interface EngineOptions {
  certs: CertSource;
  proxy: HttpProxy;
  log: Logger;
  /** A client that has not finished its TLS handshake by then is dropped. */
  handshakeTimeoutMs?: number;
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

export class Engine {
  private readonly sockets = new Set<net.Socket>();
  private accepted = 0;
  private readonly attribution: Pick<ProcessAttributor, 'lookup'> | null;

  constructor(private readonly opts: EngineOptions) {
    this.attribution = opts.attribution === undefined ? new ProcessAttributor() : opts.attribution;
  }

  /** Connections accepted since the engine was created. */
  get connectionCount(): number {
    return this.accepted;
  }

  /** Connections currently open. */
  get openConnections(): number {
    return this.sockets.size;
  }

  handleConnection(socket: net.Socket): void {
    this.accepted++;
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    socket.on('error', () => {
      // Reported through the TLS socket below; this keeps an early RST from being unhandled.
    });
    const client = endpoint(socket.remoteAddress, socket.remotePort);
    // TPROXY keeps the original destination as the accepted socket's local address.
    const server = endpoint(socket.localAddress, socket.localPort);
    // Started now, before the client can close: its socket's row and fd vanish with it.
    const owner = this.attribution ? trackLookup(this.attribution.lookup(client, server)) : undefined;
    const { certs, log } = this.opts;
    const who = `${client.address}:${client.port} -> ${server.address}:${server.port}`;

    let fallback: tls.SecureContext;
    try {
      fallback = certs.contextFor(server.address);
    } catch (err) {
      log.warn(`${who}: no certificate for the destination address: ${(err as Error).message}`);
      socket.destroy();
      return;
    }

    const tlsSocket = new tls.TLSSocket(socket, {
      isServer: true,
      // Used only when the client sends no SNI: the leaf then carries the destination IP as SAN.
      secureContext: fallback,
      SNICallback: (name, cb) => {
        try {
          cb(null, certs.contextFor(name));
        } catch (err) {
          log.info(`${who}: refusing SNI ${JSON.stringify(name)}: ${(err as Error).message}`);
          cb(err as Error, undefined);
        }
      },
      ALPNProtocols: ['http/1.1'],
    });
    const timer = setTimeout(() => {
      log.debug(`${who}: TLS handshake timed out`);
      tlsSocket.destroy();
    }, this.opts.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS);
    tlsSocket.once('secure', () => {
      clearTimeout(timer);
      try {
        this.serveDecrypted(tlsSocket, client, server, owner);
      } catch (err) {
        log.error(`${who}: cannot serve the decrypted connection: ${(err as Error).message}`);
        tlsSocket.destroy();
      }
    });
    tlsSocket.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      // Most often the client does not trust our CA (alert 46 certificate_unknown / 48 unknown_ca).
      log.debug(`${who}: client TLS failed: ${err.code ?? ''} ${err.message.split('\n')[0]}`);
      tlsSocket.destroy();
    });
    tlsSocket.once('close', () => clearTimeout(timer));
  }

  private serveDecrypted(tlsSocket: tls.TLSSocket, client: Endpoint, server: Endpoint, owner: ProcessLookup | undefined): void {
    const sni = typeof tlsSocket.servername === 'string' && tlsSocket.servername ? tlsSocket.servername : undefined;
    const alpn = typeof tlsSocket.alpnProtocol === 'string' ? tlsSocket.alpnProtocol : undefined;
    const version = tlsSocket.getProtocol();
    this.opts.proxy.serve(tlsSocket, {
      client,
      server,
      tls: { ...(sni ? { sni } : {}), ...(version ? { clientVersion: version } : {}), ...(alpn ? { alpn } : {}) },
      ...(owner ? { process: owner } : {}),
    });
  }

  /** Destroys every open client connection. */
  closeAll(): void {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }
}
