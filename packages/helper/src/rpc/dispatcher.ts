/**
 * Routes JSON-RPC requests by a table of `method → { descriptor, handler }`. Central, so no handler
 * can forget them: params are parsed with the descriptor's zod schema before the handler runs
 * (failure → -32602 with the zod message naming the field), the descriptor's access level is
 * checked against the connection's permissions, and every thrown error goes through toRpcError.
 */
import { JSONRPCServer, createJSONRPCErrorResponse, type JSONRPCResponse } from 'json-rpc-2.0';
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

  constructor(routes: readonly Route[], log: Logger) {
    for (const { descriptor, handler } of routes) {
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
        return handler(parsed.data, ctx);
      });
    }
    this.server.mapErrorToJSONRPCErrorResponse = (id, error: unknown) => {
      const wire = toRpcError(error, log).toWire();
      return createJSONRPCErrorResponse(id, wire.code, wire.message, wire.data);
    };
  }

  /** Handles one JSON line; resolves to the response (or null for a notification). */
  async receive(line: string, ctx: RequestContext): Promise<JSONRPCResponse | JSONRPCResponse[] | null> {
    const response = await this.server.receiveJSON(line, ctx);
    if (Array.isArray(response)) return response.map(withCodeName);
    return response && withCodeName(response);
  }
}
