/** `capture.*`: thin; the capture service owns the lifecycle. */
import { methods } from '@tproxy/protocol';
import { decideScope, describeScope } from '../../policy.js';
import { route } from '../dispatcher.js';

export const captureRoutes = [
  route(methods.captureStart, (params, ctx) => {
    // Who may capture whose traffic: the policy decides the effective scope (or refuses).
    const scope = decideScope(ctx.services.policy, { uid: ctx.peer?.uid ?? null, requested: params.scope });
    ctx.log.info(`capture.start by uid ${ctx.peer?.uid ?? '?'}: ports ${params.ports.join(',')}, scope ${describeScope(scope)}`);
    // No key for "every process": the config then reads exactly as before scopes existed.
    return ctx.services.capture.start({ ...params, ...(scope.uids || scope.cgroup ? { scope } : {}) });
  }),
  route(methods.captureStop, (_params, ctx) => {
    ctx.log.info(`capture.stop by uid ${ctx.peer?.uid ?? '?'}`);
    return ctx.services.capture.stop();
  }),
  route(methods.captureStatus, (_params, ctx) => ctx.services.capture.status()),
];
