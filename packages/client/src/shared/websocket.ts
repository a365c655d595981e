/**
 * How a relayed WebSocket reads in tproxyctl and tproxy-ui, pure: a one-line summary (counts,
 * bytes, close code) and one escaped line per recorded message. Message text is untrusted: every
 * control character is escaped and nothing is longer than `maxText` cells.
 */
import type { WebSocketInfo, WebSocketMessage } from '@tproxy/protocol';
import { escapeInline } from './escape.js';
import { formatBytes, formatClock } from './units.js';

const OPCODES: Record<number, string> = { 1: 'text', 2: 'binary', 8: 'close', 9: 'ping', 10: 'pong' };

/** `3 ↑ 3 ↓ messages · 120 B ↑ 98 B ↓ · closed 1000`. */
export function websocketSummary(info: WebSocketInfo): string {
  const parts = [`${info.messagesUp} ↑ ${info.messagesDown} ↓ messages`, `${formatBytes(info.bytesUp)} ↑ ${formatBytes(info.bytesDown)} ↓`];
  if (info.closeCode !== undefined) parts.push(`closed ${info.closeCode}`);
  if (info.error) parts.push(`framing error: ${escapeInline(info.error)}`);
  return parts.join(' · ');
}

/** `12:00:01.250 ↑ text 5 B  "hello"`; `maxText` bounds the quoted text (in UTF-16 units). */
export function websocketMessageLine(m: WebSocketMessage, maxText = 200): string {
  const kind = OPCODES[m.opcode] ?? `opcode ${m.opcode}`;
  let line = `${formatClock(m.time)} ${m.dir === 'up' ? '↑' : '↓'} ${kind} ${formatBytes(m.size)}`;
  if (m.closeCode !== undefined) line += ` code ${m.closeCode}`;
  if (m.compressed) line += ' (compressed)';
  if (m.text !== undefined) {
    const text = escapeInline(m.text);
    line += `  "${text.length > maxText ? `${text.slice(0, maxText)}…` : text}"${m.truncated ? ' (truncated)' : ''}`;
  }
  return line;
}

/** Every recorded message, plus a note when the record cap was reached. */
export function websocketMessageLines(info: WebSocketInfo, maxText?: number): string[] {
  const lines = info.messages.map((m) => websocketMessageLine(m, maxText));
  const dataRecorded = info.messages.filter((m) => m.opcode === 1 || m.opcode === 2).length;
  const dataTotal = info.messagesUp + info.messagesDown;
  if (dataTotal > dataRecorded) lines.push(`… ${dataTotal - dataRecorded} more messages not recorded`);
  return lines;
}
