/** `capture.*`: thin; the capture service owns the lifecycle. */
import { methods } from '@tproxy/protocol';
import { route } from '../dispatcher.js';

export const captureRoutes = [
  route(methods.captureStart, (params, ctx) => {
    ctx.log.info(`capture.start by uid ${ctx.peer?.uid ?? '?'}: ports ${params.ports.join(',')}`);
    return ctx.services.capture.start(params);
  }),
  route(methods.captureStop, (_params, ctx) => {
    ctx.log.info(`capture.stop by uid ${ctx.peer?.uid ?? '?'}`);
    return ctx.services.capture.stop();
  }),
  route(methods.captureStatus, (_params, ctx) => ctx.services.capture.status()),
];
