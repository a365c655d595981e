/**
 * RFC 6455 framing, read from a copy of a relayed WebSocket stream: the relay forwards every byte
 * untouched and feeds the same chunks here, so a frame we cannot parse never changes what the
 * peers see. The parser counts messages and bytes per direction and keeps the text of text
 * messages up to a byte budget. Memory is bounded whatever the peers send: a frame header is at
 * most 14 bytes, payload is looked at byte by byte and only kept within the budget, and the list of
 * recorded messages has a fixed cap. Pure: no sockets, no timers.
 */
import type { WebSocketDirection, WebSocketInfo, WebSocketMessage } from '@tproxy/protocol';

/** Messages (data and control) recorded per connection; the counters go on past it. */
export const WS_MESSAGE_RECORD_CAP = 200;

const OP_CONTINUATION = 0x0;
const OP_TEXT = 0x1;
const OP_BINARY = 0x2;
const OP_CLOSE = 0x8;

/** Called when a frame completes a message (data) or is a control frame. */
type Sink = (message: WebSocketMessage) => void;

interface FrameHead {
  fin: boolean;
  rsv1: boolean;
  opcode: number;
  mask: Buffer | undefined;
  length: number;
}

/**
 * One direction's frame parser. `push` takes raw stream bytes in any chunking; after a protocol
 * violation (garbage, a reserved opcode, an oversized control frame...) it stops parsing and keeps
 * only the byte count: the peers will close the connection themselves.
 */
export class WsFrameParser {
  private head = Buffer.alloc(14);
  private headLen = 0;
  private frame: FrameHead | undefined;
  /** Payload bytes of the current frame already seen. */
  private seen = 0;
  /** The data message being assembled across continuation frames. */
  private message: { opcode: number; size: number; compressed: boolean; kept: Buffer[]; keptLen: number; truncated: boolean } | undefined;
  /** Payload of the current control frame (at most 125 bytes by the RFC). */
  private control: Buffer[] = [];
  /** Bytes seen in this direction, headers included. */
  bytes = 0;
  /** The first protocol violation, if any; parsing stopped there. */
  error: string | undefined;

  constructor(
    private readonly dir: WebSocketDirection,
    /** Shared budget of text bytes to keep; `take(n)` returns how many of n may be kept. */
    private readonly budget: { take(n: number): number },
    private readonly sink: Sink,
    private readonly now: () => number = Date.now,
  ) {}

  push(chunk: Buffer): void {
    this.bytes += chunk.length;
    let i = 0;
    while (i < chunk.length && !this.error) {
      if (!this.frame) {
        i = this.readHead(chunk, i);
        continue;
      }
      const take = Math.min(this.frame.length - this.seen, chunk.length - i);
      this.payload(chunk.subarray(i, i + take));
      i += take;
      this.seen += take;
      if (this.seen === this.frame.length) this.endFrame();
    }
  }

  /** Copies header bytes until the header is complete; returns the new read position. */
  private readHead(chunk: Buffer, start: number): number {
    let i = start;
    while (i < chunk.length) {
      this.head[this.headLen++] = chunk[i++]!;
      const need = this.headSize();
      if (need !== undefined && this.headLen === need) {
        this.startFrame();
        return i;
      }
    }
    return i;
  }

  /** The full header size once the first two bytes are known. */
  private headSize(): number | undefined {
    if (this.headLen < 2) return undefined;
    const len7 = this.head[1]! & 0x7f;
    const masked = (this.head[1]! & 0x80) !== 0;
    return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (masked ? 4 : 0);
  }

  private startFrame(): void {
    const b0 = this.head[0]!;
    const b1 = this.head[1]!;
    const fin = (b0 & 0x80) !== 0;
    const rsv1 = (b0 & 0x40) !== 0;
    const opcode = b0 & 0x0f;
    const len7 = b1 & 0x7f;
    let off = 2;
    let length = len7;
    if (len7 === 126) {
      length = this.head.readUInt16BE(2);
      off = 4;
    } else if (len7 === 127) {
      const big = this.head.readBigUInt64BE(2);
      // RFC 6455 §5.2: the most significant bit must be 0; past 2^53 we cannot count exactly anyway.
      if (big > BigInt(Number.MAX_SAFE_INTEGER)) return this.fail(`frame length ${big} is out of range`);
      length = Number(big);
      off = 10;
    }
    const mask = (b1 & 0x80) !== 0 ? Buffer.from(this.head.subarray(off, off + 4)) : undefined;
    this.headLen = 0;
    if ((b0 & 0x30) !== 0) return this.fail('reserved bits RSV2/RSV3 set without a negotiated extension');
    if (opcode >= 0x8) {
      if (opcode > 0xa) return this.fail(`reserved control opcode ${opcode}`);
      if (!fin) return this.fail('fragmented control frame');
      if (length > 125) return this.fail(`control frame payload of ${length} bytes (at most 125)`);
    } else if (opcode === OP_CONTINUATION) {
      if (!this.message) return this.fail('continuation frame without a message to continue');
    } else if (opcode === OP_TEXT || opcode === OP_BINARY) {
      if (this.message) return this.fail('new data frame before the fragmented message ended');
      this.message = { opcode, size: 0, compressed: rsv1, kept: [], keptLen: 0, truncated: false };
    } else return this.fail(`reserved data opcode ${opcode}`);
    this.frame = { fin, rsv1, opcode, mask, length };
    this.seen = 0;
    if (length === 0) this.endFrame();
  }

