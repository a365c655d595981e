/**
 * A raw NDJSON connection to the helper for tests that must send what no well-behaved client
 * sends (malformed JSON, 100 MB lines, requests it never reads the answers of): bytes in, parsed
 * lines out, with bounded waits. It never validates anything itself, so the tests see exactly what
 * the helper wrote. Received lines are kept up to a cap (a misbehaving helper cannot grow us).
 */
import net from 'node:net';
import { LineDecoder } from '@tproxy/protocol';

/** One JSON-RPC message as received; `error`/`result`/`id` as the helper sent them. */
export interface RawMessage {
  jsonrpc?: string;
  id?: unknown;
  result?: unknown;
  error?: { code: number; message: string; data?: { code?: string } & Record<string, unknown> };
  method?: string;
  params?: unknown;
}

const MAX_KEPT = 10_000;

export class RawRpc {
  readonly messages: RawMessage[] = [];
  private readonly waiters = new Set<() => void>();
  private closedFlag = false;
  readonly closed: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    const decoder = new LineDecoder(64 * 1024 * 1024);
    socket.on('data', (chunk: Buffer) => {
      for (const frame of decoder.push(chunk)) {
        if (frame.kind !== 'line') continue;
        if (this.messages.length < MAX_KEPT) this.messages.push(JSON.parse(frame.line) as RawMessage);
      }
      this.wake();
    });
    socket.on('error', () => {
      // The helper may drop us on purpose (refusal, stuck subscriber); 'close' follows.
    });
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.closedFlag = true;
        this.wake();
        resolve();
      }),
    );
  }

  static connect(path: string, timeoutMs = 5000): Promise<RawRpc> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(path);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`connect ${path}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve(new RawRpc(socket));
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  get isClosed(): boolean {
    return this.closedFlag;
  }

  /** Writes raw text (add the '\n' yourself); resolves once the kernel took it (backpressure). */
  send(text: string | Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.write(text, (err) => (err ? reject(err) : resolve()));
    });
  }

  /** Sends one request line and waits for the response with that id. */
  async request(id: number, method: string, params?: unknown, timeoutMs = 10_000): Promise<RawMessage> {
    await this.send(`${JSON.stringify({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) })}\n`);
    return this.waitFor((m) => m.id === id, timeoutMs, `response ${id} to ${method}`);
  }

  /** Resolves with the first kept message matching `match`; rejects on close or after `timeoutMs`. */
  waitFor(match: (m: RawMessage) => boolean, timeoutMs: number, what = 'a matching message'): Promise<RawMessage> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.messages.find(match);
        if (found) finish(undefined, found);
        else if (this.closedFlag) finish(new Error(`connection closed before ${what}; got ${JSON.stringify(this.messages).slice(0, 2000)}`));
      };
      const timer = setTimeout(() => finish(new Error(`no ${what} within ${timeoutMs} ms; got ${JSON.stringify(this.messages).slice(0, 2000)}`)), timeoutMs);
      const finish = (err?: Error, m?: RawMessage) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        if (err) reject(err);
        else resolve(m!);
      };
      this.waiters.add(check);
      check();
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }
}
