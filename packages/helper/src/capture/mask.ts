/**
 * Masks secrets in captured headers before they reach the buffer, so a dashboard screenshot or an
 * exported log never carries a usable credential. Only the capture is masked; the wire is untouched.
 * A short prefix stays visible so a user can still tell two tokens apart.
 */
import type { Headers } from '@tproxy/protocol';

/** Headers whose whole value is a credential. */
const SECRET_HEADERS = new Set(['authorization', 'proxy-authorization']);

/**
 * Header names that look like API keys or tokens: x-api-key, api-key, x-auth-token, x-goog-api-key,
 * x-amz-security-token, private-token (GitLab), x-csrf-token, x-secret, x-access-key...
 */
const SECRET_NAME = /(api[-_]?key|token|secret|password|passwd|access[-_]?key|session[-_]?id|signature|credential)/i;

/** Characters of a secret kept visible: enough to tell tokens apart, too few to use one. */
const KEEP = 4;

export function maskSecret(value: string): string {
  const keep = Math.min(KEEP, Math.floor(value.length / 4));
  return `${value.slice(0, keep)}…[masked ${value.length}]`;
}

/** `Bearer abcdef...` keeps the scheme visible: it says what kind of credential it was. */
function maskAuthorization(value: string): string {
  const m = /^(\S+)\s+(.+)$/.exec(value);
  return m ? `${m[1]} ${maskSecret(m[2]!)}` : maskSecret(value);
}

/** `a=1; b=2` keeps cookie names, masks each value. */
function maskCookie(value: string): string {
  return value
    .split(';')
    .map((part) => {
      const eq = part.indexOf('=');
      if (eq === -1) return part;
      return `${part.slice(0, eq + 1)}${maskSecret(part.slice(eq + 1).trim())}`;
    })
    .join(';');
}

/** `name=value; Path=/; HttpOnly` masks only the value; attributes are not secret and help debugging. */
function maskSetCookie(value: string): string {
  const semi = value.indexOf(';');
  const pair = semi === -1 ? value : value.slice(0, semi);
  const attrs = semi === -1 ? '' : value.slice(semi);
  const eq = pair.indexOf('=');
  if (eq === -1) return maskSecret(pair) + attrs;
  return `${pair.slice(0, eq + 1)}${maskSecret(pair.slice(eq + 1))}${attrs}`;
}

export function maskHeaderValue(name: string, value: string): string {
  const lower = name.toLowerCase();
  if (SECRET_HEADERS.has(lower)) return maskAuthorization(value);
  if (lower === 'cookie') return maskCookie(value);
  if (lower === 'set-cookie') return maskSetCookie(value);
  if (SECRET_NAME.test(lower)) return maskSecret(value);
  return value;
}

/** Node's `rawHeaders` (flat [name, value, ...]) → masked pairs in wire order. */
export function maskRawHeaders(raw: readonly string[]): Headers {
  const out: Headers = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    out.push([name, maskHeaderValue(name, raw[i + 1]!)]);
  }
  return out;
}
