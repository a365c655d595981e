/** `helper.info`: thin; the daemon provides the facts. */
import { methods } from '@tproxy/protocol';
import { route } from '../dispatcher.js';

export const helperRoutes = [
  route(methods.helperInfo, (_params, ctx) => ({
    ...ctx.services.info(),
    ...(ctx.peer ? { peer: { uid: ctx.peer.uid, pid: ctx.peer.pid } } : {}),
  })),
];
