/** The method registry: every method the helper serves, by name. */
import { caGet, caInstall, caRotate, caUninstall } from './ca.js';
import { captureStart, captureStatus, captureStop } from './capture.js';
import { exchangesClear, exchangesExport, exchangesGet, exchangesList, exchangesSubscribe, exchangesUnsubscribe } from './exchanges.js';
import { helperInfo, helperRepair } from './helper.js';
import { captureRun, captureRunEnd } from './run.js';

export const methods = {
  helperInfo,
  helperRepair,
  captureStart,
  captureStop,
  captureStatus,
  captureRun,
  captureRunEnd,
  exchangesList,
  exchangesGet,
  exchangesSubscribe,
  exchangesUnsubscribe,
  exchangesClear,
  exchangesExport,
  caGet,
  caRotate,
  caInstall,
  caUninstall,
} as const;

export type MethodName = (typeof methods)[keyof typeof methods]['method'];

export * from './ca.js';
export * from './capture.js';
export * from './descriptor.js';
export * from './exchanges.js';
export * from './helper.js';
export * from './run.js';
