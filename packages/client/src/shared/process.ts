/**
 * How tproxyctl and tproxy-ui name the local process behind an exchange, as pure functions. The
 * command line is whatever the intercepted program put in its argv, so it is untrusted like the
 * rest of an exchange: everything here goes through `escapeInline`. No I/O.
 */
import type { ProcessInfo } from '@tproxy/protocol';
import { escapeInline } from './escape.js';

/** The program name: the last path segment of the first word of the command line (`/usr/bin/curl -s …` → `curl`). */
export function commandName(command: string): string {
  const first = command.trimStart().split(' ')[0] ?? '';
  // `[kworker/0:1]` (a process without a command line) keeps its brackets and slashes.
  if (first.startsWith('[')) return command.trim();
  return first.slice(first.lastIndexOf('/') + 1);
}

/** `user(uid)`, or `uid 1000` when the uid has no passwd entry. */
export function formatOwner(p: ProcessInfo): string {
  return p.user !== undefined ? `${escapeInline(p.user)}(${p.uid})` : `uid ${p.uid}`;
}

/** Short label for a list cell: `curl[1234]`, `[1234]` without a command, the owner without a pid, `-` without attribution. */
export function formatProcessShort(p: ProcessInfo | undefined): string {
  if (!p) return '-';
  if (p.pid === undefined) return formatOwner(p);
  return `${escapeInline(p.command !== undefined ? commandName(p.command) : '')}[${p.pid}]`;
}

/** One line with everything known: `pid 1234 · alice(1000) · /usr/bin/curl -s https://x`. */
export function formatProcessLong(p: ProcessInfo | undefined): string {
  if (!p) return '- (not attributed)';
  return [
    p.pid !== undefined ? `pid ${p.pid}` : 'pid unknown',
    formatOwner(p),
    ...(p.command !== undefined ? [escapeInline(p.command)] : []),
  ].join(' · ');
}
