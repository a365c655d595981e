import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { ErrorCode, RpcError, type CaptureRunEndResult } from '@tproxy/protocol';
import { FakeHelper } from '../../test/fake-helper.js';
import { runningStatus, sampleCa, stoppedStatus } from '../../test/fixtures.js';
import type { Args, Io } from '../command.js';
import { main } from '../main.js';
import { exitStatusOf, formatRunSummary, runCaptureParams, wrapperArgv, RUN_WRAPPER } from './run.js';

function args(values: Args['values'], positionals: string[] = []): Args {
  return { values, positionals };
}

describe('tproxyctl run: pure parts', () => {
  it('holds the command in a shell that waits on fd 3 and then execs it unchanged', () => {
    assert.deepEqual(wrapperArgv(['curl', '-s', 'https://x y']), ['/bin/sh', '-c', RUN_WRAPPER, 'tproxy-run', 'curl', '-s', 'https://x y']);
    assert.throws(() => wrapperArgv([]), /missing the command to run/);
  });

  it('maps the exit of the command to ours: the code, or 128 + signal number', () => {
    assert.equal(exitStatusOf(0, null), 0);
    assert.equal(exitStatusOf(7, null), 7);
    assert.equal(exitStatusOf(null, 'SIGKILL'), 137);
    assert.equal(exitStatusOf(null, 'SIGTERM'), 143);
    assert.equal(exitStatusOf(null, 'SIGINT'), 130);
    assert.equal(exitStatusOf(null, null), 1);
  });

  it('builds capture params from start flags plus --uid', () => {
    assert.deepEqual(runCaptureParams(args({ port: ['8443,443'], uid: ['1000', '1001,1002'], 'no-ipv6': true })), {
      ports: [8443, 443],
      ipv6: false,
      scope: { uids: [1000, 1001, 1002] },
    });
    assert.deepEqual(runCaptureParams(args({})), {});
    assert.throws(() => runCaptureParams(args({ uid: ['me'] })), /--uid: expected a number/);
  });

  it('summarises exchanges and processes that outlived the command', () => {
    const end: CaptureRunEndResult = { cgroup: 'tproxy/run-2', exchanges: 1, cgroupRemoved: true, remainingPids: [], status: stoppedStatus() };
    assert.equal(formatRunSummary('curl https://x', 0, end), 'tproxyctl run: curl https://x exited with status 0; 1 exchange captured in cgroup tproxy/run-2\n');
    const left = formatRunSummary('sh -c x\x1b[2J', 3, { ...end, exchanges: 2, cgroupRemoved: false, remainingPids: [41, 42] });
    assert.match(left, /status 3; 2 exchanges captured in cgroup tproxy\/run-2; processes 41, 42 outlived it/);
    assert.ok(!left.includes('\x1b'), 'the command line is escaped');
  });
});

/** Parent pid of `pid`, from /proc (the fake helper checks what the real one checks). */
function ppidOf(pid: number): number {
  return Number(/^PPid:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}

describe('tproxyctl run against a fake helper', () => {
  let fake: FakeHelper;
  let dir: string;
  const stderr: string[] = [];
  const io = (): Io => ({ stdout: { write: () => true }, stderr: { write: (s) => stderr.push(s) }, env: { PATH: process.env.PATH } });

  beforeEach(async () => {
    fake = await FakeHelper.start();
    dir = mkdtempSync(join(tmpdir(), 'tproxy-run-test-'));
    stderr.length = 0;
    fake.on('ca.get', () => sampleCa({ env: { SSL_CERT_FILE: '/run/tproxy/bundle.pem', NODE_EXTRA_CA_CERTS: '/run/tproxy/ca.pem' } }));
  });
  afterEach(async () => {
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('releases the command only after capture.run, with the CA env, and exits with its status', async () => {
    const marker = join(dir, 'ran');
    let heldWhileRunCalled: boolean | undefined;
    fake.on('capture.run', (params) => {
      const { pid } = params as { pid: number };
      assert.equal(ppidOf(pid), process.pid, 'the pid named is our child');
      heldWhileRunCalled = !existsSync(marker);
      return { cgroup: 'tproxy/run-1', status: runningStatus() };
    });
    fake.on('capture.runEnd', () => ({ cgroup: 'tproxy/run-1', exchanges: 2, cgroupRemoved: true, remainingPids: [], status: stoppedStatus() }));
    const script = `printf '%s' "$SSL_CERT_FILE" > ${marker}; exit 3`;
    const code = await main(['--socket', fake.socketPath, 'run', '--port', '443', '--', 'sh', '-c', script], io());
    assert.equal(code, 3);
    assert.equal(heldWhileRunCalled, true, 'the command had not run when capture.run was called');
    assert.equal(readFileSync(marker, 'utf8'), '/run/tproxy/bundle.pem');
    const sent = fake.received.find((r) => r.method === 'capture.run')?.params as { pid: number; capture: unknown };
    assert.deepEqual(sent.capture, { ports: [443] });
    assert.match(stderr.join(''), /exited with status 3; 2 exchanges captured in cgroup tproxy\/run-1/);
  });

  it('never runs the command when capture.run fails, and reports the helper error', async () => {
    const marker = join(dir, 'ran');
    fake.on('capture.run', () => {
      throw new RpcError(ErrorCode.CaptureAlreadyRunning, 'a capture is already running');
    });
    const code = await main(['--socket', fake.socketPath, 'run', '--', 'touch', marker], io());
    assert.equal(code, 1);
    assert.match(stderr.join(''), /a capture is already running/);
    assert.equal(existsSync(marker), false, 'the command never ran');
    assert.equal(fake.received.some((r) => r.method === 'capture.runEnd'), false);
  });

  it('reports 128+signal when the command is killed', async () => {
    fake.on('capture.run', () => ({ cgroup: 'tproxy/run-1', status: runningStatus() }));
    fake.on('capture.runEnd', () => ({ cgroup: 'tproxy/run-1', exchanges: 0, cgroupRemoved: true, remainingPids: [], status: stoppedStatus() }));
    const code = await main(['--socket', fake.socketPath, 'run', '--', 'sh', '-c', 'kill -KILL $$'], io());
    assert.equal(code, 137);
  });

  it('needs a command', async () => {
    const code = await main(['--socket', fake.socketPath, 'run'], io());
    assert.equal(code, 2);
    assert.match(stderr.join(''), /missing the command to run/);
  });
});
