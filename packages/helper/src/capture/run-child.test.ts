import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ErrorCode, RpcError } from '@tproxy/protocol';
import { checkRunChild, parseProcCgroup, parseProcStatus, runChildProblem } from './run-child.js';

function status(pid: number, ppid: number, uid: number, euid = uid): string {
  return `Name:\tsh\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t${pid}\nNgid:\t0\nPid:\t${pid}\nPPid:\t${ppid}\nTracerPid:\t0\nUid:\t${uid}\t${euid}\t${uid}\t${uid}\nGid:\t0\t0\t0\t0\n`;
}

describe('parsing /proc/PID/status', () => {
  it('reads pid, parent and the four uids', () => {
    assert.deepEqual(parseProcStatus(status(42, 7, 1000, 0)), { pid: 42, ppid: 7, uids: [1000, 0, 1000, 1000] });
  });
  it('null when a field is missing', () => {
    assert.equal(parseProcStatus('Name:\tsh\nPid:\t1\n'), null);
  });
  it('reads the cgroup v2 line of /proc/PID/cgroup', () => {
    assert.equal(parseProcCgroup('4:memory:/x\n0::/user.slice/session-2.scope\n'), 'user.slice/session-2.scope');
    assert.equal(parseProcCgroup('0::/\n'), '');
    assert.equal(parseProcCgroup('4:memory:/x\n'), null);
  });
});

describe('may this caller move that process?', () => {
  it('a direct child with the caller uid: yes', () => {
    assert.equal(runChildProblem({ pid: 42, ppid: 7, uids: [1000, 1000, 1000, 1000] }, { pid: 7, uid: 1000 }), null);
  });
  it('root may move its child whatever its uids', () => {
    assert.equal(runChildProblem({ pid: 42, ppid: 7, uids: [5, 5, 5, 5] }, { pid: 7, uid: 0 }), null);
  });
  it('not a child of the caller: no', () => {
    assert.match(runChildProblem({ pid: 42, ppid: 1, uids: [0, 0, 0, 0] }, { pid: 7, uid: 0 })!, /process 42 is not a child of the calling process 7 \(its parent is 1\)/);
  });
  it('a child of an operator that runs as someone else (setuid): no', () => {
    assert.match(runChildProblem({ pid: 42, ppid: 7, uids: [1000, 0, 0, 1000] }, { pid: 7, uid: 1000 })!, /does not run as uid 1000 \(uids 1000 0 0 1000\)/);
  });
});

describe('checkRunChild with a fake /proc', () => {
  let proc: string;
  before(async () => {
    proc = await mkdtemp(join(tmpdir(), 'tproxy-proc-'));
    await mkdir(join(proc, '42'));
    await writeFile(join(proc, '42/status'), status(42, 7, 1000));
    await mkdir(join(proc, '43'));
    await writeFile(join(proc, '43/status'), 'nonsense');
  });
  after(async () => {
    await rm(proc, { recursive: true, force: true });
  });

  it('accepts the caller child', async () => {
    assert.equal((await checkRunChild(42, { pid: 7, uid: 1000 }, proc)).pid, 42);
  });
  it('refuses with ScopeNotAllowed otherwise', async () => {
    const refused = (pattern: RegExp) => (err: RpcError) => {
      assert.equal(err.code, ErrorCode.ScopeNotAllowed);
      assert.match(err.message, pattern);
      return true;
    };
    await assert.rejects(checkRunChild(42, { pid: 8, uid: 1000 }, proc), refused(/not a child of the calling process 8/));
    await assert.rejects(checkRunChild(42, { pid: 7, uid: 1001 }, proc), refused(/does not run as uid 1001/));
    await assert.rejects(checkRunChild(44, { pid: 7, uid: 1000 }, proc), refused(/process 44 does not exist/));
    await assert.rejects(checkRunChild(43, { pid: 7, uid: 1000 }, proc), refused(/cannot parse/));
  });
});
