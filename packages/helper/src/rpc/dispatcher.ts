/**
 * Routes JSON-RPC requests by a table of `method → { descriptor, handler }`. Central, so no handler
 * can forget them: params are parsed with the descriptor's zod schema before the handler runs
 * (failure → -32602 with the zod message naming the field), the descriptor's access level is
 * checked against the connection's permissions, every handler runs under a per-method time bound
 * (REQUEST_TIMEOUTS_MS), and every thrown error goes through toRpcError.
 */
import { JSONRPCServer, createJSONRPCErrorResponse, type JSONRPCID, type JSONRPCRequest, type JSONRPCResponse } from 'json-rpc-2.0';
import { ErrorCode, RpcError, formatZodError, type MethodDescriptor } from '@tproxy/protocol';
import type { z } from 'zod';
import type { RequestContext } from './context.js';
import { toRpcError } from './errors.js';
import type { Logger } from '../log.js';

export type Handler<D extends MethodDescriptor> = (
  params: z.infer<D['params']>,
  ctx: RequestContext,
) => z.input<D['result']> | Promise<z.input<D['result']>>;

export interface Route {
  descriptor: MethodDescriptor;
  handler: Handler<MethodDescriptor>;
}

/** Bound on a handler's run time for methods REQUEST_TIMEOUTS_MS does not name: reads of memory. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;

/**
 * Per-method bounds (ms) where the default does not fit; `null` exempts a method. A table keyed by
 * name rather than a descriptor field: the bound is the helper's policy about its own handlers
 * (how slow its commands may be), not part of the wire contract clients see.
 */
export const REQUEST_TIMEOUTS_MS: Readonly<Record<string, number | null>> = {
  // These run nft, ip and update-ca-certificates (each a process, seconds on a loaded host) and
  // roll back on failure; a bound shorter than a slow rollback would answer before the host is clean.
  'capture.start': 120_000,
  'capture.stop': 120_000,
  'capture.run': 120_000,
  'capture.runEnd': 120_000,
  'helper.repair': 120_000,
  'ca.install': 120_000,
  'ca.uninstall': 120_000,
  'ca.rotate': 120_000,
  // First use generates the CA key.
  'ca.get': 60_000,
  // Streams the whole buffer to the client at the client's pace; bounded by backpressure, not time.
  'exchanges.export': null,
};

export interface DispatcherOptions {
  /** Overrides REQUEST_TIMEOUTS_MS entries (tests use short bounds). */
  timeoutsMs?: Readonly<Record<string, number | null>>;
  /** Overrides DEFAULT_REQUEST_TIMEOUT_MS. */
  defaultTimeoutMs?: number;
}

/**
 * Resolves like `work`, or rejects with RequestTimeout after `ms`. The abandoned work keeps
 * running (a half-done capture.start still finishes or rolls back on its own) and its late
 * outcome is only logged: an unobserved rejection would otherwise reach the process's
 * unhandledRejection handler, which reverts everything and exits.
 */
function withTimeout<T>(work: Promise<T>, ms: number | null, method: string, log: Logger): Promise<T> {
  if (ms === null) return work;
  return new Promise<T>((resolve, reject) => {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      log.warn(`${method} still running after ${ms} ms; answered request-timeout, the work continues in the background`);
      reject(
        new RpcError(ErrorCode.RequestTimeout, `${method} did not finish within ${ms / 1000} s and was abandoned; it may still complete in the background, so check the state (e.g. capture.status) before retrying`, { timeoutMs: ms }),
      );
    }, ms);
    work.then(
      (value) => {
        clearTimeout(timer);
        if (timedOut) log.warn(`${method} finished after its request timed out`);
        else resolve(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        if (timedOut) log.warn(`${method} failed after its request timed out: ${(err as Error)?.message ?? String(err)}`);
        else reject(err);
      },
    );
  });
}

/** Typed helper to build a route table entry. */
export function route<D extends MethodDescriptor>(descriptor: D, handler: Handler<D>): Route {
  return { descriptor, handler: handler as unknown as Handler<MethodDescriptor> };
}

/**
 * Errors the library builds itself (parse error, method not found, invalid request) lack our
 * `data.code` string; add it so every error a client sees has one.
 */
function withCodeName(response: JSONRPCResponse): JSONRPCResponse {
  if (!('error' in response) || !response.error) return response;
  const data = response.error.data;
  if (typeof data === 'object' && data !== null && 'code' in data) return response;
  const name = new RpcError(response.error.code, response.error.message).codeName;
  return { ...response, error: { ...response.error, data: { ...(typeof data === 'object' && data !== null ? data : {}), code: name } } };
}

