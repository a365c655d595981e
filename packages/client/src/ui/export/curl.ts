/**
 * A captured request → a curl command line for bash/zsh, pure. Every value is shell-quoted:
 * plain printable text in single quotes, anything with control or non-ASCII bytes as ANSI-C
 * `$'…'` with `\xHH` escapes, so a hostile URL, header or body can neither break out of its argument
 * nor put raw control characters on the terminal when the command is shown. A body containing NUL
 * (which no shell argument can hold) is piped in from `printf` instead. The headers are the captured
 * ones, in which tproxy-helper masked credentials: a comment line says so, and names them.
 */
import type { Exchange } from '@tproxy/protocol';

/** Headers curl derives itself from the URL and body; copying them would conflict (or lie). */
const SKIP_HEADERS = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'proxy-connection', 'te', 'upgrade']);

/** The helper's mask marker (packages/helper capture/mask.ts): `abcd…[masked 40]`. */
const MASKED = /…\[masked \d+\]/;

const SAFE_PRINTABLE = /^[\x20-\x7e]*$/;

/** Bytes of a string as UTF-8, escaped for `$'…'`: backslash, quote and every non-printable byte. */
function ansiC(bytes: Uint8Array): string {
  let out = '';
  for (const b of bytes) {
    if (b === 0x5c) out += '\\\\';
    else if (b === 0x27) out += "\\'";
    else if (b >= 0x20 && b < 0x7f) out += String.fromCharCode(b);
    else out += `\\x${b.toString(16).padStart(2, '0')}`;
  }
  return `$'${out}'`;
}

/**
 * One shell word: `'…'` when printable ASCII, else `$'…'`. No shell argument can hold NUL, so NUL
 * characters are left out (toCurl says so in a comment).
 */
export function shellQuote(value: string): string {
  const v = value.replace(/\0/g, '');
  if (SAFE_PRINTABLE.test(v)) return `'${v.replace(/'/g, "'\\''")}'`;
  return ansiC(new TextEncoder().encode(v));
}

/** Bytes as one `$'…'` word (for bodies, which need not be UTF-8). */
export function shellQuoteBytes(bytes: Uint8Array): string {
  return ansiC(bytes);
}

/** A POSIX printf format writing exactly `bytes` (octal escapes; `%` doubled), for bodies with NUL. */
function printfFormat(bytes: Uint8Array): string {
  let out = '';
  for (const b of bytes) {
    if (b === 0x25) out += '%%';
    else if (b === 0x5c) out += '\\\\';
    else if (b === 0x27) out += "'\\''";
    else if (b >= 0x20 && b < 0x7f) out += String.fromCharCode(b);
    else out += `\\${b.toString(8).padStart(3, '0')}`;
  }
  return `'${out}'`;
}

export interface CurlOptions {
  /** Captured request body (exchanges.get), if any. */
  readonly body?: Uint8Array;
}

export function toCurl(ex: Exchange, options: CurlOptions = {}): string {
  const req = ex.request;
  const body = options.body && options.body.length > 0 ? options.body : undefined;
  const headers = req.headers.filter(([name]) => !SKIP_HEADERS.has(name.toLowerCase()));
  const masked = req.headers.filter(([, value]) => MASKED.test(value)).map(([name]) => name);
  const comments = [
    `# tproxy exchange ${ex.id}: headers as captured; tproxy-helper masks credential values at capture time` +
      (masked.length ? ` (masked here: ${[...new Set(masked)].join(', ')}; put the real values back before running)` : ''),
  ];
  if ([req.method, req.url, ...req.headers.flat()].some((v) => v.includes('\0'))) {
    comments.push('# warning: NUL characters in the URL or headers were left out: a shell argument cannot hold them');
  }
  if (req.body.truncated) comments.push(`# warning: the request body was ${req.body.size} bytes and only the first ${req.body.captured} were captured`);
  const comment = comments.map((c) => c.replace(/[^\x20-\x7e]/g, '?')).join('\n');

  const args: string[] = [];
  const method = req.method.toUpperCase();
  if (method === 'HEAD') args.push('--head');
  else if (!(method === 'GET' && !body) && !(method === 'POST' && body)) args.push(`-X ${shellQuote(req.method)}`);
  args.push(shellQuote(req.url));
  for (const [name, value] of headers) {
    // `-H 'Name:'` would remove the header; `Name;` is curl's spelling of "send it empty".
    args.push(`-H ${shellQuote(value === '' ? `${name};` : `${name}: ${value}`)}`);
  }
  if (headers.some(([n, v]) => n.toLowerCase() === 'accept-encoding' && /gzip|deflate|br/i.test(v))) args.push('--compressed');
  const hasNul = body?.includes(0) ?? false;
  if (body && !hasNul) args.push(`--data-binary ${shellQuoteBytes(body)}`);
  if (body && hasNul) args.push('--data-binary @-');
  const command = `curl ${args.join(' \\\n  ')}`;
  return `${comment}\n${hasNul && body ? `printf ${printfFormat(body)} | ` : ''}${command}\n`;
}
