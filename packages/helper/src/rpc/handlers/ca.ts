/** `ca.*`: thin; the capture service owns the CA. */
import { methods } from '@tproxy/protocol';
import { route } from '../dispatcher.js';

export const caRoutes = [route(methods.caGet, (_params, ctx) => ctx.services.capture.ca())];
