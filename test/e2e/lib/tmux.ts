/**
 * Drives a real terminal program the way a person does: tmux runs it in a pane of a fixed size,
 * send-keys types, capture-pane reads the screen. Each session gets its own tmux server (-L with
 * a pid-unique name), so tests never touch a user's tmux and kill-server cleans up everything.
 * Readiness is by polling the screen, never by sleeping a fixed time.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { runCommand } from './proc.js';

export interface TmuxSession {
  readonly server: string;
  /** The pane's text as the user sees it (no escape sequences). */
  screen(): Promise<string>;
  /** tmux key names ('Enter', 'Escape', 'C-c', 'Down') or literal text with { literal: true }. */
  send(keys: string, opts?: { literal?: boolean }): Promise<void>;
  /** Resolves with the screen once `pattern` matches it; rejects with the last screen after `timeoutMs`. */
  waitFor(pattern: RegExp | ((screen: string) => boolean), timeoutMs?: number): Promise<string>;
  /** Whether the program in the pane is still running. */
  alive(): Promise<boolean>;
  kill(): Promise<void>;
}

let counter = 0;

async function tmux(server: string, args: readonly string[]): Promise<string> {
  const r = await runCommand(['tmux', '-L', server, ...args], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`tmux ${args.join(' ')}: ${r.stderr.trim() || `exit ${r.code}`}`);
  return r.stdout;
}

/** Starts `argv` in a detached width×height pane; `env` is passed explicitly (tmux does not inherit ours). */
export async function startTmux(argv: readonly string[], opts: { width?: number; height?: number; env?: Record<string, string> } = {}): Promise<TmuxSession> {
  const server = `tproxy-e2e-${process.pid}-${counter++}`;
  const envArgs = Object.entries(opts.env ?? {}).flatMap(([k, v]) => ['-e', `${k}=${v}`]);
  // remain-on-exit keeps the pane (and its last screen) after the program exits, so a crash is readable.
  await tmux(server, ['-f', '/dev/null', 'new-session', '-d', '-s', 'ui', '-x', String(opts.width ?? 80), '-y', String(opts.height ?? 24), ...envArgs, ...argv]);
  await tmux(server, ['set-option', '-t', 'ui', 'remain-on-exit', 'on']);
  const session: TmuxSession = {
    server,
    screen: () => tmux(server, ['capture-pane', '-p', '-t', 'ui']),
    send: async (keys, o = {}) => {
      await tmux(server, ['send-keys', '-t', 'ui', ...(o.literal ? ['-l'] : []), keys]);
    },
    async waitFor(pattern, timeoutMs = 15_000) {
      const match = typeof pattern === 'function' ? pattern : (s: string) => pattern.test(s);
      const deadline = Date.now() + timeoutMs;
      let last = '';
      for (let i = 0; i < 1000 && Date.now() < deadline; i++) {
        last = await session.screen();
        if (match(last)) return last;
        await delay(100);
      }
      throw new Error(`screen did not match ${String(pattern)} within ${timeoutMs} ms; last screen:\n${last}`);
    },
    async alive() {
      const out = await tmux(server, ['list-panes', '-t', 'ui', '-F', '#{pane_dead}']).catch(() => '1');
      return out.trim() === '0';
    },
    async kill() {
      await runCommand(['tmux', '-L', server, 'kill-server'], { timeoutMs: 10_000 });
    },
  };
  return session;
}
