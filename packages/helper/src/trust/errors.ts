/**
 * The trust package's one error class: a stable `code` for the RPC layer to map, a message that
 * says what was attempted ("installing the CA into /usr/local/share/ca-certificates:
 * update-ca-certificates: <stderr>"), and the failing command's stderr when there was one. This
 * module owns the vocabulary only; it must not log or decide how errors are shown.
 */

export type TrustStoreErrorCode =
  /** No known anchor directory with its refresh command exists on this machine. */
  | 'no-trust-store'
  /** A path or serial handed to us would put or delete a file outside our own anchor files. */
  | 'invalid-argument'
  /** Writing or removing the anchor file failed. */
  | 'io'
  /** The distribution's refresh command (update-ca-certificates, ...) failed. */
  | 'refresh-failed'
  /** No CA bundle was found to verify upstream servers with. */
  | 'no-system-roots';

export class TrustStoreError extends Error {
  override readonly name = 'TrustStoreError';
  /** The failing command's stderr, verbatim, when a command failed. */
  readonly stderr?: string;
  constructor(
    readonly code: TrustStoreErrorCode,
    message: string,
    options?: {
      cause?: unknown;
      /** The failing command's stderr, verbatim. */
      stderr?: string;
    },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    if (options?.stderr !== undefined) this.stderr = options.stderr;
  }
}

/** True when `err` is a TrustStoreError, optionally with the given code. */
export function isTrustStoreError(err: unknown, code?: TrustStoreErrorCode): err is TrustStoreError {
  return err instanceof TrustStoreError && (code === undefined || err.code === code);
}
