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

/** FirewallError codes (firewall/errors.ts) with a wire code of their own; the rest are BY_NAME's. */
const FIREWALL_CODES: Record<string, ErrorCode> = {
  collision: ErrorCode.FirewallCollision,
  'invalid-scope': ErrorCode.ScopeUnavailable,
};

export function toRpcError(err: unknown, log: Logger): RpcError {
  if (err instanceof RpcError) return err;
  if (err instanceof Error) {
    const own = err.name === 'FirewallError' ? FIREWALL_CODES[String((err as { code?: unknown }).code)] : undefined;
    const code = own ?? BY_NAME[err.name] ?? BY_NAME[err.constructor.name];
    if (code !== undefined) return new RpcError(code, err.message);
    log.error(`internal error: ${err.stack ?? err.message}`);
    return new RpcError(ErrorCode.InternalError, `internal error: ${err.message}`);
  }
  log.error(`internal error: ${String(err)}`);
  return new RpcError(ErrorCode.InternalError, 'internal error');
}
