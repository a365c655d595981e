/**
 * The capture start form's text → `capture.start` params, and which form field a helper error
 * names. Only syntax is judged here (a port list must be numbers); ranges, duplicates and the rest
 * are the helper's to check, and its message names the field (`ports[0]: …`).
 */

export type FormField = 'ports' | 'ipv6';

export interface StartOptions {
  readonly ports: readonly number[];
  readonly ipv6: boolean;
}

/** `443, 8443` → [443, 8443]; an error message naming the field when a piece is not a number. */
export function parsePorts(text: string): { ports: number[] } | { error: string } {
  const pieces = text.split(/[\s,]+/).filter((p) => p !== '');
  if (pieces.length === 0) return { error: 'ports: name at least one port' };
  const ports: number[] = [];
  for (const piece of pieces) {
    if (!/^\d+$/.test(piece)) return { error: `ports: '${piece}' is not a port number` };
    ports.push(Number(piece));
  }
  return { ports };
}

/** The form field a helper message is about: messages start with the field path (`ports[1]: …`). */
export function fieldOfError(message: string): FormField | undefined {
  const m = /^(ports|ipv6)\b/.exec(message);
  return m ? (m[1] as FormField) : undefined;
}
