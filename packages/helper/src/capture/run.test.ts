import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { CaptureStartParamsSchema, ErrorCode, RpcError, type CaptureConfig, type CaptureStatus } from '@tproxy/protocol';
import { createLogger } from '../log.js';
import type { CaptureControl } from '../rpc/context.js';
import { captureDouble } from '../rpc/test-support.js';
import { RunManager } from './run.js';
import type { ExchangeListener } from './store.js';

const MOUNTINFO = '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n';
const CGROOT = '/sys/fs/cgroup/unified';

/** Records start/stop and reports a running status in between; `failStart` makes start throw. */
class FakeCapture implements CaptureControl {
  started: CaptureConfig[] = [];
  stops = 0;
  failStart: Error | null = null;
  private running: CaptureStatus | null = null;
  start(config: CaptureConfig): Promise<CaptureStatus> {
    if (this.failStart) return Promise.reject(this.failStart);
    this.started.push(config);
    this.running = { running: true, available: true, interceptCount: 0, listeners: [], rules: [], caInstalled: true, config, startedAt: 1000 + this.started.length };
    return Promise.resolve(this.running);
  }
  stop(): Promise<CaptureStatus> {
    this.stops++;
    this.running = null;
    return Promise.resolve(this.status());
  }
  status(): CaptureStatus {
    return this.running ?? { running: false, available: true, interceptCount: 0, listeners: [], rules: [], caInstalled: false };
  }
  ca(): never {
    throw new Error('unused');
  }
  caInstall = captureDouble().caInstall;
  caUninstall = captureDouble().caUninstall;
  caRotate = captureDouble().caRotate;
  onStatusChange = captureDouble().onStatusChange;
}

describe('RunManager on a fake cgroup tree and /proc', () => {
  let root: string;
  let capture: FakeCapture;
  let listeners: ExchangeListener[];
  let runs: RunManager;
  const config = CaptureStartParamsSchema.parse({ scope: { uids: [1000] } }) as CaptureConfig;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'tproxy-run-'));
    await mkdir(join(root, 'proc/self'), { recursive: true });
    await writeFile(join(root, 'proc/self/mountinfo'), MOUNTINFO);
    await mkdir(join(root, 'proc/42'));
    await writeFile(join(root, 'proc/42/status'), 'Pid:\t42\nPPid:\t7\nUid:\t1000\t1000\t1000\t1000\n');
    await writeFile(join(root, 'proc/42/cgroup'), '0::/user.slice\n');
    await mkdir(join(root, CGROOT, 'user.slice'), { recursive: true });
    capture = new FakeCapture();
    listeners = [];
    const store = { subscribe: (l: ExchangeListener) => (listeners.push(l), () => void (listeners = listeners.filter((x) => x !== l))) };
    runs = new RunManager({ capture, store, log: createLogger('test', 'error'), parent: 'tproxy-test', procRoot: join(root, 'proc'), fsRoot: root });
  });
  afterEach(async () => {
    await runs.shutdown();
    await rm(root, { recursive: true, force: true });
  });

  it('creates a cgroup, moves the pid in, scopes the capture to it, and ends it', async () => {
    const result = await runs.begin(1, { pid: 7, uid: 1000 }, 42, config);
    assert.equal(result.cgroup, 'tproxy-test/run-1');
    assert.equal(await readFile(join(root, CGROOT, 'tproxy-test/run-1/cgroup.procs'), 'utf8'), '42\n');
    assert.deepEqual(capture.started[0]?.scope, { uids: [1000], cgroup: 'tproxy-test/run-1' });
    for (const l of listeners) l('started', {} as never);
    // A real cgroupfs rmdir ignores interface files; the fake tree needs the file gone to look empty.
    await unlink(join(root, CGROOT, 'tproxy-test/run-1/cgroup.procs'));
    const end = await runs.end(1);
    assert.deepEqual({ ...end, status: undefined }, { cgroup: 'tproxy-test/run-1', exchanges: 1, cgroupRemoved: true, remainingPids: [], status: undefined });
    assert.equal(capture.stops, 1);
    assert.equal(existsSync(join(root, CGROOT, 'tproxy-test/run-1')), false);
    assert.equal(listeners.length, 0, 'stopped counting');
  });

  it('reports processes left in the cgroup and removes it later', async () => {
    await runs.begin(1, { pid: 7, uid: 1000 }, 42, config);
    const end = await runs.end(1);
    assert.equal(end.cgroupRemoved, false);
    assert.deepEqual(end.remainingPids, [42]);
    await unlink(join(root, CGROOT, 'tproxy-test/run-1/cgroup.procs'));
    // The next run sweeps it.
    await runs.begin(2, { pid: 7, uid: 1000 }, 42, config);
    assert.equal(existsSync(join(root, CGROOT, 'tproxy-test/run-1')), false);
  });

  it('refuses while a capture runs, and for a process that is not the caller child, creating nothing', async () => {
    await capture.start(config);
    await assert.rejects(runs.begin(1, { pid: 7, uid: 1000 }, 42, config), (e: RpcError) => e.code === ErrorCode.CaptureAlreadyRunning);
    await capture.stop();
    await assert.rejects(runs.begin(1, { pid: 8, uid: 1000 }, 42, config), (e: RpcError) => e.code === ErrorCode.ScopeNotAllowed);
    assert.equal(existsSync(join(root, CGROOT, 'tproxy-test')), false);
  });

  it('when the capture fails to start, moves the pid back and removes the cgroup', async () => {
    capture.failStart = new RpcError(ErrorCode.FirewallApplyFailed, 'nft failed');
    await assert.rejects(runs.begin(1, { pid: 7, uid: 1000 }, 42, config), /nft failed/);
    assert.equal(await readFile(join(root, CGROOT, 'user.slice/cgroup.procs'), 'utf8'), '42\n');
  });

  it('a closed connection ends its run; ending twice is CaptureNotRunning', async () => {
    await runs.begin(3, { pid: 7, uid: 1000 }, 42, config);
    runs.connectionClosed(3);
    await assert.rejects(runs.end(3), (e: RpcError) => e.code === ErrorCode.CaptureNotRunning);
    assert.equal(capture.stops, 1);
  });

  it('at start-up removes empty run cgroups a killed helper left, and sweeps busy ones later', async () => {
    await mkdir(join(root, CGROOT, 'tproxy-test/run-7'), { recursive: true });
    await mkdir(join(root, CGROOT, 'tproxy-test/run-9'));
    await writeFile(join(root, CGROOT, 'tproxy-test/run-9/cgroup.procs'), '1234\n');
    await mkdir(join(root, CGROOT, 'tproxy-test/not-ours'));
    assert.deepEqual(await runs.adoptLeftovers(), ['tproxy-test/run-7']);
    assert.equal(existsSync(join(root, CGROOT, 'tproxy-test/run-9')), true);
    assert.equal(existsSync(join(root, CGROOT, 'tproxy-test/not-ours')), true, 'only run-<n> names are ours');
    await unlink(join(root, CGROOT, 'tproxy-test/run-9/cgroup.procs'));
    await runs.begin(1, { pid: 7, uid: 1000 }, 42, config);
    assert.equal(existsSync(join(root, CGROOT, 'tproxy-test/run-9')), false, 'swept at the next begin');
  });

  it('does not stop a capture that is not the run one', async () => {
    await runs.begin(1, { pid: 7, uid: 1000 }, 42, config);
    await capture.stop();
    await capture.start(CaptureStartParamsSchema.parse({}) as CaptureConfig);
    await runs.end(1);
    assert.equal(capture.status().running, true);
  });
});
