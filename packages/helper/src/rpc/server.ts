/**
 * The per-connection loop of the RPC socket: identify the peer by SO_PEERCRED, refuse it before
 * reading anything if it is not allowed, then frame newline-delimited JSON into the dispatcher and
 * write responses and notifications back. Memory per connection is bounded: lines by the framer
 * (an oversize line is answered and its connection closed, see the 'data' handler),
 * requests in flight by a cap (the socket is paused above it), and unread output by a queue limit
 * past which a subscriber that stopped reading is disconnected rather than buffered without end.
 */
import type net from 'node:net';
import { ErrorCode, LineDecoder, MAX_MESSAGE_BYTES, RpcError, encode, matchesFilter, notifications, type ExchangeFilter } from '@tproxy/protocol';
import type { ExchangeEvent } from '../capture/store.js';
import type { Logger } from '../log.js';
import type { PeerIdentity, RequestContext, RpcConnectionHandle, Services } from './context.js';
import type { Dispatcher } from './dispatcher.js';
import { decidePeer } from './peer.js';

export interface RpcServerOptions {
  dispatcher: Dispatcher;
  services: Services;
  log: Logger;
  allowedUids: readonly number[];
  /** SO_PEERCRED of a connected Unix socket; null when the native addon is unavailable. */
  peerCredentials: ((socket: net.Socket) => PeerIdentity) | null;
  maxLineBytes?: number;
  maxClients?: number;
  /** Unread bytes queued to one client before it is considered stuck. */
  maxQueuedBytes?: number;
  /** How long a streamed notification (an export chunk) may wait for the reader before it is dropped. */
  maxStallMs?: number;
  /** Called after a client is admitted or disconnects, with the new count (the idle-exit timer). */
  onClientsChange?: (count: number) => void;
}

const MAX_IN_FLIGHT = 32;
const DEFAULT_MAX_CLIENTS = 64;
const DEFAULT_MAX_QUEUED_BYTES = 16 * 1024 * 1024;
/** A reader that takes no byte of a stream for this long is gone in all but name. */
const DEFAULT_MAX_STALL_MS = 60_000;

const EVENT_METHOD: Record<ExchangeEvent, string> = {
  started: notifications.exchangeStarted.method,
  updated: notifications.exchangeUpdated.method,
  completed: notifications.exchangeCompleted.method,
};

/** How long a refused peer may take to close its end after our error before we drop it. */
const REFUSE_LINGER_MS = 2000;

/**
 * Sends one error and closes. What the peer sent is read and discarded (never parsed): a socket
 * nobody reads never sees the peer's FIN and would stay open forever; the timer bounds a peer
 * that keeps its end open.
 */
function refuse(socket: net.Socket, err: RpcError): void {
  socket.end(encode({ jsonrpc: '2.0', id: null, error: err.toWire() }));
  socket.resume();
  socket.setTimeout(REFUSE_LINGER_MS, () => socket.destroy());
}

export class RpcServer {
  private readonly connections = new Set<net.Socket>();
  private nextId = 1;

  constructor(private readonly opts: RpcServerOptions) {}

  get clientCount(): number {
    return this.connections.size;
  }

  attach(server: net.Server): void {
    server.on('connection', (socket) => this.accept(socket));
  }

  closeAll(): void {
    for (const s of this.connections) s.destroy();
    this.connections.clear();
  }

  /**
   * Writes one notification and resolves when the socket can take more: at once while its buffer
   * is under the high-water mark, else on 'drain'. So a stream (an export) advances at the
   * reader's pace and holds at most one chunk unsent; a reader that takes nothing for maxStallMs
   * is disconnected. Rejects once the connection is closed.
   */
  private notify(socket: net.Socket, who: string, method: string, params: unknown): Promise<void> {
    return new Promise((resolve, reject) => {
      if (socket.destroyed || !socket.writable) {
        reject(new RpcError(ErrorCode.InternalError, 'the connection closed'));
        return;
      }
      if (socket.write(encode({ jsonrpc: '2.0', method, params }))) {
        resolve();
        return;
      }
      const stallMs = this.opts.maxStallMs ?? DEFAULT_MAX_STALL_MS;
      const timer = setTimeout(() => {
        this.opts.log.warn(`rpc: ${who} read nothing of a ${method} stream for ${stallMs / 1000} s; disconnecting it`);
        socket.destroy();
      }, stallMs);
      const settle = (ok: boolean) => {
        clearTimeout(timer);
        socket.off('drain', onDrain);
        socket.off('close', onClose);
        if (ok) resolve();
        else reject(new RpcError(ErrorCode.InternalError, 'the connection closed'));
      };
      const onDrain = () => settle(true);
      const onClose = () => settle(false);
      socket.on('drain', onDrain);
      socket.on('close', onClose);
    });
  }

