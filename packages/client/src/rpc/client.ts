/**
 * TproxyClient: the typed front door to tproxy-helper. A call is typed by the protocol's method
 * descriptor and its result is checked against the descriptor's result schema, so a helper of
 * another protocol version (or a broken one) gives a clear ProtocolError instead of a TypeError deep
 * in a caller. Notifications are validated the same way before listeners see them.
 * It owns nothing but that typing layer: sockets, framing and timeouts live in `connection.ts`, and
 * params are not validated here because the helper validates them and names the bad field.
 */
import {
  DEFAULT_SOCKET_PATH,
  CaptureStatusChangedParamsSchema,
  ExchangeNotificationParamsSchema,
  ExchangesClearedParamsSchema,
  ExportChunkParamsSchema,
  formatZodError,
  methods,
  notifications,
  type CaptureStatus,
  type Exchange,
  type ExchangesClearedParams,
  type ExchangesExportParams,
  type ExchangesExportResult,
  type MethodDescriptor,
  type ParamsOf,
  type ResultOf,
} from '@tproxy/protocol';
import { Connection } from './connection.js';
import { ProtocolError } from './errors.js';

export type ExchangeEvent = 'started' | 'updated' | 'completed';
export type ExchangeListener = (event: ExchangeEvent, exchange: Exchange) => void;

export interface ConnectOptions {
  /** Default: `$TPROXY_SOCKET`, else DEFAULT_SOCKET_PATH (/run/tproxy/helper.sock). */
  socketPath?: string;
  /** Per-call timeout in ms; default 30 s, 0 disables it. */
  timeoutMs?: number;
}

export interface CallOptions {
  /** Overrides the connection's per-call timeout for this call. */
  timeoutMs?: number;
}

/** Export chunks (up to 64K characters each) received but not yet written before we stop reading. */
const EXPORT_MAX_PENDING_CHUNKS = 4;

const EXCHANGE_EVENTS: ReadonlyMap<string, ExchangeEvent> = new Map([
  [notifications.exchangeStarted.method, 'started'],
  [notifications.exchangeUpdated.method, 'updated'],
  [notifications.exchangeCompleted.method, 'completed'],
]);

/** The socket path a client uses: explicit option, then `$TPROXY_SOCKET`, then the default. */
export function resolveSocketPath(explicit?: string, env: NodeJS.ProcessEnv = process.env): string {
  return explicit || env.TPROXY_SOCKET || DEFAULT_SOCKET_PATH;
}

export class TproxyClient {
  private readonly exchangeListeners = new Set<ExchangeListener>();
  private readonly errorListeners = new Set<(err: ProtocolError) => void>();
  private readonly clearedListeners = new Set<(cleared: ExchangesClearedParams) => void>();
  private readonly statusListeners = new Set<(status: CaptureStatus) => void>();
  private exporting = false;

  private constructor(private readonly connection: Connection) {
    connection.onNotification((method, params) => this.onNotification(method, params));
  }

  /** Connects to the helper. Throws DaemonUnreachableError (with a hint) when nobody listens or access is denied. */
  static async connect(options: ConnectOptions = {}): Promise<TproxyClient> {
    const connection = await Connection.open({
      socketPath: resolveSocketPath(options.socketPath),
      ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    });
    return new TproxyClient(connection);
  }

  get socketPath(): string {
    return this.connection.socketPath;
  }

  /** True once the connection has closed. */
  get closed(): boolean {
    return this.connection.closed;
  }

  /**
   * Calls one method, typed by its descriptor: `client.call(methods.captureStatus, {})`. Rejects
   * with the helper's RpcError, CallTimeoutError, a close reason, or ProtocolError when the result
   * does not match the descriptor's schema.
   */
  async call<D extends MethodDescriptor>(descriptor: D, params: ParamsOf<D>, options: CallOptions = {}): Promise<ResultOf<D>> {
    const raw = await this.connection.request(descriptor.method, params, options.timeoutMs);
    const parsed = descriptor.result.safeParse(raw);
    if (!parsed.success) {
      throw new ProtocolError(`tproxy-helper sent an invalid result for ${descriptor.method}: ${formatZodError(parsed.error)}`);
    }
    return parsed.data as ResultOf<D>;
  }

  /**
   * Listens for exchange notifications (the connection must have called `exchanges.subscribe`).
   * Each exchange is schema-checked first; an invalid one goes to `onError` listeners instead.
   * Returns an unsubscribe function.
   */
  onExchange(listener: ExchangeListener): () => void {
    this.exchangeListeners.add(listener);
    return () => this.exchangeListeners.delete(listener);
  }

  /**
   * Listens for `capture.statusChanged`: capture started or stopped, or its steering was lost or
   * restored (the connection must have called `exchanges.subscribe`).
   */
  onCaptureStatus(listener: (status: CaptureStatus) => void): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  /** Listens for `exchanges.cleared` (the connection must have called `exchanges.subscribe`). */
  onCleared(listener: (cleared: ExchangesClearedParams) => void): () => void {
    this.clearedListeners.add(listener);
    return () => this.clearedListeners.delete(listener);
  }

