/**
 * One connection to tproxy-helper: a Unix socket, newline-delimited JSON framing (the protocol's
 * LineDecoder/encode), request/response correlation (json-rpc-2.0's JSONRPCClient), a per-call
 * timeout, and a fan-out of incoming notifications. It is untyped on purpose: method names and
 * params are opaque here, and schemas are applied one layer up in `client.ts`.
 * It owns the connection's lifetime: when the socket closes, every pending call is rejected with
 * one reason, and that reason is what later calls get too. It must not validate results or know
 * any method.
 */
import { createConnection, type Socket } from 'node:net';
import {
  JSONRPCClient,
  createJSONRPCErrorResponse,
  createJSONRPCRequest,
  isJSONRPCRequest,
  isJSONRPCResponse,
  type JSONRPCID,
  type JSONRPCRequest,
  type JSONRPCRequester,
  type JSONRPCResponse,
} from 'json-rpc-2.0';
import { ErrorCode, LineDecoder, MAX_MESSAGE_BYTES, RpcError, encode } from '@tproxy/protocol';
import { CallTimeoutError, ConnectionClosedError, DaemonUnreachableError, ProtocolError, refusedByHelper } from './errors.js';

/** Default per-call timeout: long enough for `capture.start` to apply rules and install the CA. */
export const DEFAULT_CALL_TIMEOUT_MS = 30_000;

export interface ConnectionOptions {
  socketPath: string;
  /** Per-call timeout in ms; 0 or Infinity disables it. Default 30 s. */
  timeoutMs?: number;
}

export type NotificationListener = (method: string, params: unknown) => void;
export type CloseListener = (reason: Error) => void;

/**
 * Unforgeable markers for the error responses we synthesize ourselves: wire data is parsed JSON, so
 * it can never be one of these objects, and a helper cannot fake a timeout or a close.
 */
