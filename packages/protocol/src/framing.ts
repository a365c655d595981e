/**
 * Newline-delimited JSON framing: one JSON-RPC message per line, both directions. The decoder works
 * on bytes so a multi-byte character split across chunks is never corrupted, and it refuses a line
 * longer than its limit without buffering it, so a peer cannot grow our memory by never sending '\n'.
 */

/** What one chunk produced, in wire order: complete lines, and a marker where a line was too long. */
export type Frame = { kind: 'line'; line: string } | { kind: 'oversize'; limit: number };

const NEWLINE = 0x0a;
const CR = 0x0d;

export class LineDecoder {
  private parts: Buffer[] = [];
  private pending = 0;
  /** After an oversize line: drop bytes until the next newline, then resume. */
  private discarding = false;

  constructor(readonly maxLineBytes: number) {}

  /**
   * Feed a chunk; returns the frames it completed. A line is returned without its '\n' or a
   * trailing '\r'; empty lines are skipped. An oversize line yields one `oversize` frame as soon as
   * it crosses the limit, and its remaining bytes are dropped up to the next newline.
   */
  push(chunk: Buffer): Frame[] {
    const frames: Frame[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(NEWLINE, start);
      if (nl === -1) break;
      if (this.discarding) {
        this.discarding = false;
      } else if (this.pending + (nl - start) > this.maxLineBytes) {
        frames.push({ kind: 'oversize', limit: this.maxLineBytes });
      } else {
        this.parts.push(chunk.subarray(start, nl));
        const line = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts);
        const end = line.length > 0 && line[line.length - 1] === CR ? line.length - 1 : line.length;
        if (end > 0) frames.push({ kind: 'line', line: line.toString('utf8', 0, end) });
      }
      this.parts = [];
      this.pending = 0;
      start = nl + 1;
    }
    if (start < chunk.length && !this.discarding) {
      const rest = chunk.length - start;
      if (this.pending + rest > this.maxLineBytes) {
        this.parts = [];
        this.pending = 0;
        this.discarding = true;
        frames.push({ kind: 'oversize', limit: this.maxLineBytes });
      } else {
        // Copy: the caller's chunk may be a pooled buffer that Node reuses.
        this.parts.push(Buffer.from(chunk.subarray(start)));
        this.pending += rest;
      }
    }
    return frames;
  }

  /** Bytes of an unfinished line currently held. */
  get buffered(): number {
    return this.pending;
  }
}

/** One message as a line. JSON.stringify never emits a raw newline, so the frame is unambiguous. */
export function encode(message: unknown): string {
  return `${JSON.stringify(message)}\n`;
}
