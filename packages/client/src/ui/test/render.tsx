/**
 * ink-testing-library-style rendering for tproxy-ui tests, with what that library lacks: a chosen
 * terminal size (columns AND rows), resizing, and helpers that wait for the screen to change rather
 * than sleep (`waitForContent`, `sendInputAndWaitForChange`). Frames are Ink's debug-mode output
 * (the whole screen per render); `screen()` is the last frame with colours removed. Test-only.
 */
// @jsxRuntime automatic (for tsx, which compiles with the root tsconfig: it has no "jsx" setting)
import { EventEmitter } from 'node:events';
import { render as inkRender } from 'ink';
import type { ReactElement } from 'react';

class FakeStdout extends EventEmitter {
  readonly frames: string[] = [];
  constructor(
    public columns: number,
    public rows: number,
  ) {
    super();
  }
  write = (frame: string): boolean => {
    this.frames.push(frame);
    return true;
  };
  lastFrame = (): string => this.frames[this.frames.length - 1] ?? '';
}

class FakeStdin extends EventEmitter {
  isTTY = true;
  private data: string | null = null;
  write = (data: string) => {
    this.data = data;
    this.emit('readable');
    this.emit('data', data);
  };
  read = () => {
    const { data } = this;
    this.data = null;
    return data;
  };
  setEncoding() {}
  setRawMode() {}
  resume() {}
  pause() {}
  ref() {}
  unref() {}
}

/** SGR sequences (colours, bold…) that Ink itself writes; anything else in a frame is a bug. */
// eslint-disable-next-line no-control-regex -- matching escape sequences is the point
const SGR = /\x1b\[[0-9;]*m/g;

export function stripSgr(text: string): string {
  return text.replace(SGR, '');
}

export interface Rendered {
  readonly stdin: FakeStdin;
  readonly stdout: FakeStdout;
  /** The last frame, colours removed. */
  screen(): string;
  /** The last frame as written, colours included. */
  rawFrame(): string;
  /** Resolves once the screen satisfies `want` (substring, regex or predicate); fails after `timeoutMs` with the screen. */
  waitForContent(want: string | RegExp | ((screen: string) => boolean), timeoutMs?: number): Promise<string>;
  /** Types `input` and resolves with the first screen that differs from the one before it. */
  sendInputAndWaitForChange(input: string, timeoutMs?: number): Promise<string>;
  /** Resolves when the app exits (useApp().exit(), unmount). */
  waitUntilExit(): Promise<unknown>;
  /** Changes the terminal size and emits 'resize'. */
  resize(columns: number, rows: number): void;
  unmount(): void;
}

const POLL_MS = 5;

export function render(tree: ReactElement, size: { columns?: number; rows?: number } = {}): Rendered {
  const stdout = new FakeStdout(size.columns ?? 100, size.rows ?? 30);
  const stdin = new FakeStdin();
  const instance = inkRender(tree, {
    stdout: stdout as unknown as NodeJS.WriteStream,
    stderr: new FakeStdout(100, 30) as unknown as NodeJS.WriteStream,
    stdin: stdin as unknown as NodeJS.ReadStream,
    debug: true,
    exitOnCtrlC: false,
    patchConsole: false,
  });
  const screen = () => stripSgr(stdout.lastFrame());
  const matches = (want: string | RegExp | ((s: string) => boolean), s: string) =>
    typeof want === 'string' ? s.includes(want) : want instanceof RegExp ? want.test(s) : want(s);

  const waitFor = async (check: (s: string) => boolean, what: string, timeoutMs: number): Promise<string> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = screen();
      if (check(s)) return s;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; the screen was:\n${s}`);
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  };

  return {
    stdin,
    stdout,
    screen,
    rawFrame: () => stdout.lastFrame(),
    waitForContent: (want, timeoutMs = 3000) => waitFor((s) => matches(want, s), String(want), timeoutMs),
    async sendInputAndWaitForChange(input, timeoutMs = 3000) {
      const before = stdout.frames.length;
      const beforeScreen = screen();
      stdin.write(input);
      return waitFor((s) => stdout.frames.length > before && s !== beforeScreen, `the screen to change after ${JSON.stringify(input)}`, timeoutMs);
    },
    waitUntilExit: () => instance.waitUntilExit(),
    resize(columns, rows) {
      stdout.columns = columns;
      stdout.rows = rows;
      stdout.emit('resize');
    },
    unmount() {
      instance.unmount();
      instance.cleanup();
    },
  };
}

/** Key sequences as a terminal sends them. */
export const KEY = {
  up: '\x1b[A',
  down: '\x1b[B',
  pageUp: '\x1b[5~',
  pageDown: '\x1b[6~',
  home: '\x1b[H',
  end: '\x1b[F',
  enter: '\r',
  escape: '\x1b',
  tab: '\t',
  backspace: '\x7f',
  ctrlC: '\x03',
} as const;
