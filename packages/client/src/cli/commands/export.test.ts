/** `tproxyctl export`, `clear` and `tail`'s filter flags against the fake helper (no root). */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { ErrorCode, RpcError, encode, notifications } from '@tproxy/protocol';
import { FakeHelper, type FakeConnection } from '../../test/fake-helper.js';
import { sampleExchange } from '../../test/fixtures.js';
import type { Io } from '../command.js';
import { parseStatusRange } from '../filter-flags.js';
import { main } from '../main.js';

function recordingIo() {
  const out: Buffer[] = [];
  const err: string[] = [];
  const io: Io = { stdout: { write: (c) => out.push(Buffer.from(c)) }, stderr: { write: (c) => err.push(c) }, env: {} };
  return { io, stdout: () => Buffer.concat(out).toString('utf8'), stderr: () => err.join('') };
}

function chunk(conn: FakeConnection, exportId: number, seq: number, data: string): void {
  conn.socket.write(encode({ jsonrpc: '2.0', method: notifications.exportChunk.method, params: { exportId, seq, data } }));
}

describe('tproxyctl export / clear / tail filters', () => {
  let fake: FakeHelper;
  let dir: string;

  async function run(...argv: string[]) {
    const rec = recordingIo();
    const code = await main([...argv, '--socket', fake.socketPath], rec.io);
    return { code, stdout: rec.stdout(), stderr: rec.stderr() };
  }

  /** The fake streams `pieces` then answers with honest totals. */
  function streams(pieces: string[], check?: () => void) {
    fake.on('exchanges.export', (_params, conn) => {
      pieces.forEach((p, i) => chunk(conn, 7, i, p));
      check?.();
      return { exportId: 7, count: 2, bytes: Buffer.byteLength(pieces.join('')), chunks: pieces.length };
    });
  }

  beforeEach(async () => {
    fake = await FakeHelper.start();
    dir = mkdtempSync(join(tmpdir(), 'tproxyctl-export-'));
  });
  afterEach(async () => {
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('writes the stream to stdout, the summary to stderr, and sends format, bodies and filter', async () => {
    streams(['{"log":{"entries":[', '{"a":1},{"b":"é"}', ']}}']);
    const r = await run('export', '--format', 'har', '--no-bodies', '--host', '*.example.com', '--method', 'GET,post', '--status', '4xx', '--url', '/api');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '{"log":{"entries":[{"a":1},{"b":"é"}]}}');
    assert.match(r.stderr, /^exported 2 exchanges \(\d+ B, HAR 1\.2\) to stdout\n$/);
    const sent = fake.received.find((x) => x.method === 'exchanges.export')!.params;
    assert.deepEqual(sent, { format: 'har', includeBodies: false, filter: { host: '*.example.com', method: ['GET', 'post'], status: { min: 400, max: 499 }, text: '/api' } });
  });

  test('--output writes a 0600 file that appears only when complete', async () => {
    const file = join(dir, 'out.jsonl');
    let existedMidway = true;
    streams(['{"exchange":1}\n', '{"exchange":2}\n'], () => (existedMidway = existsSync(file)));
    const r = await run('--json', 'export', '--format', 'jsonl', '-o', file);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(existedMidway, false, 'FILE is not there while the export runs');
    assert.equal(readFileSync(file, 'utf8'), '{"exchange":1}\n{"exchange":2}\n');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(dir), ['out.jsonl'], 'no temporary file left');
    assert.deepEqual(JSON.parse(r.stderr), { exportId: 7, count: 2, bytes: 30, chunks: 2, format: 'jsonl', output: file });
    assert.equal(r.stdout, '');
  });

  test('a failed export leaves neither FILE nor a temporary file, and says why', async () => {
    const file = join(dir, 'out.har');
    fake.on('exchanges.export', (_params, conn) => {
      chunk(conn, 3, 0, '{"log":');
      throw new RpcError(ErrorCode.InternalError, 'the helper gave up');
    });
    const r = await run('export', '--format', 'har', '--output', file);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /the helper gave up/);
    assert.deepEqual(readdirSync(dir), []);
  });

  test('a gap in the chunk sequence is a protocol error, not a silently broken file', async () => {
    fake.on('exchanges.export', (_params, conn) => {
      chunk(conn, 3, 0, 'a');
      chunk(conn, 3, 2, 'c');
      return { exportId: 3, count: 1, bytes: 2, chunks: 3 };
    });
    const r = await run('export', '--format', 'jsonl', '-o', join(dir, 'x'));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /export chunk 3#2, expected 3#1/);
    assert.deepEqual(readdirSync(dir), []);
  });

  test('usage errors name the flag and exit 2', async () => {
    for (const [argv, message] of [
      [['export'], /--format har\|jsonl is required/],
      [['export', '--format', 'xml'], /--format must be 'har' or 'jsonl'/],
      [['export', '--format', 'har', '--status', 'bad'], /--status must be a status/],
      [['export', '--format', 'har', '--status', '600-500'], /--status: status.min must not be greater/],
      [['export', '--format', 'har', '--host', ''], /--host: host must not be empty/],
      [['tail', '--method', 'G ET'], /--method: /],
    ] as const) {
      const r = await run(...argv);
      assert.equal(r.code, 2, argv.join(' '));
      assert.match(r.stderr, message);
    }
    assert.equal(fake.received.filter((x) => x.method === 'exchanges.export').length, 0, 'nothing was sent');
  });

  test('clear prints how many were removed', async () => {
    fake.on('exchanges.clear', () => ({ removed: 3 }));
    const r = await run('clear');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'cleared 3 exchanges\n');
    const j = await run('--json', 'clear');
    assert.deepEqual(JSON.parse(j.stdout), { removed: 3 });
  });

  test('tail sends its filter flags with exchanges.subscribe', async () => {
    const tail = run('tail', '--count', '1', '--status', '500-', '--host', 'api.test');
    await fake.waitForSubscriber();
    fake.notifyExchange('completed', sampleExchange({ id: 5 }));
    const r = await tail;
    assert.equal(r.code, 0, r.stderr);
    const sent = fake.received.find((x) => x.method === 'exchanges.subscribe')!.params;
    assert.deepEqual(sent, { filter: { host: 'api.test', status: { min: 500 } } });
  });
});

describe('parseStatusRange', () => {
  test('status, class, closed and open ranges', () => {
    assert.deepEqual(parseStatusRange('404'), { min: 404, max: 404 });
    assert.deepEqual(parseStatusRange('5XX'), { min: 500, max: 599 });
    assert.deepEqual(parseStatusRange('400-599'), { min: 400, max: 599 });
    assert.deepEqual(parseStatusRange('500-'), { min: 500 });
    assert.deepEqual(parseStatusRange('-299'), { max: 299 });
    for (const bad of ['-', '4x', '40', '400-5', 'abc', '']) assert.throws(() => parseStatusRange(bad), /--status must be/);
  });
});
