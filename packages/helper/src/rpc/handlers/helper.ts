/** `helper.*`: thin; the daemon provides the facts and the capture service does the repair. */
import { methods } from '@tproxy/protocol';
import { route } from '../dispatcher.js';

export const helperRoutes = [
  route(methods.helperInfo, (_params, ctx) => ({
    ...ctx.services.info(),
    ...(ctx.peer ? { peer: { uid: ctx.peer.uid, pid: ctx.peer.pid } } : {}),
  })),
  route(methods.helperRepair, async (_params, ctx) => {
    ctx.log.info(`helper.repair by uid ${ctx.peer?.uid ?? '?'}`);
    const result = await ctx.services.repair();
    ctx.log.info(`helper.repair removed: ${result.removed.join('; ') || 'nothing'}`);
    return result;
  }),
];
