/**
 * Classifies failures on the upstream leg into the protocol's fixed error kinds and one-line
 * reasons. The reason is what the intercepted client reads in our 502 body and what the capture
 * records, so it says what failed and where, without stack traces.
 */
import type { ExchangeError } from '@tproxy/protocol';

const CONNECT_CODES: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ETIMEDOUT: 'connection timed out',
  ENETUNREACH: 'network unreachable',
  EHOSTUNREACH: 'host unreachable',
  EADDRNOTAVAIL: 'address not available',
  EPERM: 'connect not permitted (is the helper missing CAP_NET_ADMIN?)',
  EACCES: 'connect not permitted',
};

/** OpenSSL/Node verification codes → plain words. */
const CERT_CODES: Record<string, string> = {
  DEPTH_ZERO_SELF_SIGNED_CERT: 'self-signed certificate',
  SELF_SIGNED_CERT_IN_CHAIN: 'self-signed certificate in chain',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'certificate not issued by a trusted CA',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'certificate issuer is not trusted',
  UNABLE_TO_GET_ISSUER_CERT: 'certificate issuer is not trusted',
  CERT_HAS_EXPIRED: 'certificate has expired',
  CERT_NOT_YET_VALID: 'certificate is not yet valid',
  ERR_TLS_CERT_ALTNAME_INVALID: 'certificate does not match the server name',
  CERT_REVOKED: 'certificate revoked',
  CERT_SIGNATURE_FAILURE: 'certificate signature invalid',
  INVALID_CA: 'invalid CA certificate in chain',
};

export interface Where {
  address: string;
  port: number;
  serverName: string | undefined;
}

function dest(w: Where): string {
  const host = w.address.includes(':') ? `[${w.address}]` : w.address;
  return w.serverName ? `${w.serverName} (${host}:${w.port})` : `${host}:${w.port}`;
}

/** Errors raised before or while obtaining a verified upstream connection. */
export function classifyUpstreamError(err: unknown, where: Where, responseStarted: boolean): ExchangeError {
  const e = err as NodeJS.ErrnoException & { reason?: string };
  const code = typeof e?.code === 'string' ? e.code : undefined;
  const detail = (e?.message ?? String(err)).split('\n')[0]!;
  if (e?.name === 'UpstreamTlsError') {
    // TCP connected; the TLS step failed (e.g. the handshake timed out).
    return { kind: 'upstream-tls', ...(code ? { code } : {}), message: `TLS with ${dest(where)} failed: ${detail}` };
  }
  if (code && CONNECT_CODES[code] && e.syscall !== 'read' && e.syscall !== 'write') {
    return { kind: 'upstream-connect', code, message: `cannot connect to ${dest(where)}: ${CONNECT_CODES[code]} (${code})` };
  }
  if (code && CERT_CODES[code]) {
    // Node's message often just repeats the code's meaning; add it only when it says more (names).
    const words = CERT_CODES[code];
    const extra = detail.toLowerCase() === words.toLowerCase() ? '' : ` (${detail})`;
    return { kind: 'upstream-tls', code, message: `upstream certificate rejected for ${dest(where)}: ${words}${extra}` };
  }
  if (code?.startsWith('ERR_SSL') || code?.startsWith('ERR_TLS')) {
    return { kind: 'upstream-tls', code, message: `TLS with ${dest(where)} failed: ${detail}` };
  }
  if (code?.startsWith('HPE_')) {
    return { kind: 'upstream-protocol', code, message: `invalid HTTP from ${dest(where)}: ${detail}` };
  }
  if (code === 'ECONNRESET' || code === 'EPIPE' || detail === 'socket hang up' || responseStarted) {
    return { kind: 'upstream-aborted', ...(code ? { code } : {}), message: `${dest(where)} closed the connection mid-exchange: ${detail}` };
  }
  return { kind: 'upstream-connect', ...(code ? { code } : {}), message: `upstream ${dest(where)} failed: ${detail}` };
}
