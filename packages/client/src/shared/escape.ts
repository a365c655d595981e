/**
 * Terminal safety for untrusted text, shared by tproxyctl and tproxy-ui. Captured exchanges are
 * untrusted input (any site can put bytes in a URL, header or body), so every string that came over
 * the wire goes through `escapeInline` or `escapeMultiline` before it reaches a terminal, and
 * `jsonLine` escapes what JSON.stringify leaves raw. Escaping makes a character visible as `\xNN` /
 * `\uNNNN` instead of dropping it, so what the user sees still says what was captured.
 * This module must stay pure: no I/O, no knowledge of who prints.
 */

/**
 * Characters a terminal may act on: C0 controls (ESC starts cursor/title/clipboard sequences, CR
 * rewrites a line, BS erases), DEL, C1 controls (U+009B is a one-character CSI in some terminals,
 * ECMA-48 §8.3), the bidi overrides/isolates that can make text display in a different order than
 * it is stored (CVE-2021-42574, "Trojan Source"), the bidi marks (LRM, RLM, ALM) that nudge that
 * order, and the Unicode line/paragraph separators that some renderers break lines on.
 */
// eslint-disable-next-line no-control-regex -- matching control characters is this regex's job
const UNSAFE_INLINE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
/** The same, but keeping \t and \n, for multi-line text such as bodies. */
// eslint-disable-next-line no-control-regex -- as above
const UNSAFE_MULTILINE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

function escapeChar(c: string): string {
  const code = c.charCodeAt(0);
  if (c === '\n') return '\\n';
  if (c === '\r') return '\\r';
  if (c === '\t') return '\\t';
  return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/** For one-line fields (URL, header, status text): every control character, \n and \t included, becomes visible. */
export function escapeInline(text: string): string {
  return text.replace(UNSAFE_INLINE, escapeChar);
}

/** For multi-line text: keeps \n and \t, turns CRLF into \n, and makes every other control visible. */
export function escapeMultiline(text: string): string {
  return text.replace(/\r\n/g, '\n').replace(UNSAFE_MULTILINE, escapeChar);
}

/**
 * One JSON document on one line. JSON.stringify escapes C0 controls but leaves DEL, C1 and the
 * bidi controls raw; escaping them too keeps the value identical and the line terminal-safe.
 * Outside strings JSON.stringify emits only ASCII, so the replacement only ever touches string contents.
 */
export function jsonLine(value: unknown): string {
  const text = JSON.stringify(value).replace(/[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => {
    return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
  });
  return `${text}\n`;
}
