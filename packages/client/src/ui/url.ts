/**
 * Splits the absolute URLs the helper records (`https://host[:port]/path?query`) into the parts the
 * list shows and the filter matches. A regex rather than `new URL()`: it runs for every row on every
 * filtered refresh, never throws on a hostile URL, and keeps the path exactly as captured.
 */

export interface UrlParts {
  /** Host as written, port included when there is one (`[::1]:8443`, `api.example.com`). */
  host: string;
  /** Hostname alone, lower-cased, without brackets or port: what `host:` filters match. */
  hostname: string;
  /** Path and query as captured (`/` when empty). */
  path: string;
}

const URL_RE = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)(.*)$/is;

export function splitUrl(url: string): UrlParts {
  const m = URL_RE.exec(url);
  if (!m) return { host: '', hostname: '', path: url };
  const host = m[1]!.replace(/^[^@]*@/, '');
  const bracketed = /^\[([^\]]*)\]/.exec(host);
  const hostname = (bracketed ? bracketed[1]! : host.replace(/:\d*$/, '')).toLowerCase();
  return { host, hostname, path: m[2] || '/' };
}