export class Dispatcher {
  // The library's default listener prints every thrown error; ours are mapped (and internal ones
  // logged) by toRpcError.
  private readonly server = new JSONRPCServer<RequestContext>({ errorListener: () => {} });

  constructor(routes: readonly Route[], log: Logger, options: DispatcherOptions = {}) {
    const timeouts = { ...REQUEST_TIMEOUTS_MS, ...options.timeoutsMs };
    const defaultTimeout = options.defaultTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    for (const { descriptor, handler } of routes) {
      const bound = descriptor.method in timeouts ? timeouts[descriptor.method]! : defaultTimeout;
      this.server.addMethod(descriptor.method, async (rawParams: unknown, ctx: RequestContext) => {
        const allowed = descriptor.access === 'write' ? ctx.permissions.write : ctx.permissions.read;
        if (!allowed) {
          throw new RpcError(ErrorCode.AccessDenied, `${descriptor.method} needs ${descriptor.access} access, which uid ${ctx.peer?.uid ?? '?'} does not have`);
        }
        // JSON-RPC allows omitted params; our schemas are objects, so omitted means {}.
        const parsed = descriptor.params.safeParse(rawParams ?? {});
        if (!parsed.success) {
          throw new RpcError(ErrorCode.InvalidParams, `invalid params for ${descriptor.method}: ${formatZodError(parsed.error)}`);
        }
        // async wrapper: a handler that throws synchronously becomes a rejection like any other.
        return withTimeout((async () => handler(parsed.data, ctx))(), bound, descriptor.method, log);
      });
    }
    this.server.mapErrorToJSONRPCErrorResponse = (id, error: unknown) => {
      const wire = toRpcError(error, log).toWire();
      return createJSONRPCErrorResponse(id, wire.code, wire.message, wire.data);
    };
  }

  /**
   * Handles one JSON line; resolves to the response (or null for a notification). The line is
   * parsed and each envelope checked here rather than by the library, which answers a non-string
   * `method` with "method not found" and echoes any `id` back, so a 10 000-deep `id` would make
   * JSON.stringify overflow the stack when the response is written.
   */
  async receive(line: string, ctx: RequestContext): Promise<JSONRPCResponse | JSONRPCResponse[] | null> {
    let message: unknown;
    try {
      message = JSON.parse(line);
    } catch (err) {
      return withCodeName(createJSONRPCErrorResponse(null, ErrorCode.ParseError, `parse error: ${(err as Error).message}`));
    }
    if (!Array.isArray(message)) return this.receiveOne(message, ctx);
    if (message.length === 0 || message.length > MAX_BATCH) {
      // Bounded so one line cannot ask for a million error responses.
      return invalidRequest(null, message.length === 0 ? 'an empty batch' : `a batch of ${message.length} requests; at most ${MAX_BATCH} per batch`);
    }
    const responses = (await Promise.all(message.map((m) => this.receiveOne(m, ctx)))).filter((r): r is JSONRPCResponse => r !== null);
    return responses.length > 0 ? responses : null;
  }

  private async receiveOne(message: unknown, ctx: RequestContext): Promise<JSONRPCResponse | null> {
    const problem = envelopeProblem(message);
    if (problem) return invalidRequest(usableId(message), problem);
    const response = await this.server.receive(message as JSONRPCRequest, ctx);
    return response && withCodeName(response);
  }
}

/** Most requests one batch line may hold. */
export const MAX_BATCH = 64;

function invalidRequest(id: JSONRPCID, problem: string): JSONRPCResponse {
  return withCodeName(createJSONRPCErrorResponse(id, ErrorCode.InvalidRequest, `invalid request: ${problem}`));
}

/** The request's id when it is one JSON-RPC allows (so the client can match the error), else null. */
function usableId(message: unknown): JSONRPCID {
  if (typeof message !== 'object' || message === null || !('id' in message)) return null;
  const id = (message as { id: unknown }).id;
  return typeof id === 'string' || (typeof id === 'number' && Number.isFinite(id)) ? id : null;
}

/** What makes `message` not a JSON-RPC 2.0 request, or null. `params` is the method schema's to judge. */
function envelopeProblem(message: unknown): string | null {
  if (typeof message !== 'object' || message === null || Array.isArray(message)) return 'a request must be a JSON object';
  const m = message as Record<string, unknown>;
  if (m.jsonrpc !== '2.0') return '"jsonrpc" must be "2.0"';
  if (typeof m.method !== 'string') return '"method" must be a string';
  if ('id' in m && m.id !== null && typeof m.id !== 'string' && !(typeof m.id === 'number' && Number.isFinite(m.id))) {
    return '"id" must be a string, a finite number or null';
  }
  return null;
}
