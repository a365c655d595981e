/**
 * The one function that maps domain errors to wire errors. Handlers and services throw their own
 * typed errors (FirewallError, TrustStoreError, ...); nothing else in the RPC layer picks codes.
 * Unknown errors become InternalError with their message, and are logged with their stack here.
 */
import { ErrorCode, RpcError } from '@tproxy/protocol';
import type { Logger } from '../log.js';

/** Error classes of the helper's services, recognised by name so this module imports none of them. */
const BY_NAME: Record<string, ErrorCode> = {
  FirewallError: ErrorCode.FirewallApplyFailed,
  TrustStoreError: ErrorCode.TrustStoreFailed,
};

export function toRpcError(err: unknown, log: Logger): RpcError {
  if (err instanceof RpcError) return err;
  if (err instanceof Error) {
    const code = BY_NAME[err.name] ?? BY_NAME[err.constructor.name];
    if (code !== undefined) return new RpcError(code, err.message);
    log.error(`internal error: ${err.stack ?? err.message}`);
    return new RpcError(ErrorCode.InternalError, `internal error: ${err.message}`);
  }
  log.error(`internal error: ${String(err)}`);
  return new RpcError(ErrorCode.InternalError, 'internal error');
}
