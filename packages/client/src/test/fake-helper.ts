/**
 * Test double for tproxy-helper: a net.Server on a temporary Unix socket that speaks the protocol's
 * wire shape (NDJSON JSON-RPC 2.0) and nothing more. Tests register per-method handlers, push
 * notifications to subscribed connections, and inspect what was received. It shares no code with
 * the real helper on purpose: it checks that the client follows the protocol, not the helper's
 * implementation. Test-only; nothing in src/ outside tests may import it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, LineDecoder, MAX_MESSAGE_BYTES, RpcError, encode, notifications } from '@tproxy/protocol';

/** Returned by a handler to leave a request unanswered (timeout tests). */
export const NO_REPLY = Symbol('no-reply');

export interface FakeConnection {
  readonly socket: Socket;
  subscribed: boolean;
  /** Writes one raw line (no newline needed) to this connection. */
  sendRaw(line: string): void;
}

export type Handler = (params: unknown, conn: FakeConnection) => unknown | Promise<unknown>;

export interface Received {
  method: string;
  params: unknown;
}

export class FakeHelper {
  readonly received: Received[] = [];
  readonly connections = new Set<FakeConnection>();
  /** When true, every new connection is closed at once, without a word. */
  refuseConnections = false;
  /**
   * When set, every new connection gets this error with `id: null` and is then closed: what the
   * real helper sends a uid it does not allow.
   */
  refuseWith: RpcError | undefined;
  private readonly handlers = new Map<string, Handler>();

  private constructor(
    private server: Server,
    readonly socketPath: string,
    private readonly dir: string,
  ) {}

  static async start(): Promise<FakeHelper> {
    const dir = mkdtempSync(join(tmpdir(), 'tproxy-fake-'));
    const socketPath = join(dir, 'helper.sock');
    const fake = new FakeHelper(createServer(), socketPath, dir);
    await fake.listen();
    // `exchanges.subscribe` is protocol behaviour every test relies on.
    fake.on('exchanges.subscribe', (_params, conn) => {
      conn.subscribed = true;
      return { subscribed: true };
    });
    return fake;
  }

  /** Answers `method` with the handler's return value; a thrown RpcError becomes an error response. */
  on(method: string, handler: Handler): this {
    this.handlers.set(method, handler);
    return this;
  }

  /** Sends `exchange.<event>` to every subscribed connection. */
  notifyExchange(event: 'started' | 'updated' | 'completed', exchange: unknown): void {
    const method = {
      started: notifications.exchangeStarted.method,
      updated: notifications.exchangeUpdated.method,
      completed: notifications.exchangeCompleted.method,
    }[event];
    this.notify(method, { exchange });
  }

  /** Sends an arbitrary notification to every subscribed connection. */
  notify(method: string, params: unknown): void {
    for (const conn of this.connections) {
      if (conn.subscribed) conn.socket.write(encode({ jsonrpc: '2.0', method, params }));
    }
  }

  /** Resolves once some connection has subscribed (tests wait on this rather than sleeping). */
  async waitForSubscriber(timeoutMs = 2000): Promise<void> {
    await this.waitFor(() => [...this.connections].some((c) => c.subscribed), timeoutMs, 'a subscriber');
  }

  /** Resolves once `method` has been received `count` times. */
  async waitForCall(method: string, count = 1, timeoutMs = 2000): Promise<void> {
    await this.waitFor(() => this.received.filter((r) => r.method === method).length >= count, timeoutMs, `${count}× ${method}`);
  }

  /** Drops every open connection (the helper going away). */
  dropConnections(): void {
    for (const conn of this.connections) conn.socket.destroy();
  }

  /**
   * The helper exiting: drops every connection and stops listening, which removes the socket file,
   * so connecting fails with ENOENT until `restart()`. Handlers and `received` are kept.
   */
  async stop(): Promise<void> {
    this.dropConnections();
    if (this.server.listening) await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** The helper coming back on the same socket path (after `stop()`). */
  async restart(): Promise<void> {
    await this.stop();
    this.server = createServer();
    await this.listen();
  }

  async close(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async listen(): Promise<void> {
    const server = this.server;
    server.on('connection', (socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.socketPath, () => resolve());
    });
  }

  private async waitFor(predicate: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (Date.now() > deadline) throw new Error(`fake helper: timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  private accept(socket: Socket): void {
    if (this.refuseConnections) {
      socket.destroy();
      return;
    }
    if (this.refuseWith) {
      socket.on('error', () => undefined);
      socket.end(encode({ jsonrpc: '2.0', id: null, error: this.refuseWith.toWire() }));
      socket.resume();
      return;
    }
    const decoder = new LineDecoder(MAX_MESSAGE_BYTES);
    const conn: FakeConnection = {
      socket,
      subscribed: false,
      sendRaw: (line) => socket.write(`${line}\n`),
    };
    this.connections.add(conn);
    socket.on('close', () => this.connections.delete(conn));
    socket.on('error', () => {
      // The client side closing mid-write is an ordinary event in these tests.
    });
    socket.on('data', (chunk: Buffer) => {
      for (const frame of decoder.push(chunk)) {
        if (frame.kind === 'line') void this.handle(JSON.parse(frame.line) as Record<string, unknown>, conn);
      }
    });
  }

  private async handle(message: Record<string, unknown>, conn: FakeConnection): Promise<void> {
    const method = String(message.method);
    this.received.push({ method, params: message.params });
    const id = message.id;
    if (id === undefined) return;
    const handler = this.handlers.get(method);
    let reply: unknown;
    try {
      if (!handler) throw new RpcError(ErrorCode.MethodNotFound, `method not found: ${method}`);
      const result = await handler(message.params, conn);
      if (result === NO_REPLY) return;
      reply = { jsonrpc: '2.0', id, result };
    } catch (err) {
      const wire = err instanceof RpcError ? err.toWire() : new RpcError(ErrorCode.InternalError, String(err)).toWire();
      reply = { jsonrpc: '2.0', id, error: wire };
    }
    if (!conn.socket.destroyed) conn.socket.write(encode(reply));
  }
}
