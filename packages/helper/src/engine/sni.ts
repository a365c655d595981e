/**
 * Decides what a client's SNI lets us do, before any certificate is minted from it. The result is
 * the one canonical spelling (lower case, no root dot, IDN as A-labels, IPs in normal form) or a
 * refusal with its reason; the engine then passes the connection through untouched instead of
 * intercepting it. A client can never make us mint a wildcard, or a name other than the one it
 * sent: a Unicode label is accepted only if converting it to an A-label and back gives the label
 * the client sent (so no IDNA mapping can turn e.g. U+212A KELVIN SIGN into "k").
 *
 * Names with `_` (seen in real hosts, e.g. `my_host.example.com` in private DNS) are passed
 * through, not intercepted: CA/B Forum ballot SC12 forbids them in certificates and browsers
 * reject such leaves, so minting one would break a connection that works untouched.
 */
import net from 'node:net';
import { domainToASCII, domainToUnicode } from 'node:url';

/** RFC 1035 §2.3.4 (253 without the root dot). */
export const MAX_NAME_LENGTH = 253;
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

export type SniDecision =
  | { ok: true; kind: 'dns' | 'ip'; name: string }
  /**
   * `underscore`: a name with `_` (passed through by policy); `invalid`: not a host name we will
   * mint for (wildcard, bad characters, bad length, undecodable IDN).
   */
  | { ok: false; code: 'underscore' | 'invalid'; reason: string };

function refuse(code: 'underscore' | 'invalid', reason: string): SniDecision {
  return { ok: false, code, reason };
}

/** Lower-cases ASCII letters only (String#toLowerCase also maps some non-ASCII to ASCII). */
function asciiLower(s: string): string {
  return s.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

/** Canonicalises the SNI a client sent, or says why it is refused. */
export function canonicalSni(input: string): SniDecision {
  if (input.length === 0) return refuse('invalid', 'empty name');
  if (input.length > MAX_NAME_LENGTH + 1) return refuse('invalid', `longer than ${MAX_NAME_LENGTH} characters`);
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x20\x7f]/.test(input)) return refuse('invalid', 'contains control characters or spaces');
  if (input.includes('*')) return refuse('invalid', 'wildcards are never minted');
  let name = asciiLower(input);
  if (name.endsWith('.')) name = name.slice(0, -1);
  if (name.length === 0 || name.endsWith('.')) return refuse('invalid', 'empty label');

  // RFC 6066 §3 forbids IP literals in SNI, yet some clients send them: the leaf gets an IP SAN.
  const bare = name.startsWith('[') && name.endsWith(']') ? name.slice(1, -1) : name;
  if (net.isIP(bare) !== 0) return { ok: true, kind: 'ip', name: normalIp(bare) };

  if (name.includes('_')) return refuse('underscore', 'contains "_", which certificates may not carry (passed through)');

  const labels = name.split('.');
  const out: string[] = [];
  for (const label of labels) {
    if (label.length === 0) return refuse('invalid', 'empty label');
    if (/^[\x21-\x7e]+$/.test(label)) {
      // ASCII: must already be LDH; an A-label must also decode.
      if (label.startsWith('xn--') && domainToASCII(label) !== label) return refuse('invalid', `"${label}" is not a valid A-label`);
      out.push(label);
      continue;
    }
    const ascii = domainToASCII(label);
    if (!ascii || domainToUnicode(ascii) !== label.normalize('NFC') || label !== label.normalize('NFC')) {
      return refuse('invalid', `"${label}" is not a valid IDN label in its canonical form`);
    }
    out.push(ascii);
  }
  const canonical = out.join('.');
  if (canonical.length > MAX_NAME_LENGTH) return refuse('invalid', `longer than ${MAX_NAME_LENGTH} characters`);
  for (const label of out) {
    if (!LABEL.test(label)) return refuse('invalid', 'labels must be 1–63 letters, digits or inner hyphens');
  }
  // An all-numeric last label would make the name look like an IPv4 address (WHATWG host parsing).
  if (/^[0-9]+$/.test(out[out.length - 1]!)) return refuse('invalid', 'the last label is numeric');
  return { ok: true, kind: 'dns', name: canonical };
}

/** IPv4 as is; IPv6 compressed and lower case via WHATWG URL; v4-mapped v6 as IPv4. */
function normalIp(ip: string): string {
  if (net.isIPv4(ip)) return ip;
  const host = new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(host);
  if (mapped) {
    const hi = parseInt(mapped[1]!, 16);
    const lo = parseInt(mapped[2]!, 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return host;
}
