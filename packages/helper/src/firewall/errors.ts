/**
 * The firewall's error vocabulary: one class with a stable `code`, so the RPC layer can map it in one
 * place (apply-failed → ErrorCode.FirewallApplyFailed, collision → ErrorCode.FirewallCollision) without parsing messages. Every message says
 * what was being attempted followed by the command's stderr, e.g.
 * `applying nft ruleset (table inet tproxy_helper): <stderr>`; the original error stays in `cause`.
 * This module owns no behaviour: it must not log, retry or run anything.
 */

export type FirewallErrorCode =
  /** Applying failed; everything this attempt had added was removed again before throwing. */
  | 'apply-failed'
  /** Reverting left something behind; the message lists each step that failed. */
  | 'revert-failed'
  /** Refreshing the fail-open `ports` set elements failed (our table or set is gone, nft failed). */
  | 'heartbeat-failed'
  /** The `nft` binary is not installed (exec ENOENT). */
  | 'nft-missing'
  /** The `ip` binary (iproute2) is not installed (exec ENOENT). */
  | 'ip-missing'
  /**
   * A rule, mark or route table we would use is already used by someone else (collision.ts);
   * found before anything was applied, so nothing changed. The message names each collision and
   * how to avoid it.
   */
  | 'collision'
  /** The scope cannot be rendered as asked (an empty uid list, a cgroup path nft cannot quote). */
  | 'invalid-scope';

export class FirewallError extends Error {
  override readonly name = 'FirewallError';
  constructor(
    readonly code: FirewallErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function isFirewallError(err: unknown): err is FirewallError {
  return err instanceof FirewallError;
}
