/**
 * Pure header handling for the HTTP/1.1 relay: which headers are hop-by-hop (RFC 9110 §7.6.1) and
 * must not be forwarded, and how the request URL is reconstructed for the capture.
 */

/** Hop-by-hop fields of RFC 9110 §7.6.1 plus the non-standard ones clients still send. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade']);

/**
 * Drops hop-by-hop fields and those the Connection header names. `keepTransferEncoding` keeps a
 * Transfer-Encoding field on the request side: Node's client then re-frames the de-chunked body
 * as chunked itself, and other codings listed before `chunked` (gzip, chunked) stay declared.
 */
export function stripHopByHop(raw: readonly string[], keepTransferEncoding = false): string[] {
  const named = new Set<string>();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === 'connection') {
      for (const token of raw[i + 1]!.split(',')) named.add(token.trim().toLowerCase());
    }
  }
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (name === 'transfer-encoding' && keepTransferEncoding) {
      out.push(raw[i]!, raw[i + 1]!);
      continue;
    }
    if (HOP_BY_HOP.has(name) || named.has(name)) continue;
    out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}

/** Flat raw list → pairs, as Node's `addTrailers` wants them. */
export function rawToPairs(raw: readonly string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i]!, raw[i + 1]!]);
  return out;
}

/** A Host header value we are willing to put in a URL: host[:port], no userinfo, path or spaces. */
const HOST_RE = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/;

/**
 * The absolute URL the client meant. Prefers the Host header (what the client addressed), then the
 * SNI, then the destination address; the port is shown only when not 443.
 */
export function requestUrl(target: string, hostHeader: string | undefined, sni: string | undefined, address: string, port: number): string {
  if (/^https?:\/\//i.test(target)) return target;
  let authority: string;
  if (hostHeader && HOST_RE.test(hostHeader)) authority = hostHeader;
  else {
    const host = sni ?? (address.includes(':') ? `[${address}]` : address);
    authority = port === 443 ? host : `${host}:${port}`;
  }
  return `https://${authority}${target.startsWith('/') ? target : `/${target}`}`;
}
