/**
 * Every error the client can raise, and the guards callers branch on. Errors the helper sent stay
 * `RpcError`s from the protocol (rebuilt with `RpcError.fromWire`), so `data.code` survives; errors
 * that happen on this side of the socket get small classes of their own, each with a stable `code`
 * string. This module owns the wording of the hints shown when the helper is down or refuses us; it
 * must not print anything or know about the CLI.
 * Model: tailscale `client/local/local.go` (`AccessDeniedError`, `IsAccessDeniedError`, the
 * "is tailscaled running?" hint).
 */
import { ErrorCode, RpcError, hasErrorCode } from '@tproxy/protocol';

/** `uid` of this process, for hints; undefined where the platform has no uids. */
function currentUid(): number | undefined {
  return typeof process.getuid === 'function' ? process.getuid() : undefined;
}

function allowUidHint(): string {
  const uid = currentUid();
  return `run as root or start the helper with --allow-uid ${uid ?? '<your uid>'}`;
}

/** Why a connection attempt failed, by the errno that `connect(2)` gave. */
export type UnreachableReason = 'not-running' | 'permission-denied' | 'other';

/** The helper's socket could not be connected to at all. `message` already includes `hint`. */
export class DaemonUnreachableError extends Error {
  override readonly name = 'DaemonUnreachableError';
  /** Stable string for scripts (`--json` error output). */
  readonly code = 'daemon-unreachable';
  readonly reason: UnreachableReason;
  /** The errno name from connect(2), e.g. `ENOENT`. */
  readonly errno: string | undefined;
  /** What the user can do about it. */
  readonly hint: string;

  constructor(
    readonly socketPath: string,
    cause: NodeJS.ErrnoException,
  ) {
    const errno = cause.code;
    let reason: UnreachableReason;
    let summary: string;
    let hint: string;
    // ENOENT: no socket file. ECONNREFUSED: a socket file nobody listens on (a stale file from a
    // helper that died, or a socket unit that is not active).
    if (errno === 'ENOENT' || errno === 'ECONNREFUSED') {
      reason = 'not-running';
      summary = `tproxy-helper is not running at ${socketPath}`;
      hint = 'start it with `sudo node_modules/.bin/tproxy-helper` (or `systemctl enable --now tproxy-helper.socket`)';
    } else if (errno === 'EACCES' || errno === 'EPERM') {
      reason = 'permission-denied';
      summary = `permission denied on ${socketPath}`;
      hint = `the socket is 0600; ${allowUidHint()}`;
    } else {
      reason = 'other';
      summary = `cannot connect to tproxy-helper at ${socketPath}`;
      hint = cause.message;
    }
    super(`${summary}: ${hint}`, { cause });
    this.reason = reason;
    this.errno = errno;
    this.hint = hint;
  }
}

/**
 * The helper refuses callers whose uid it does not allow by closing the connection before it
 * answers anything. On the wire that looks like an ordinary close, so the connection reports it as
 * the same `AccessDenied` RpcError the helper would send, with the hint in `detail.hint`.
 */
export function refusedByHelper(socketPath: string): RpcError {
  const hint = allowUidHint();
  const uid = currentUid();
  return new RpcError(
    ErrorCode.AccessDenied,
    `tproxy-helper at ${socketPath} closed the connection without answering, as it does for callers ` +
      `whose uid${uid === undefined ? '' : ` (${uid})`} it does not allow: ${hint}`,
    { socketPath, hint, reason: 'closed-before-answering' },
  );
}

/** The connection ended (our `close()`, the helper exiting, or a protocol error) with calls pending or after. */
export class ConnectionClosedError extends Error {
  override readonly name = 'ConnectionClosedError';
  readonly code = 'connection-closed';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The helper did not answer a call in time. */
export class CallTimeoutError extends Error {
  override readonly name = 'CallTimeoutError';
  readonly code = 'timeout';
  constructor(
    readonly method: string,
    readonly timeoutMs: number,
  ) {
    super(`${method}: tproxy-helper did not answer within ${timeoutMs} ms`);
  }
}

/**
 * The helper sent something this client cannot accept: a line that is not JSON-RPC, a line over
 * MAX_MESSAGE_BYTES, or a result/notification that does not match the protocol's schema (usually a
 * helper and client of different protocol versions).
 */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
  readonly code = 'protocol-error';
}

/** Errors whose class has a stable `code` string; RpcError exposes `codeName` instead. */
export type ClientError = DaemonUnreachableError | ConnectionClosedError | CallTimeoutError | ProtocolError;

export function isClientError(err: unknown): err is ClientError {
  return (
    err instanceof DaemonUnreachableError ||
    err instanceof ConnectionClosedError ||
    err instanceof CallTimeoutError ||
    err instanceof ProtocolError
  );
}

export function isDaemonUnreachable(err: unknown): err is DaemonUnreachableError {
  return err instanceof DaemonUnreachableError;
}

/** The helper refused us: an `AccessDenied` answer, or a close before any answer (see `refusedByHelper`). */
export function isAccessDenied(err: unknown): err is RpcError {
  return hasErrorCode(err, ErrorCode.AccessDenied);
}

export function isInvalidParams(err: unknown): err is RpcError {
  return hasErrorCode(err, ErrorCode.InvalidParams);
}

export function isCaptureUnavailable(err: unknown): err is RpcError {
  return hasErrorCode(err, ErrorCode.CaptureUnavailable);
}

export function isCaptureAlreadyRunning(err: unknown): err is RpcError {
  return hasErrorCode(err, ErrorCode.CaptureAlreadyRunning);
}

export function isCaptureNotRunning(err: unknown): err is RpcError {
  return hasErrorCode(err, ErrorCode.CaptureNotRunning);
}

export function isFirewallApplyFailed(err: unknown): err is RpcError {
  return hasErrorCode(err, ErrorCode.FirewallApplyFailed);
}

export function isTrustStoreFailed(err: unknown): err is RpcError {
  return hasErrorCode(err, ErrorCode.TrustStoreFailed);
}

export function isExchangeNotFound(err: unknown): err is RpcError {
  return hasErrorCode(err, ErrorCode.ExchangeNotFound);
}

export function isCallTimeout(err: unknown): err is CallTimeoutError {
  return err instanceof CallTimeoutError;
}

export function isConnectionClosed(err: unknown): err is ConnectionClosedError {
  return err instanceof ConnectionClosedError;
}

/** The hint for an access-denied error, whether the helper sent it or closed on us. */
export function accessDeniedHint(): string {
  return allowUidHint();
}
