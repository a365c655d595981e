/**
 * @tproxy/client: the typed client for tproxy-helper. Everything a program needs to talk to the
 * helper is re-exported here, including the protocol's descriptors and error vocabulary, so callers
 * import one package: `import { TproxyClient, methods, isAccessDenied } from '@tproxy/client'`.
 */
export {
  TproxyClient,
  resolveSocketPath,
  type CallOptions,
  type ConnectOptions,
  type ExchangeEvent,
  type ExchangeListener,
} from './rpc/client.js';
export { Connection, DEFAULT_CALL_TIMEOUT_MS, type ConnectionOptions } from './rpc/connection.js';
export * from './rpc/errors.js';
export {
  DEFAULT_SOCKET_PATH,
  ErrorCode,
  PROTOCOL_VERSION,
  RpcError,
  methods,
  type CaptureStatus,
  type Exchange,
  type ExchangeDetail,
  type MethodDescriptor,
  type ParamsOf,
  type ResultOf,
} from '@tproxy/protocol';
