/** @tproxy/protocol: the single source of truth for what helper and clients say to each other. */
export * from './constants.js';
export * from './errors.js';
export * from './filter.js';
export * from './export/har.js';
export * from './framing.js';
export * from './methods/index.js';
export * from './model/exchange.js';
export * from './notifications.js';
export { formatZodError } from './validation.js';
