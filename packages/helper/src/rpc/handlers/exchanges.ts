/** `exchanges.*`: thin reads of the capture buffer, clearing it, exporting it, and per-connection subscriptions. */
import { ErrorCode, RpcError, methods, notifications } from '@tproxy/protocol';
import { decodeBody } from '../../capture/decode.js';
import { writeExport } from '../../capture/export.js';
import type { RpcConnectionHandle } from '../context.js';
import { route } from '../dispatcher.js';

/** Connections with an export running: one at a time each, so their chunks never interleave. */
const exporting = new WeakSet<RpcConnectionHandle>();
let nextExportId = 1;

export const exchangeRoutes = [
  route(methods.exchangesList, (params, ctx) => ctx.services.store.list(params.limit, params.cursor, params.filter)),
  route(methods.exchangesGet, async (params, ctx) => {
    const ex = ctx.services.store.get(params.id);
    if (!ex) throw new RpcError(ErrorCode.ExchangeNotFound, `no exchange ${params.id} in the buffer (never seen, or evicted)`);
    const exchange = ex.snapshot();
    const requestBody = ex.requestBody.bytes();
    const responseBody = ex.responseBody.bytes();
    // Decoded here, not in each client, so every client (the Python one too) shows the same text.
    const decodedRequestBody = await decodeBody(requestBody, exchange.request.headers, exchange.request.body.truncated);
    const res = exchange.response;
    const decodedResponseBody = res ? await decodeBody(responseBody, res.headers, res.body.truncated) : undefined;
    const sseEvents = ex.sseEvents();
    return {
      exchange,
      requestBody: requestBody.toString('base64'),
      responseBody: responseBody.toString('base64'),
      ...(decodedRequestBody ? { decodedRequestBody } : {}),
      ...(decodedResponseBody ? { decodedResponseBody } : {}),
      ...(sseEvents ? { sseEvents } : {}),
    };
  }),
  route(methods.exchangesSubscribe, (params, ctx) => {
    ctx.connection.subscribe(params.filter);
    return { subscribed: true };
  }),
  route(methods.exchangesUnsubscribe, (_params, ctx) => {
    ctx.connection.unsubscribe();
    return { subscribed: false };
  }),
  route(methods.exchangesClear, (_params, ctx) => {
    const { removed } = ctx.services.store.clear();
    ctx.log.info(`exchanges.clear: removed ${removed} exchanges (uid ${ctx.peer?.uid ?? '?'})`);
    return { removed };
  }),
  route(methods.exchangesExport, async (params, ctx) => {
    const conn = ctx.connection;
    if (exporting.has(conn)) {
      throw new RpcError(ErrorCode.InvalidRequest, 'an export is already running on this connection; wait for its result, or export on another connection');
    }
    exporting.add(conn);
    const exportId = nextExportId++;
    let seq = 0;
    try {
      const totals = await writeExport(
        ctx.services.store,
        { format: params.format, filter: params.filter, includeBodies: params.includeBodies, creator: { name: 'tproxy-helper', version: ctx.services.info().version } },
        { write: (data) => conn.notify(notifications.exportChunk.method, { exportId, seq: seq++, data }) },
      );
      return { exportId, ...totals };
    } finally {
      exporting.delete(conn);
    }
  }),
];
