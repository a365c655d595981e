import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { WebSocketInfo } from '@tproxy/protocol';
import { websocketMessageLine, websocketMessageLines, websocketSummary } from './websocket.js';

const T = Date.UTC(2026, 0, 1, 12, 0, 1, 250);

const info: WebSocketInfo = {
  messagesUp: 2,
  messagesDown: 1,
  bytesUp: 40,
  bytesDown: 20,
  closeCode: 1000,
  messages: [
    { dir: 'up', time: T, opcode: 1, size: 5, text: 'hello' },
    { dir: 'down', time: T, opcode: 2, size: 4 },
    { dir: 'up', time: T, opcode: 8, size: 2, closeCode: 1000 },
  ],
};

describe('websocket formatting', () => {
  it('summarises counts, bytes and the close code', () => {
    assert.equal(websocketSummary(info), '2 ↑ 1 ↓ messages · 40 B ↑ 20 B ↓ · closed 1000');
  });

  it('escapes message text and marks truncation', () => {
    const line = websocketMessageLine({ dir: 'down', time: T, opcode: 1, size: 900, text: 'a\x1b[2Jb', truncated: true });
    assert.ok(!line.includes('\x1b'), line);
    assert.match(line, /↓ text 900 B {2}"a\\x1b\[2Jb" \(truncated\)$/);
  });

  it('notes messages past the record cap', () => {
    const lines = websocketMessageLines({ ...info, messagesUp: 10 });
    assert.equal(lines.length, 4);
    assert.equal(lines[3], '… 9 more messages not recorded');
    assert.match(lines[2]!, /↑ close 2 B code 1000$/);
  });
});
