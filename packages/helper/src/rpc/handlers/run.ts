/**
 * `capture.run` / `capture.runEnd`: thin; capture/run.ts owns the cgroup and the run's capture.
 * The run is tied to the requesting connection, so a killed tproxyctl ends it too.
 */
import { CaptureStartParamsSchema, ErrorCode, RpcError, methods } from '@tproxy/protocol';
import { decideScope, describeScope } from '../../policy.js';
import { route } from '../dispatcher.js';

export const runRoutes = [
  route(methods.captureRun, async (params, ctx) => {
    const runs = ctx.services.runs;
    if (!ctx.peer) throw new RpcError(ErrorCode.ScopeUnavailable, 'capture.run needs the caller\'s pid (SO_PEERCRED), which this helper cannot read without its native addon');
    const config = params.capture ?? CaptureStartParamsSchema.parse({});
    const scope = decideScope(ctx.services.policy, { uid: ctx.peer.uid, requested: config.scope });
    ctx.log.info(`capture.run by uid ${ctx.peer.uid} pid ${ctx.peer.pid} for pid ${params.pid}: ports ${config.ports.join(',')}, scope ${describeScope(scope)} plus a new cgroup`);
    const conn = ctx.connection.id;
    // Before begin: a connection that closes while the run starts still ends it (runs are serialised).
    ctx.connection.onClose(() => runs.connectionClosed(conn));
    return runs.begin(conn, { pid: ctx.peer.pid, uid: ctx.peer.uid }, params.pid, { ...config, scope });
  }),
  route(methods.captureRunEnd, (_params, ctx) => {
    return ctx.services.runs.end(ctx.connection.id);
  }),
];
