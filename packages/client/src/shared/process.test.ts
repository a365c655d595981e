import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sampleExchange } from '../test/fixtures.js';
import { formatExchangeDetail } from '../cli/output.js';
import { cellText } from '../ui/format.js';
import { detailLines } from '../ui/detail.js';
import { commandName, formatProcessLong, formatProcessShort } from './process.js';

const curl = { pid: 1234, uid: 1000, user: 'alice', command: '/usr/bin/curl -s https://example.com/' };

describe('process labels', () => {
  test('command name is the basename of the first word', () => {
    assert.equal(commandName('/usr/bin/curl -s https://x'), 'curl');
    assert.equal(commandName('node'), 'node');
    assert.equal(commandName('[kworker/0:1]'), '[kworker/0:1]');
  });

  test('short and long forms, with and without pid, user and command', () => {
    assert.equal(formatProcessShort(curl), 'curl[1234]');
    assert.equal(formatProcessShort({ pid: 7, uid: 0 }), '[7]');
    assert.equal(formatProcessShort({ uid: 1000, user: 'alice' }), 'alice(1000)');
    assert.equal(formatProcessShort({ uid: 1001 }), 'uid 1001');
    assert.equal(formatProcessShort(undefined), '-');
    assert.equal(formatProcessLong(curl), 'pid 1234 · alice(1000) · /usr/bin/curl -s https://example.com/');
    assert.equal(formatProcessLong({ uid: 0, user: 'root' }), 'pid unknown · root(0)');
    assert.equal(formatProcessLong(undefined), '- (not attributed)');
  });

  test('a hostile command line and user name are escaped everywhere', () => {
    const evil = { pid: 9, uid: 5, user: 'ev\x1b[2Jil', command: '/tmp/x\x1b]0;pwned\x07 --\u202eflag\nInjected: yes' };
    assert.equal(formatProcessShort(evil), 'x\\x1b]0;pwned\\x07[9]');
    assert.equal(formatProcessLong(evil), 'pid 9 · ev\\x1b[2Jil(5) · /tmp/x\\x1b]0;pwned\\x07 --\\u202eflag\\nInjected: yes');
    const ex = sampleExchange({ process: evil });
    assert.equal(cellText(ex, 'process'), 'x\\x1b]0;pwned\\x07[9]');
    const detail = detailLines({ exchange: ex, detail: { id: 42, status: 'loading', scroll: 0, lineCount: 0, pageRows: 10 }, width: 200, now: 0 })
      .map((l) => l.map((s) => s.text).join(''))
      .find((l) => l.startsWith('Process'));
    assert.equal(detail, 'Process  pid 9 · ev\\x1b[2Jil(5) · /tmp/x\\x1b]0;pwned\\x07 --\\u202eflag\\nInjected: yes');
    const text = formatExchangeDetail({ exchange: ex, requestBody: '', responseBody: '' });
    assert.match(text, /^process: pid 9 · ev\\x1b\[2Jil\(5\) · \/tmp\/x\\x1b\]0;pwned\\x07 --\\u202eflag\\nInjected: yes$/m);
    // eslint-disable-next-line no-control-regex -- asserting no raw control characters survive
    assert.doesNotMatch(text, /[\x1b\x07\u202e]/);
  });

  test('list and detail of an exchange without attribution', () => {
    const ex = sampleExchange();
    assert.equal(cellText(ex, 'process'), '-');
    assert.doesNotMatch(formatExchangeDetail({ exchange: ex, requestBody: '', responseBody: '' }), /^process:/m);
    assert.equal(cellText(sampleExchange({ process: curl }), 'process'), 'curl[1234]');
  });
});
