/** The method registry: every method the helper serves, by name. */
import { caGet } from './ca.js';
import { captureStart, captureStatus, captureStop } from './capture.js';
import { exchangesGet, exchangesList, exchangesSubscribe, exchangesUnsubscribe } from './exchanges.js';
import { helperInfo } from './helper.js';

export const methods = {
  helperInfo,
  captureStart,
  captureStop,
  captureStatus,
  exchangesList,
  exchangesGet,
  exchangesSubscribe,
  exchangesUnsubscribe,
  caGet,
} as const;

export type MethodName = (typeof methods)[keyof typeof methods]['method'];

export * from './ca.js';
export * from './capture.js';
export * from './descriptor.js';
export * from './exchanges.js';
export * from './helper.js';
