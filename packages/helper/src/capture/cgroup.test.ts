import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ErrorCode, RpcError } from '@tproxy/protocol';
import { chooseCgroup2Mount, cgroupCoordinates, parseMountinfo, resolveCgroup, resolveSteeringScope } from './cgroup.js';

/** This test host: cgroup v1 controllers under a tmpfs, cgroup2 at /sys/fs/cgroup/unified (hybrid). */
const HYBRID = `22 29 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`;
/** A systemd pure-v2 host (optional fields vary in number; the type comes after " - "). */
const PURE_V2 = `25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
28 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 master:1 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`;
const V1_ONLY = `32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n`;
const ELSEWHERE = `90 1 0:50 / /mnt/cg\\040two rw,relatime - cgroup2 none rw\n`;

describe('mountinfo parser', () => {
  it('finds each mount, its root and its type, whatever the optional fields', () => {
    assert.deepEqual(parseMountinfo(PURE_V2), [
      { root: '/', mountPoint: '/sys', fsType: 'sysfs' },
      { root: '/', mountPoint: '/sys/fs/cgroup', fsType: 'cgroup2' },
    ]);
    assert.equal(parseMountinfo(HYBRID).length, 5);
  });

  it('unescapes octal escapes and skips lines it cannot read', () => {
    assert.deepEqual(parseMountinfo(`${ELSEWHERE}garbage line\n\n`), [{ root: '/', mountPoint: '/mnt/cg two', fsType: 'cgroup2' }]);
  });
});

describe('choosing the cgroup2 mount nft can name', () => {
  it('pure v2: paths as they are', () => {
    const m = chooseCgroup2Mount(parseMountinfo(PURE_V2));
    assert.deepEqual(m, { ok: true, mountPoint: '/sys/fs/cgroup', root: '/', nftPrefix: '' });
  });

  it('hybrid: under unified/', () => {
    const m = chooseCgroup2Mount(parseMountinfo(HYBRID));
    assert.ok(m.ok);
    assert.equal(m.nftPrefix, 'unified/');
    assert.deepEqual(cgroupCoordinates(m, 'tproxy/run-1'), {
      path: 'tproxy/run-1',
      level: 2,
      nftPath: 'unified/tproxy/run-1',
      dir: '/sys/fs/cgroup/unified/tproxy/run-1',
      mountPoint: '/sys/fs/cgroup/unified',
    });
  });

  it('no cgroup2, or cgroup2 outside /sys/fs/cgroup: a reason that says what to do', () => {
    const v1 = chooseCgroup2Mount(parseMountinfo(V1_ONLY));
    assert.ok(!v1.ok);
    assert.match(v1.reason, /cgroup v1 only.*unified/);
    const other = chooseCgroup2Mount(parseMountinfo(ELSEWHERE));
    assert.ok(!other.ok);
    assert.match(other.reason, /mounted at \/mnt\/cg two, but nft resolves cgroup paths under \/sys\/fs\/cgroup only/);
  });

  it('a bind-mounted subtree counts its root in the level', () => {
    const m = chooseCgroup2Mount(parseMountinfo(`28 25 0:26 /machine.slice /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n`));
    assert.ok(m.ok);
    assert.equal(cgroupCoordinates(m, 'a/b').level, 3);
  });
});

describe('resolveCgroup against a fake filesystem root', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'tproxy-cgroup-'));
    await mkdir(join(root, 'proc/self'), { recursive: true });
    await writeFile(join(root, 'proc/self/mountinfo'), HYBRID);
    await mkdir(join(root, 'sys/fs/cgroup/unified/system.slice/nginx.service'), { recursive: true });
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('resolves an existing cgroup to level and nft path', async () => {
    const r = await resolveCgroup('system.slice/nginx.service', { fsRoot: root });
    assert.equal(r.level, 2);
    assert.equal(r.nftPath, 'unified/system.slice/nginx.service');
    assert.deepEqual(await resolveSteeringScope({ uids: [1000], cgroup: 'system.slice/nginx.service' }, { fsRoot: root }), {
      uids: [1000],
      cgroup: { path: 'system.slice/nginx.service', level: 2, nftPath: 'unified/system.slice/nginx.service' },
    });
  });

  it('a missing cgroup is ScopeUnavailable naming the directory', async () => {
    await assert.rejects(resolveCgroup('system.slice/nope.service', { fsRoot: root }), (err: RpcError) => {
      assert.equal(err.code, ErrorCode.ScopeUnavailable);
      assert.match(err.message, /cgroup system\.slice\/nope\.service does not exist \(no directory \/sys\/fs\/cgroup\/unified\/system\.slice\/nope\.service\)/);
      return true;
    });
  });

  it('a scope without a cgroup needs no cgroup2 at all', async () => {
    assert.deepEqual(await resolveSteeringScope({ uids: [5] }, { fsRoot: join(root, 'nowhere') }), { uids: [5] });
    assert.deepEqual(await resolveSteeringScope(undefined), {});
  });

  it('no mountinfo: ScopeUnavailable', async () => {
    await assert.rejects(resolveCgroup('x', { fsRoot: join(root, 'nowhere') }), /cannot read .*mountinfo/);
  });
});
