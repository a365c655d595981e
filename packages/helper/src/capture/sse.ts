/**
 * Server-sent events, extracted from a `text/event-stream` response as its bytes pass through the
 * relay. `SseParser` is the incremental parser of the HTML Living Standard ("Parsing an event
 * stream"): it takes the bytes in whatever pieces TCP and TLS produced (a UTF-8 sequence, a CRLF or a
 * field name may be split anywhere), handles CRLF, CR and LF line ends, comments, multi-line data and
 * a leading BOM, and never holds more than one capped event. `SseCapture` applies the capture's
 * caps (events kept, data bytes kept) and builds the wire shapes. Pure: no I/O, no timers.
 */
import type { SseEvent, SseInfo } from '@tproxy/protocol';

/** An event as the parser completed it, before numbering and timing. */
export interface ParsedSseEvent {
  event?: string;
  id?: string;
  data: string;
  retry?: number;
  /** A field of this event was longer than the parser keeps and was cut. */
  truncated?: boolean;
}

export interface SseLimits {
  /** Most events kept; later ones are counted, and shown in the summary's newest events, only. */
  maxEvents: number;
  /** Most characters of event data kept over all kept events. */
  maxDataChars: number;
  /** Longest field value (and so `data`) the parser holds for one event; the rest is skipped. */
  maxEventChars: number;
}

/** Newest events in the summary, and the preview length of their data (see SseInfoSchema). */
export const SSE_SUMMARY_EVENTS = 8;
export const SSE_SUMMARY_DATA_CHARS = 256;

/** Defaults for a body capture limit of `bodyCaptureLimit` bytes: events cost about what the body does. */
export function sseLimitsFor(bodyCaptureLimit: number): SseLimits {
  const chars = Math.max(4096, bodyCaptureLimit);
  return { maxEvents: 1000, maxDataChars: chars, maxEventChars: chars };
}

const LINE_END = /[\r\n]/g;

export class SseParser {
  private readonly decoder = new TextDecoder('utf-8'); // strips a leading BOM, replaces bad bytes with U+FFFD
  /** The previous piece ended in CR: an LF starting the next one belongs to the same line end. */
  private afterCr = false;
  private line: string[] = [];
  private lineChars = 0;
  private lineCut = false;
  private data: string[] = [];
  private dataChars = 0;
  private event: string | undefined;
  private id: string | undefined;
  private retry: number | undefined;
  private hasField = false;
  private cut = false;

  /** A field line is cut here; the field name and separator fit in the slack. */
  private readonly maxLineChars: number;

  constructor(private readonly maxEventChars: number) {
    this.maxLineChars = maxEventChars + 16;
  }

  /** Feeds the next bytes; returns the events they completed, in order. */
  push(chunk: Uint8Array): ParsedSseEvent[] {
    return this.feed(this.decoder.decode(chunk, { stream: true }));
  }

  /**
   * The stream ended. As the standard says, an event not ended by a blank line is discarded; a final
   * line without a line end still counts as a line of that discarded event, so nothing is returned.
   */
  end(): ParsedSseEvent[] {
    this.feed(this.decoder.decode());
    return [];
  }

  private feed(text: string): ParsedSseEvent[] {
    const out: ParsedSseEvent[] = [];
    if (text.length === 0) return out;
    let i = 0;
    if (this.afterCr && text.charCodeAt(0) === 10) i = 1;
    this.afterCr = false;
    while (i < text.length) {
      LINE_END.lastIndex = i;
      const m = LINE_END.exec(text);
      if (!m) {
        this.append(text.slice(i));
        break;
      }
      const j = m.index;
      this.append(text.slice(i, j));
      this.endLine(out);
      if (text.charCodeAt(j) === 13) {
        if (j + 1 === text.length) this.afterCr = true;
        i = text.charCodeAt(j + 1) === 10 ? j + 2 : j + 1;
      } else {
        i = j + 1;
      }
    }
    return out;
  }

  private append(piece: string): void {
    if (piece.length === 0 || this.lineCut) return;
    const room = this.maxLineChars - this.lineChars;
    if (piece.length > room) {
      this.line.push(piece.slice(0, room));
      this.lineChars += room;
      this.lineCut = true;
    } else {
      this.line.push(piece);
      this.lineChars += piece.length;
    }
  }