  private accept(socket: net.Socket): void {
    const { log, allowedUids } = this.opts;
    socket.on('error', (err) => log.debug(`rpc connection error: ${err.message}`));
    let peer: PeerIdentity | null = null;
    if (this.opts.peerCredentials) {
      try {
        peer = this.opts.peerCredentials(socket);
      } catch (err) {
        log.warn(`rpc: cannot read peer credentials, refusing the connection: ${(err as Error).message}`);
        socket.destroy();
        return;
      }
    }
    const decision = decidePeer(peer, allowedUids);
    const who = peer ? `uid ${peer.uid} pid ${peer.pid}` : 'unknown peer';
    if (decision.rule === 'refused') {
      log.warn(`rpc: refused ${who}: only root and --allow-uid ${allowedUids.join(',') || '(none)'} may connect`);
      const err = new RpcError(ErrorCode.AccessDenied, `access denied: uid ${peer!.uid} may not use tproxy-helper; run as root or start the helper with --allow-uid ${peer!.uid}`);
      refuse(socket, err);
      return;
    }
    if (this.connections.size >= (this.opts.maxClients ?? DEFAULT_MAX_CLIENTS)) {
      log.warn(`rpc: refused ${who}: too many clients (${this.connections.size})`);
      refuse(socket, new RpcError(ErrorCode.InternalError, 'too many clients connected to tproxy-helper; try again later'));
      return;
    }
    log.debug(`rpc: accepted ${who} (rule: ${decision.rule})`);
    this.connections.add(socket);
    this.opts.onClientsChange?.(this.connections.size);

    const id = this.nextId++;
    let unsubscribe: (() => void) | null = null;
    let subscriptionFilter: ExchangeFilter | undefined;
    const maxQueued = this.opts.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
    const write = (message: unknown): boolean => {
      if (socket.destroyed || !socket.writable) return false;
      socket.write(encode(message));
      return true;
    };
    const closeHooks: Array<() => void> = [];
    const handle: RpcConnectionHandle = {
      id,
      get subscribed() {
        return unsubscribe !== null;
      },
      subscribe: (filter) => {
        // Judged per notification on the snapshot it carries (see ExchangeFilterSchema's timing rule).
        subscriptionFilter = filter;
        if (unsubscribe) return;
        const store = this.opts.services.store;
        const stuck = (): boolean => {
          if (socket.writableLength <= maxQueued) return false;
          log.warn(`rpc: ${who} stopped reading notifications (${socket.writableLength} bytes queued); disconnecting it`);
          socket.destroy();
          return true;
        };
        const offExchanges = store.subscribe((event, exchange) => {
          if (!matchesFilter(exchange, subscriptionFilter) || stuck()) return;
          write({ jsonrpc: '2.0', method: EVENT_METHOD[event], params: { exchange } });
        });
        const offClear = store.onClear((cleared) => {
          if (!stuck()) write({ jsonrpc: '2.0', method: notifications.exchangesCleared.method, params: cleared });
        });
        // Whatever the filter: "interception lost" must reach everyone watching.
        const offStatus = this.opts.services.capture.onStatusChange((status) => {
          if (!stuck()) write({ jsonrpc: '2.0', method: notifications.captureStatusChanged.method, params: { status } });
        });
        unsubscribe = () => {
          offExchanges();
          offClear();
          offStatus();
        };
      },
      unsubscribe: () => {
        unsubscribe?.();
        unsubscribe = null;
        subscriptionFilter = undefined;
      },
      notify: (method, params) => this.notify(socket, who, method, params),
      onClose: (hook) => {
        closeHooks.push(hook);
      },
    };
    const ctx: RequestContext = { peer, permissions: decision.permissions, connection: handle, services: this.opts.services, log };
    const decoder = new LineDecoder(this.opts.maxLineBytes ?? MAX_MESSAGE_BYTES);
    let inFlight = 0;

    const process = async (line: string) => {
      inFlight++;
      if (inFlight >= MAX_IN_FLIGHT) socket.pause();
      try {
        const response = await this.opts.dispatcher.receive(line, ctx);
        if (response) write(response);
      } catch (err) {
        log.error(`rpc: dispatcher failed: ${(err as Error).stack ?? String(err)}`);
      } finally {
        inFlight--;
        if (inFlight < MAX_IN_FLIGHT && socket.isPaused()) socket.resume();
      }
    };

    socket.on('data', (chunk: Buffer) => {
      for (const frame of decoder.push(chunk)) {
        if (frame.kind === 'oversize') {
          // No client of this protocol sends such a line. Reading the rest only to discard it
          // would still allocate a buffer per read at the sender's pace (measured: +40 MiB of
          // garbage before GC catches up), so stop reading, say why, and close.
          log.warn(`rpc: ${who} sent a line over ${frame.limit} bytes; closing its connection`);
          socket.pause();
          socket.removeAllListeners('data');
          const err = new RpcError(ErrorCode.InvalidRequest, `message too large: the limit is ${frame.limit} bytes per line; closing the connection`);
          if (socket.writable) socket.end(encode({ jsonrpc: '2.0', id: null, error: err.toWire() }), () => socket.destroy());
          else socket.destroy();
          socket.setTimeout(REFUSE_LINGER_MS, () => socket.destroy());
          return;
        }
        void process(frame.line);
      }
    });
    socket.on('close', () => {
      handle.unsubscribe();
      for (const hook of closeHooks.splice(0)) {
        try {
          hook();
        } catch (err) {
          log.error(`rpc: close hook of ${who} failed: ${(err as Error).message}`);
        }
      }
      const had = this.connections.delete(socket);
      log.debug(`rpc: ${who} disconnected`);
      if (had) this.opts.onClientsChange?.(this.connections.size);
    });
  }
}