  private payload(part: Buffer): void {
    const f = this.frame!;
    if (f.opcode >= 0x8) {
      this.control.push(this.unmask(part, f.mask, this.seen));
      return;
    }
    const m = this.message!;
    m.size += part.length;
    // Only uncompressed text is kept: permessage-deflate text would need an inflater per connection.
    if (m.opcode !== OP_TEXT || m.compressed) return;
    const n = this.budget.take(part.length);
    if (n > 0) {
      m.kept.push(this.unmask(part.subarray(0, n), f.mask, this.seen));
      m.keptLen += n;
    }
    if (n < part.length) m.truncated = true;
  }

  /** A copy of `part` unmasked, where `pos` is its offset in the frame payload. */
  private unmask(part: Buffer, mask: Buffer | undefined, pos: number): Buffer {
    const out = Buffer.from(part);
    if (mask) for (let j = 0; j < out.length; j++) out[j]! ^= mask[(pos + j) & 3]!;
    return out;
  }

  private endFrame(): void {
    const f = this.frame!;
    this.frame = undefined;
    if (f.opcode >= 0x8) {
      const payload = Buffer.concat(this.control);
      this.control = [];
      const msg: WebSocketMessage = { dir: this.dir, time: this.now(), opcode: f.opcode, size: payload.length };
      if (f.opcode === OP_CLOSE && payload.length >= 2) {
        msg.closeCode = payload.readUInt16BE(0);
        // Reasons are at most 123 bytes: short enough to keep always.
        if (payload.length > 2) msg.text = payload.subarray(2).toString('utf8');
      }
      this.sink(msg);
      return;
    }
    if (!f.fin) return;
    const m = this.message!;
    this.message = undefined;
    const msg: WebSocketMessage = { dir: this.dir, time: this.now(), opcode: m.opcode, size: m.size };
    if (m.compressed) msg.compressed = true;
    if (m.opcode === OP_TEXT && !m.compressed && (m.keptLen > 0 || m.size === 0)) msg.text = Buffer.concat(m.kept).toString('utf8');
    if (m.truncated) msg.truncated = true;
    this.sink(msg);
  }

  private fail(reason: string): void {
    this.error = reason;
    this.frame = undefined;
    this.message = undefined;
    this.control = [];
  }
}

/**
 * Both directions of one WebSocket connection and what the capture shows of it. `onChange` is
 * called after every recorded message, so the owner can announce an update (it throttles).
 */
export class WebSocketTracker {
  readonly up: WsFrameParser;
  readonly down: WsFrameParser;
  private messagesUp = 0;
  private messagesDown = 0;
  private closeCode: number | undefined;
  private readonly messages: WebSocketMessage[] = [];
  private textLeft: number;
  /** Text bytes kept so far (for the store's byte accounting). */
  textBytes = 0;

  constructor(textBudget: number, onChange: () => void = () => {}, now: () => number = Date.now) {
    this.textLeft = textBudget;
    const budget = {
      take: (n: number) => {
        const k = Math.min(n, this.textLeft);
        this.textLeft -= k;
        this.textBytes += k;
        return k;
      },
    };
    const sink = (m: WebSocketMessage) => {
      if (m.opcode === OP_TEXT || m.opcode === OP_BINARY) {
        if (m.dir === 'up') this.messagesUp++;
        else this.messagesDown++;
      }
      if (m.opcode === OP_CLOSE && m.closeCode !== undefined) this.closeCode ??= m.closeCode;
      if (this.messages.length < WS_MESSAGE_RECORD_CAP) this.messages.push(m);
      onChange();
    };
    this.up = new WsFrameParser('up', budget, sink, now);
    this.down = new WsFrameParser('down', budget, sink, now);
  }

  /** Memory held, roughly, for the store's byte bound. */
  approxBytes(): number {
    return this.textBytes + 96 * this.messages.length;
  }

  /** A deep copy for a snapshot. */
  info(): WebSocketInfo {
    const error = this.up.error ? `client: ${this.up.error}` : this.down.error ? `server: ${this.down.error}` : undefined;
    return {
      messagesUp: this.messagesUp,
      messagesDown: this.messagesDown,
      bytesUp: this.up.bytes,
      bytesDown: this.down.bytes,
      ...(this.closeCode !== undefined ? { closeCode: this.closeCode } : {}),
      ...(error ? { error } : {}),
      messages: this.messages.map((m) => ({ ...m })),
    };
  }
}