  private endLine(out: ParsedSseEvent[]): void {
    const line = this.line.length === 1 ? this.line[0]! : this.line.join('');
    const cut = this.lineCut;
    this.line = [];
    this.lineChars = 0;
    this.lineCut = false;
    if (line === '') {
      this.dispatch(out);
      return;
    }
    if (line.charCodeAt(0) === 58) return; // ':' starts a comment (keep-alives are usually these)
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    if (cut) this.cut = true;
    switch (field) {
      case 'data':
        this.addData(value);
        break;
      case 'event':
        this.event = value;
        break;
      case 'id':
        if (value.includes('\0')) return; // the standard ignores such an id
        this.id = value;
        break;
      case 'retry':
        if (!/^[0-9]+$/.test(value)) return;
        this.retry = Number(value);
        break;
      default:
        return; // unknown fields are ignored, and do not make a block an event
    }
    this.hasField = true;
  }

  private addData(value: string): void {
    // Lines after the first are joined by \n, which counts towards the cap like any character.
    const sep = this.data.length > 0 ? 1 : 0;
    const room = this.maxEventChars - this.dataChars - sep;
    if (room < 0 || (room === 0 && value.length > 0)) {
      this.cut = true;
      return;
    }
    const kept = value.length > room ? value.slice(0, room) : value;
    if (kept.length < value.length) this.cut = true;
    this.data.push(kept);
    this.dataChars += kept.length + sep;
  }

  private dispatch(out: ParsedSseEvent[]): void {
    if (this.hasField) {
      out.push({
        data: this.data.join('\n'),
        ...(this.event !== undefined ? { event: this.event } : {}),
        ...(this.id !== undefined ? { id: this.id } : {}),
        ...(this.retry !== undefined ? { retry: this.retry } : {}),
        ...(this.cut ? { truncated: true } : {}),
      });
    }
    this.data = [];
    this.dataChars = 0;
    this.event = undefined;
    this.id = undefined;
    this.retry = undefined;
    this.hasField = false;
    this.cut = false;
  }
}

/** The capture of one stream's events: the first ones kept within the caps, all of them counted. */
export class SseCapture {
  private readonly parser: SseParser;
  private readonly kept: SseEvent[] = [];
  private readonly recent: SseEvent[] = [];
  private keptChars = 0;
  private count = 0;
  private truncated = false;

  constructor(private readonly limits: SseLimits) {
    this.parser = new SseParser(limits.maxEventChars);
  }

  /** Feeds the next bytes, which arrived at offset `t` (ms); returns how many events they completed. */
  push(chunk: Uint8Array, t: number): number {
    const events = this.parser.push(chunk);
    for (const e of events) this.record(e, t);
    return events.length;
  }

  end(): void {
    this.parser.end();
  }

  private record(parsed: ParsedSseEvent, t: number): void {
    const ev: SseEvent = { seq: this.count++, t, ...parsed };
    if (ev.truncated) this.truncated = true;
    const chars = ev.data.length + (ev.event?.length ?? 0) + (ev.id?.length ?? 0);
    if (this.kept.length < this.limits.maxEvents && this.keptChars + chars <= this.limits.maxDataChars) {
      this.kept.push(ev);
      this.keptChars += chars;
    } else {
      this.truncated = true;
    }
    this.recent.push(preview(ev));
    if (this.recent.length > SSE_SUMMARY_EVENTS) this.recent.shift();
  }

  /** Characters held, for the buffer's byte bound (the summary ring is small and bounded). */
  get approxChars(): number {
    return this.keptChars + this.kept.length * 32;
  }

  /** The summary: counts and the newest events, previewed. A fresh copy. */
  info(): SseInfo {
    return { count: this.count, captured: this.kept.length, truncated: this.truncated, events: this.recent.map((e) => ({ ...e })) };
  }

  /** Every kept event, oldest first. A fresh copy. */
  events(): SseEvent[] {
    return this.kept.map((e) => ({ ...e }));
  }
}

function preview(ev: SseEvent): SseEvent {
  if (ev.data.length <= SSE_SUMMARY_DATA_CHARS) return { ...ev };
  return { ...ev, data: ev.data.slice(0, SSE_SUMMARY_DATA_CHARS), truncated: true };
}

/** Whether a Content-Type names an event stream (`text/event-stream`, any parameters, any case). */
export function isEventStream(contentType: string | undefined): boolean {
  return contentType !== undefined && contentType.split(';')[0]!.trim().toLowerCase() === 'text/event-stream';
}
