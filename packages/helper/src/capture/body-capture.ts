/**
 * The captured copy of one body: every chunk is counted, only the first `limit` bytes are kept.
 * Chunks are referenced, not copied, until the limit is reached; the chunk that crosses it is
 * sliced (a view, no copy). The engine keeps streaming regardless: capture never slows the wire.
 */
import type { BodyInfo } from '@tproxy/protocol';

export class BodyCapture {
  private chunks: Buffer[] = [];
  private kept = 0;
  private total = 0;

  /**
   * Sees every chunk, also past the limit: the SSE capture (capture/sse.ts) parses the whole stream
   * through it, whichever engine (h1, h2) feeds the body.
   */
  tap: ((chunk: Buffer) => void) | undefined;

  constructor(private readonly limit: number) {}

  add(chunk: Buffer): void {
    this.total += chunk.length;
    const room = this.limit - this.kept;
    if (room > 0) {
      // Copy the kept part: the stream may hand us a slice of a larger pooled allocation, and holding
      // the view would pin that whole allocation for as long as the exchange stays in the buffer.
      const part = Buffer.from(chunk.length <= room ? chunk : chunk.subarray(0, room));
      this.chunks.push(part);
      this.kept += part.length;
    }
    // Last: the tap may take a snapshot, which must count this chunk as captured already.
    this.tap?.(chunk);
  }

  get size(): number {
    return this.total;
  }

  get captured(): number {
    return this.kept;
  }

  info(): BodyInfo {
    return { size: this.total, captured: this.kept, truncated: this.total > this.kept };
  }

  /** The captured bytes as one buffer; concatenated once and then cached. */
  bytes(): Buffer {
    if (this.chunks.length !== 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!;
  }
}