  /**
   * Runs `exchanges.export` and hands each piece of the document to `onChunk`, in order, as the
   * helper streams it; resolves with the helper's totals once every piece was handed on (and any
   * promise `onChunk` returned settled). Chunks are checked: one export id, no gap in `seq`, and
   * as many as the result says. One export at a time per client: the helper refuses a second
   * one on the same connection, and chunks carry no request id to tell two apart.
   */
  async exportExchanges(params: ExchangesExportParams, onChunk: (data: string) => void | Promise<void>): Promise<ExchangesExportResult> {
    if (this.exporting) throw new Error('an export is already running on this client; wait for it or use another client');
    this.exporting = true;
    let exportId: number | undefined;
    let expectedSeq = 0;
    let failure: Error | undefined;
    let written: Promise<void> = Promise.resolve();
    let pending = 0;
    const off = this.connection.onNotification((method, raw) => {
      if (method !== notifications.exportChunk.method || failure) return;
      const parsed = ExportChunkParamsSchema.safeParse(raw);
      if (!parsed.success) {
        failure = new ProtocolError(`tproxy-helper sent an invalid ${method} notification: ${formatZodError(parsed.error)}`);
        return;
      }
      const chunk = parsed.data;
      exportId ??= chunk.exportId;
      if (chunk.exportId !== exportId || chunk.seq !== expectedSeq) {
        failure = new ProtocolError(`tproxy-helper sent export chunk ${chunk.exportId}#${chunk.seq}, expected ${exportId}#${expectedSeq}`);
        return;
      }
      expectedSeq++;
      // Backpressure: past a few chunks not yet written, stop reading the socket; the helper then
      // waits for its writes to drain (it sends at our pace) instead of us buffering the export.
      if (++pending >= EXPORT_MAX_PENDING_CHUNKS) this.connection.pause();
      written = written
        .then(() => onChunk(chunk.data))
        .catch((err: unknown) => {
          failure ??= err instanceof Error ? err : new Error(String(err));
        })
        .finally(() => {
          if (--pending < EXPORT_MAX_PENDING_CHUNKS) this.connection.resume();
        });
    });
    try {
      // No call timeout: the helper streams at our pace, and a large buffer takes as long as it takes.
      const result = await this.call(methods.exchangesExport, params, { timeoutMs: 0 });
      await written;
      if (failure) throw failure;
      if (result.chunks !== expectedSeq || (expectedSeq > 0 && result.exportId !== exportId)) {
        throw new ProtocolError(`tproxy-helper reported ${result.chunks} chunks of export ${result.exportId}, but ${expectedSeq} arrived for export ${exportId ?? '-'}`);
      }
      return result;
    } finally {
      off();
      this.connection.resume();
      this.exporting = false;
    }
  }

  /**
   * Problems not tied to a call, such as a notification that fails its schema. Without any listener
   * they become process warnings, so they are never lost silently.
   */
  onError(listener: (err: ProtocolError) => void): () => void {
    this.errorListeners.add(listener);
    return () => this.errorListeners.delete(listener);
  }

  /** Called once when the connection closes, with the reason (ConnectionClosedError, access denied, ProtocolError). */
  onClose(listener: (reason: Error) => void): () => void {
    return this.connection.onClose(listener);
  }

  /** Closes the connection; pending calls reject with ConnectionClosedError. Idempotent. */
  close(): Promise<void> {
    return this.connection.close();
  }

  private onNotification(method: string, params: unknown): void {
    if (method === notifications.exchangesCleared.method) {
      this.onClearedNotification(params);
      return;
    }
    if (method === notifications.captureStatusChanged.method) {
      this.onStatusNotification(params);
      return;
    }
    const event = EXCHANGE_EVENTS.get(method);
    // Notifications this client does not know (from a newer helper) are not errors: ignore them.
    if (event === undefined || this.exchangeListeners.size === 0) return;
    const parsed = ExchangeNotificationParamsSchema.safeParse(params);
    if (!parsed.success) {
      this.reportError(new ProtocolError(`tproxy-helper sent an invalid ${method} notification: ${formatZodError(parsed.error)}`));
      return;
    }
    for (const listener of [...this.exchangeListeners]) listener(event, parsed.data.exchange);
  }

  private onStatusNotification(params: unknown): void {
    if (this.statusListeners.size === 0) return;
    const parsed = CaptureStatusChangedParamsSchema.safeParse(params);
    if (!parsed.success) {
      this.reportError(new ProtocolError(`tproxy-helper sent an invalid ${notifications.captureStatusChanged.method} notification: ${formatZodError(parsed.error)}`));
      return;
    }
    for (const listener of [...this.statusListeners]) listener(parsed.data.status);
  }

  private onClearedNotification(params: unknown): void {
    if (this.clearedListeners.size === 0) return;
    const parsed = ExchangesClearedParamsSchema.safeParse(params);
    if (!parsed.success) {
      this.reportError(new ProtocolError(`tproxy-helper sent an invalid ${notifications.exchangesCleared.method} notification: ${formatZodError(parsed.error)}`));
      return;
    }
    for (const listener of [...this.clearedListeners]) listener(parsed.data);
  }

  private reportError(err: ProtocolError): void {
    if (this.errorListeners.size === 0) {
      process.emitWarning(err.message, 'TproxyProtocolWarning');
      return;
    }
    for (const listener of [...this.errorListeners]) listener(err);
  }
}
