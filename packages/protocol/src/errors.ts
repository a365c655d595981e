/**
 * The one error vocabulary of the protocol: JSON-RPC's standard codes plus an application range,
 * each with a stable string in `data.code` so scripts can branch on it without parsing messages.
 * The helper maps domain errors to these in one place; clients rebuild them with `RpcError.fromWire`.
 */

export enum ErrorCode {
  ParseError = -32700,
  InvalidRequest = -32600,
  MethodNotFound = -32601,
  InvalidParams = -32602,
  InternalError = -32603,
  /** The caller's uid is not root and not an allowed operator uid. */
  AccessDenied = -32001,
  /** Capture cannot run on this host (no addon, no CAP_NET_ADMIN, missing nft); `message` says why. */
  CaptureUnavailable = -32010,
  /** `capture.start` while a capture is already running. */
  CaptureAlreadyRunning = -32011,
  /** An operation that needs a running capture, and none runs. */
  CaptureNotRunning = -32012,
  /** Firewall rules or routes could not be applied; everything was rolled back. */
  FirewallApplyFailed = -32013,
  /** The CA could not be installed into or removed from the OS trust store. */
  TrustStoreFailed = -32014,
  /** A rule, fwmark or route table we would use is already used by someone else; nothing was applied. */
  FirewallCollision = -32015,
  /** The requested capture scope is not allowed for this caller (a non-root operator naming other uids). */
  ScopeNotAllowed = -32016,
  /** The requested capture scope cannot be used on this host (e.g. no such cgroup, no cgroup v2). */
  ScopeUnavailable = -32017,
  /** The operation needs capture to be stopped first. */
  CaptureRunning = -32018,
  /** The request took longer than the helper allows and was abandoned. */
  RequestTimeout = -32019,
  /** No exchange with that id in the buffer (never existed or already evicted). */
  ExchangeNotFound = -32020,
}

/** Stable string form of each code, sent as `error.data.code`. */
export const ERROR_CODE_NAMES: Readonly<Record<ErrorCode, string>> = {
  [ErrorCode.ParseError]: 'parse-error',
  [ErrorCode.InvalidRequest]: 'invalid-request',
  [ErrorCode.MethodNotFound]: 'method-not-found',
  [ErrorCode.InvalidParams]: 'invalid-params',
  [ErrorCode.InternalError]: 'internal-error',
  [ErrorCode.AccessDenied]: 'access-denied',
  [ErrorCode.CaptureUnavailable]: 'capture-unavailable',
  [ErrorCode.CaptureAlreadyRunning]: 'capture-already-running',
  [ErrorCode.CaptureNotRunning]: 'capture-not-running',
  [ErrorCode.FirewallApplyFailed]: 'firewall-apply-failed',
  [ErrorCode.TrustStoreFailed]: 'trust-store-failed',
  [ErrorCode.FirewallCollision]: 'firewall-collision',
  [ErrorCode.ScopeNotAllowed]: 'scope-not-allowed',
  [ErrorCode.ScopeUnavailable]: 'scope-unavailable',
  [ErrorCode.CaptureRunning]: 'capture-running',
  [ErrorCode.RequestTimeout]: 'request-timeout',
  [ErrorCode.ExchangeNotFound]: 'exchange-not-found',
};

/** The JSON-RPC `error` member as it travels. */
export interface WireError {
  code: number;
  message: string;
  data?: unknown;
}

export class RpcError extends Error {
  override readonly name = 'RpcError';
  constructor(
    readonly code: ErrorCode | number,
    message: string,
    /** Extra machine-readable detail; `code` (the string name) is always added on the wire. */
    readonly detail: Record<string, unknown> = {},
  ) {
    super(message);
  }

  /** Stable string name of `code`, or `'unknown'` for codes this protocol version does not define. */
  get codeName(): string {
    return ERROR_CODE_NAMES[this.code as ErrorCode] ?? 'unknown';
  }

  toWire(): WireError {
    return { code: this.code, message: this.message, data: { ...this.detail, code: this.codeName } };
  }

  static fromWire(wire: WireError): RpcError {
    const data = typeof wire.data === 'object' && wire.data !== null ? { ...(wire.data as Record<string, unknown>) } : {};
    delete data.code;
    return new RpcError(wire.code, wire.message, data);
  }
}

/** True when `err` is an RpcError with the given code. */
export function hasErrorCode(err: unknown, code: ErrorCode): err is RpcError {
  return err instanceof RpcError && err.code === code;
}
