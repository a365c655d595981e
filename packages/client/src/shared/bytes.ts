/**
 * Looking at captured bytes: is it text, and if not, what does its start look like. Pure; the
 * callers escape decoded text before printing it.
 */

/**
 * Decodes as UTF-8 when the bytes are valid UTF-8 without NUL; otherwise null (binary). Other
 * control characters do not make a body binary: they are shown escaped.
 */
export function decodeText(bytes: Uint8Array): string | null {
  if (bytes.includes(0)) return null;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return null;
  }
}

/** `hexdump -C`-style lines for the first `maxBytes` bytes; the ASCII column shows only printable ASCII. */
export function hexSummary(bytes: Uint8Array, maxBytes = 256): string {
  const lines: string[] = [];
  const shown = bytes.subarray(0, maxBytes);
  for (let off = 0; off < shown.length; off += 16) {
    const row = shown.subarray(off, off + 16);
    const hex = [...row].map((b) => b.toString(16).padStart(2, '0'));
    const left = hex.slice(0, 8).join(' ');
    const right = hex.slice(8).join(' ');
    const ascii = [...row].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
    lines.push(`${off.toString(16).padStart(8, '0')}  ${`${left}  ${right}`.padEnd(48)}  |${ascii}|`);
  }
  if (bytes.length > shown.length) lines.push(`... ${bytes.length - shown.length} more bytes`);
  return lines.join('\n');
}
