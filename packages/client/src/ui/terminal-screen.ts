/**
 * The terminal while tproxy-ui runs: alternate screen, hidden cursor, autowrap off, and a painter
 * that rewrites only the lines that changed since the last frame, each at an absolute position,
 * inside one synchronized update (DEC mode 2026; terminals without it ignore the markers).
 *
 * Why not Ink's own output: in Ink 6.8.0 (the last 6.x) the incremental log-update moves the cursor
 * up one line too few whenever a frame ends with a newline (`cursorUp(previousVisible - 1)` from
 * the row below the frame), so every frame lands one row low; and a frame as tall as the terminal
 * takes the path that writes `clearTerminal` on every render, which flickers. So Ink renders in
 * debug mode (one write of the whole frame per render) into this object, which stands in for
 * stdout (size and 'resize' come from the real one) and does the painting. Frames are coalesced to
 * at most one paint per FRAME_MS. It owns no state beyond the last painted lines.
 */
import { EventEmitter } from 'node:events';
import { writeSync } from 'node:fs';

/** DEC private modes (xterm ctlseqs): 1049 alternate screen + saved cursor, 25 cursor, 7 autowrap, 2026 synchronized output. */
const ENTER = '\x1b[?1049h\x1b[?25l\x1b[?7l\x1b[H\x1b[2J';
const LEAVE = '\x1b[?7h\x1b[?25h\x1b[?1049l';
const SYNC_BEGIN = '\x1b[?2026h';
const SYNC_END = '\x1b[?2026l';
/** At most ~30 paints a second: smooth to the eye, cheap for the terminal. */
const FRAME_MS = 33;

export interface TerminalOut {
  readonly columns?: number;
  readonly rows?: number;
  write(chunk: string): unknown;
  on(event: 'resize', listener: () => void): unknown;
  off(event: 'resize', listener: () => void): unknown;
}

/** The escape sequence that repaints `next` over `prev` (both lists of lines), or '' when equal. */
export function paintDiff(prev: readonly string[], next: readonly string[], rows: number): string {
  let out = '';
  const count = Math.min(rows, Math.max(prev.length, next.length));
  for (let i = 0; i < count; i++) {
    const line = next[i];
    if (line === prev[i]) continue;
    // Erase first, then write: an erase after a full-width line would take its last character with it
    // (with autowrap off the cursor stays on the last column).
    out += `\x1b[${i + 1};1H\x1b[2K${line ?? ''}\x1b[0m`;
  }
  return out ? SYNC_BEGIN + out + SYNC_END : '';
}

export class TerminalScreen extends EventEmitter {
  private painted: string[] = [];
  private frame: string[] | undefined;
  private timer: NodeJS.Timeout | undefined;
  private active = false;
  private readonly onResize = () => {
    // Lines may now be wider or taller than the screen: start from a blank one, then repaint.
    this.painted = [];
    this.out.write('\x1b[2J');
    this.emit('resize');
  };

  constructor(
    private readonly out: TerminalOut,
    private readonly fd = 1,
  ) {
    super();
  }

  get columns(): number {
    return this.out.columns || 80;
  }

  get rows(): number {
    return this.out.rows || 24;
  }

  /** Ink reads this; false keeps it from writing synchronized-update markers of its own. */
  readonly isTTY = false;

  start(): void {
    if (this.active) return;
    this.active = true;
    this.out.write(ENTER);
    this.out.on('resize', this.onResize);
    process.once('exit', this.restore);
  }

  /** Ink's frame: the whole screen as text. */
  write = (frame: string): boolean => {
    this.frame = frame.split('\n');
    this.timer ??= setTimeout(() => this.paint(), FRAME_MS);
    return true;
  };

  /** Paints the pending frame now (exit, tests). */
  flush(): void {
    this.paint();
  }

  /** Leaves the alternate screen; synchronous so it also works from an 'exit' handler. Idempotent. */
  restore = (): void => {
    if (!this.active) return;
    this.paint();
    this.active = false;
    this.out.off('resize', this.onResize);
    process.off('exit', this.restore);
    try {
      writeSync(this.fd, LEAVE);
    } catch {
      this.out.write(LEAVE);
    }
  };

  private paint(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.frame || !this.active) return;
    const next = this.frame;
    this.frame = undefined;
    const diff = paintDiff(this.painted, next, this.rows);
    this.painted = next.slice(0, this.rows);
    if (diff) this.out.write(diff);
  }
}
