/** `exchanges.*`: thin reads of the capture buffer and per-connection subscription switches. */
import { ErrorCode, RpcError, methods } from '@tproxy/protocol';
import { route } from '../dispatcher.js';

export const exchangeRoutes = [
  route(methods.exchangesList, (params, ctx) => ctx.services.store.list(params.limit, params.cursor)),
  route(methods.exchangesGet, (params, ctx) => {
    const ex = ctx.services.store.get(params.id);
    if (!ex) throw new RpcError(ErrorCode.ExchangeNotFound, `no exchange ${params.id} in the buffer (never seen, or evicted)`);
    return {
      exchange: ex.snapshot(),
      requestBody: ex.requestBody.bytes().toString('base64'),
      responseBody: ex.responseBody.bytes().toString('base64'),
    };
  }),
  route(methods.exchangesSubscribe, (_params, ctx) => {
    ctx.connection.subscribe();
    return { subscribed: true };
  }),
  route(methods.exchangesUnsubscribe, (_params, ctx) => {
    ctx.connection.unsubscribe();
    return { subscribed: false };
  }),
];