const TIMED_OUT = Object.freeze({ local: 'timeout' });
const CLOSED = Object.freeze({ local: 'closed' });

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export class Connection {
  private readonly rpc: JSONRPCClient;
  private readonly decoder = new LineDecoder(MAX_MESSAGE_BYTES);
  private readonly pending = new Set<number>();
  private readonly notificationListeners = new Set<NotificationListener>();
  private readonly closeListeners = new Set<CloseListener>();
  private nextId = 0;
  /** Anything at all arrived from the helper; distinguishes "refused us" from "went away". */
  private heardFromHelper = false;
  private closingByUs = false;
  /** A reason decided before the socket closed (protocol error), or the last socket error. */
  private failure: Error | undefined;
  /**
   * An error the helper sent with `id: null` (JSON-RPC 2.0 §5: about the connection, not a call).
   * The helper refuses a uid this way and then closes, so it becomes the close reason.
   */
  private connectionError: RpcError | undefined;
  private socketError: Error | undefined;
  private closeReason: Error | undefined;
  private readonly closedPromise: Promise<void>;

  private constructor(
    private readonly socket: Socket,
    readonly socketPath: string,
    readonly timeoutMs: number,
  ) {
    this.rpc = new JSONRPCClient((payload: unknown) => {
      this.socket.write(encode(payload));
    });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => {
      this.socketError = err;
    });
    this.closedPromise = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.once('close', () => this.handleClose());
  }

  /** Connects to the helper's socket; throws DaemonUnreachableError with a hint when it cannot. */
  static open(options: ConnectionOptions): Promise<Connection> {
    const { socketPath } = options;
    const timeoutMs = options.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    return new Promise((resolve, reject) => {
      const socket = createConnection({ path: socketPath });
      const onError = (err: NodeJS.ErrnoException) => reject(new DaemonUnreachableError(socketPath, err));
      socket.once('error', onError);
      socket.once('connect', () => {
        socket.off('error', onError);
        resolve(new Connection(socket, socketPath, timeoutMs));
      });
    });
  }

  /** True once the socket has closed; `reason` says why. */
  get closed(): boolean {
    return this.closeReason !== undefined;
  }

  /** Why the connection closed, once it has. */
  get reason(): Error | undefined {
    return this.closeReason;
  }

  /**
   * Sends one request and resolves with its `result` as received (unvalidated). Rejects with the
   * helper's error as an RpcError, CallTimeoutError, or the connection's close reason.
   */
  async request(method: string, params: unknown, timeoutMs = this.timeoutMs): Promise<unknown> {
    if (this.closeReason) throw this.closeReason;
    const id = ++this.nextId;
    const request = createJSONRPCRequest(id, method, params);
    const requester: JSONRPCRequester<void> =
      timeoutMs > 0 && Number.isFinite(timeoutMs)
        ? this.rpc.timeout(timeoutMs, (tid: JSONRPCID) => createJSONRPCErrorResponse(tid, ErrorCode.InternalError, 'timeout', TIMED_OUT))
        : this.rpc;
    this.pending.add(id);
    let response: JSONRPCResponse;
    try {
      response = await requester.requestAdvanced(request);
    } finally {
      this.pending.delete(id);
    }
    if (!response.error) return response.result;
    if (response.error.data === TIMED_OUT) throw new CallTimeoutError(method, timeoutMs);
    if (response.error.data === CLOSED) throw this.closeReason ?? new ConnectionClosedError('connection closed');
    throw RpcError.fromWire(response.error);
  }

  /** Listens for notifications (requests without id) from the helper. Returns an unsubscribe function. */
  onNotification(listener: NotificationListener): () => void {
    this.notificationListeners.add(listener);
    return () => this.notificationListeners.delete(listener);
  }

  /** Called once when the connection closes, with the reason pending calls were rejected with. */
  onClose(listener: CloseListener): () => void {
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  /**
   * Stops reading from the helper until resume(): a consumer slower than the helper (an export
   * written to a slow pipe) pushes back through the socket instead of queueing in our memory.
   */
  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  /** Closes the connection (idempotent); pending calls reject with ConnectionClosedError. */
  close(): Promise<void> {
    if (!this.closed && !this.closingByUs) {
      this.closingByUs = true;
      this.socket.end(() => this.socket.destroy());
    }
    return this.closedPromise;
  }

  private onData(chunk: Buffer): void {
    for (const frame of this.decoder.push(chunk)) {
      if (this.failure) return;
      if (frame.kind === 'oversize') {
        this.fail(new ProtocolError(`tproxy-helper sent a message longer than ${frame.limit} bytes`));
        return;
      }
      let message: unknown;
      try {
        message = JSON.parse(frame.line);
      } catch (err) {
        this.fail(new ProtocolError(`tproxy-helper sent a line that is not JSON: ${(err as Error).message}`));
        return;
      }
      this.dispatch(message);
    }
  }

  private dispatch(message: unknown): void {
    if (!isObject(message)) {
      this.fail(new ProtocolError('tproxy-helper sent a message that is not a JSON-RPC object'));
      return;
    }
    this.heardFromHelper = true;
    if (isJSONRPCResponse(message) && message.id === null && message.error) {
      this.connectionError = RpcError.fromWire(message.error);
    } else if (isJSONRPCResponse(message)) {
      // A late answer to a call that already timed out has no waiter; the library drops it.
      this.rpc.receive(message);
    } else if (isJSONRPCRequest(message) && message.id === undefined) {
      this.emitNotification(message);
    } else if (isJSONRPCRequest(message)) {
      // The helper never calls clients; answer properly rather than leave it waiting.
      const wire = new RpcError(ErrorCode.MethodNotFound, `the client serves no methods (got ${message.method})`).toWire();
      this.socket.write(encode(createJSONRPCErrorResponse(message.id ?? null, wire.code, wire.message, wire.data)));
    } else {
      this.fail(new ProtocolError('tproxy-helper sent a message that is neither a response nor a notification'));
    }
  }

  private emitNotification(message: JSONRPCRequest): void {
    for (const listener of [...this.notificationListeners]) listener(message.method, message.params);
  }

  /** Ends the connection because of something the helper sent; that error becomes the close reason. */
  private fail(err: Error): void {
    this.failure ??= err;
    this.socket.destroy();
  }

  private closeReasonNow(): Error {
    if (this.failure) return this.failure;
    if (this.closingByUs) return new ConnectionClosedError('connection closed');
    if (this.connectionError) return this.connectionError;
    if (!this.heardFromHelper) return refusedByHelper(this.socketPath);
    return new ConnectionClosedError(
      `tproxy-helper closed the connection${this.socketError ? `: ${this.socketError.message}` : ''}`,
      { cause: this.socketError },
    );
  }

  private handleClose(): void {
    const reason = this.closeReasonNow();
    this.closeReason = reason;
    for (const id of this.pending) {
      this.rpc.receive(createJSONRPCErrorResponse(id, ErrorCode.InternalError, reason.message, CLOSED));
    }
    for (const listener of [...this.closeListeners]) listener(reason);
  }
}
