/** `ca.*`: thin; the capture service owns the CA and (through trust/manager.ts) where it is trusted. */
import { methods } from '@tproxy/protocol';
import { route } from '../dispatcher.js';

export const caRoutes = [
  route(methods.caGet, (_params, ctx) => ctx.services.capture.ca()),
  route(methods.caInstall, (params, ctx) => ctx.services.capture.caInstall(params)),
  route(methods.caUninstall, (params, ctx) => ctx.services.capture.caUninstall(params)),
  route(methods.caRotate, (_params, ctx) => ctx.services.capture.caRotate()),
];
