import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, test } from 'node:test';
import { TerminalScreen, paintDiff } from './terminal-screen.js';

class Out extends EventEmitter {
  columns = 20;
  rows = 3;
  readonly writes: string[] = [];
  write(chunk: string) {
    this.writes.push(chunk);
    return true;
  }
}

describe('paintDiff', () => {
  test('rewrites only changed lines, each at its absolute row, inside a synchronized update', () => {
    assert.equal(paintDiff(['a', 'b', 'c'], ['a', 'B', 'c'], 24), '\x1b[?2026h\x1b[2;1H\x1b[2KB\x1b[0m\x1b[?2026l');
    assert.equal(paintDiff(['a', 'b'], ['a', 'b'], 24), '');
  });

  test('blanks lines the new frame no longer has, and never paints below the screen', () => {
    assert.equal(paintDiff(['a', 'b'], ['a'], 24), '\x1b[?2026h\x1b[2;1H\x1b[2K\x1b[0m\x1b[?2026l');
    assert.equal(paintDiff([], ['1', '2', '3'], 2), '\x1b[?2026h\x1b[1;1H\x1b[2K1\x1b[0m\x1b[2;1H\x1b[2K2\x1b[0m\x1b[?2026l');
  });
});

describe('TerminalScreen', () => {
  test('enters and leaves the alternate screen, coalesces frames, repaints everything after a resize', () => {
    const out = new Out();
    const screen = new TerminalScreen(out, -1);
    screen.start();
    assert.equal(out.writes[0], '\x1b[?1049h\x1b[?25l\x1b[?7l\x1b[H\x1b[2J');
    screen.write('one\ntwo');
    screen.write('one\nTWO');
    screen.flush();
    assert.equal(out.writes.length, 2, 'two frames, one paint');
    assert.equal(out.writes[1], '\x1b[?2026h\x1b[1;1H\x1b[2Kone\x1b[0m\x1b[2;1H\x1b[2KTWO\x1b[0m\x1b[?2026l');
    let resized = 0;
    screen.on('resize', () => resized++);
    out.emit('resize');
    assert.equal(resized, 1);
    assert.equal(out.writes[2], '\x1b[2J');
    screen.write('one\nTWO');
    screen.flush();
    assert.match(out.writes[3]!, /1;1H.*one.*2;1H.*TWO/, 'after a resize every line is painted again');
    screen.restore();
    assert.equal(out.writes[out.writes.length - 1], '\x1b[?7h\x1b[?25h\x1b[?1049l');
    screen.restore();
    assert.equal(out.writes.filter((w) => w.includes('1049l')).length, 1, 'restore is idempotent');
  });
});
