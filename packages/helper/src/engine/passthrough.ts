/**
 * Opaque relay for connections we do not decrypt (no SNI, a refused SNI, not TLS at all): the bytes
 * the engine already read are sent first, then both directions are piped untouched to the original
 * destination over the marked connector (so the relay itself is never intercepted), with half-close
 * passed through. The connection is recorded as one `passthrough` entry: destination, reason, bytes
 * each way (updated while open, at most once a second) and its duration.
 */
import type net from 'node:net';
import type { Endpoint, Exchange, PassthroughInfo, PassthroughReason } from '@tproxy/protocol';
import { LiveExchange } from '../capture/live-exchange.js';
import type { ExchangeStore } from '../capture/store.js';
import type { Logger } from '../log.js';
import type { ProcessLookup } from '../net/attribution.js';
import { classifyUpstreamError } from './errors.js';
import type { SocketConnector } from './upstream.js';

export interface PassthroughOptions {
  connect: SocketConnector;
  store: ExchangeStore;
  log: Logger;
  /** Both directions silent this long: the relay is closed. */
  idleTimeoutMs: number;
}

export interface PassthroughRequest {
  client: Endpoint;
  server: Endpoint;
  /** Bytes already read from the client (its ClientHello or first bytes), sent upstream first. */
  first: Buffer;
  reason: PassthroughReason;
  detail?: string;
  /** The server name when the client sent one (a refused SNI is kept as sent, for display). */
  sni?: string;
  /** True when the first bytes were TLS (the URL is then `tls://`). */
  tls: boolean;
  process?: ProcessLookup;
}

/** Byte counters are published at most this often while the relay is open. */
const UPDATE_INTERVAL_MS = 1000;

function hostPort(address: string, port: number): string {
  return `${address.includes(':') ? `[${address}]` : address}:${port}`;
}

/** A LiveExchange that reports itself as a passthrough entry. */
export class PassthroughExchange extends LiveExchange {
  readonly info: PassthroughInfo;

  constructor(req: PassthroughRequest) {
    super({
      client: req.client,
      server: req.server,
      tls: req.sni ? { sni: req.sni } : {},
      ...(req.process?.result ? { process: req.process.result } : {}),
      method: req.tls ? 'TLS' : 'TCP',
      url: `${req.tls ? 'tls' : 'tcp'}://${hostPort(req.server.address, req.server.port)}`,
      httpVersion: '',
      headers: [],
      bodyCaptureLimit: 0,
    });
    this.info = { reason: req.reason, ...(req.detail ? { detail: req.detail.slice(0, 200) } : {}), bytesUp: 0, bytesDown: 0 };
  }

  override snapshot(): Exchange {
    return { ...super.snapshot(), kind: 'passthrough', passthrough: { ...this.info } };
  }
}

export class PassthroughRelay {
  private readonly open = new Set<net.Socket>();

  constructor(private readonly opts: PassthroughOptions) {}

  /** Relays `client` (paused, its first bytes in `req.first`) to the original destination. */
  relay(client: net.Socket, req: PassthroughRequest): void {
    const { store, log } = this.opts;
    const ex = new PassthroughExchange(req);
    store.add(ex);
    this.attachLateProcess(ex, req.process);
    ex.info.bytesUp = req.first.length;
    const who = `${hostPort(req.client.address, req.client.port)} -> ${hostPort(req.server.address, req.server.port)}`;
    log.debug(`${who}: passthrough (${req.reason}${req.detail ? `: ${req.detail}` : ''})`);

    let lastUpdate = 0;
    const publish = () => {
      const now = Date.now();
      if (now - lastUpdate < UPDATE_INTERVAL_MS || ex.finished) return;
      lastUpdate = now;
      store.update(ex);
    };
    let finished = false;
    const finish = (error?: Parameters<LiveExchange['fail']>[0]) => {
      if (finished) return;
      finished = true;
      if (error) ex.fail(error);
      else ex.complete();
      const lookup = req.process;
      if (lookup && !lookup.settled) void lookup.done.then(() => store.finish(ex));
      else store.finish(ex);
    };

    this.track(client);
    // Half-close travels through: a client that shuts down its sending side still gets the answer.
    client.allowHalfOpen = true;
    client.on('error', () => undefined);
    const where = { address: req.server.address, port: req.server.port, serverName: undefined };
    this.opts.connect(req.server.address, req.server.port).then(
      (upstream) => {
        if (client.destroyed) {
          upstream.destroy();
          return finish({ kind: 'client-aborted', message: 'the client closed the connection before the destination answered' });
        }
        this.track(upstream);
        upstream.allowHalfOpen = true;
        ex.markUpstreamConnected();
        let idle: NodeJS.Timeout | undefined;
        const touch = () => {
          clearTimeout(idle);
          idle = setTimeout(() => {
            log.debug(`${who}: passthrough idle for ${this.opts.idleTimeoutMs} ms, closing`);
            client.destroy();
            upstream.destroy();
          }, this.opts.idleTimeoutMs);
          idle.unref();
        };
        touch();
        client.on('data', (d: Buffer) => {
          ex.info.bytesUp += d.length;
          touch();
          publish();
        });
        upstream.on('data', (d: Buffer) => {
          ex.info.bytesDown += d.length;
          touch();
          publish();
        });
        let closed = 0;
        const onClose = () => {
          if (++closed < 2) return;
          clearTimeout(idle);
          finish();
        };
        // One side gone abruptly: the other cannot continue either.
        client.once('close', () => {
          upstream.end();
          setTimeout(() => upstream.destroy(), 1000).unref();
          onClose();
        });
        upstream.once('close', () => {
          client.end();
          setTimeout(() => client.destroy(), 1000).unref();
          onClose();
        });
        upstream.on('error', (err: NodeJS.ErrnoException) => log.debug(`${who}: passthrough upstream error: ${err.code ?? ''} ${err.message}`));
        upstream.write(req.first);
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
      },
      (err: unknown) => {
        log.debug(`${who}: passthrough cannot connect: ${(err as Error).message}`);
        finish(classifyUpstreamError(err, where, false));
        client.destroy();
      },
    );
  }

  /**
   * Attribution that settled after the entry was recorded: set it, and announce it while open
   * (the same rule as http-proxy.ts).
   */
  private attachLateProcess(ex: LiveExchange, lookup: ProcessLookup | undefined): void {
    if (!lookup || lookup.settled) return;
    void lookup.done.then((process) => {
      if (!process) return;
      ex.setProcess(process);
      if (!ex.finished) this.opts.store.update(ex);
    });
  }

  private track(socket: net.Socket): void {
    this.open.add(socket);
    socket.once('close', () => this.open.delete(socket));
  }

  /** Connections being relayed (both ends counted). */
  get size(): number {
    return this.open.size;
  }

  /** Destroys every relayed connection. */
  closeAll(): void {
    for (const s of this.open) s.destroy();
    this.open.clear();
  }
}
