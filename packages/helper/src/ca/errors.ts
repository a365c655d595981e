/**
 * The CA package's one error class. Every failure in ca/ surfaces as a CaError with a stable `code`
 * that the RPC layer maps to a wire error, and a message that says what was being attempted
 * ("loading the CA from /var/lib/tproxy: ..."). The original failure rides along as `cause`.
 * This module owns the vocabulary only; it must not log or decide how errors are shown.
 */

export type CaErrorCode =
  /** A TLS client asked for a name we refuse to mint: a wildcard, junk, or an over-long name. */
  | 'invalid-name'
  /** The stored CA (or a PEM handed to us) does not parse, does not match its key, or is not a CA. */
  | 'ca-corrupt'
  /** Reading or writing the CA files failed (permissions, full disk, ...). */
  | 'io';

export class CaError extends Error {
  override readonly name = 'CaError';
  constructor(
    readonly code: CaErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** True when `err` is a CaError, optionally with the given code. */
export function isCaError(err: unknown, code?: CaErrorCode): err is CaError {
  return err instanceof CaError && (code === undefined || err.code === code);
}

/** The message of any thrown value, for wrapping causes into our own messages. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
