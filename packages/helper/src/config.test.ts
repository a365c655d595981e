import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UsageError, idleExitMs, parseHelperArgs } from './config.js';

describe('parseHelperArgs', () => {
  it('uses the documented defaults', () => {
    const c = parseHelperArgs([], {});
    assert.equal(c.mode, 'run');
    assert.equal(c.socketPath, '/run/tproxy/helper.sock');
    assert.equal(c.stateDir, '/var/lib/tproxy');
    assert.deepEqual(c.allowUids, []);
  });

  it('collects repeatable flags', () => {
    const c = parseHelperArgs(['--allow-uid', '1000', '--allow-uid', '1001', '--upstream-ca', '/a.pem', '--upstream-ca', '/b.pem', '--socket', '/tmp/s'], {});
    assert.deepEqual(c.allowUids, [1000, 1001]);
    assert.deepEqual(c.upstreamCaFiles, ['/a.pem', '/b.pem']);
    assert.equal(c.socketPath, '/tmp/s');
  });

  it('takes the socket from TPROXY_SOCKET', () => {
    assert.equal(parseHelperArgs([], { TPROXY_SOCKET: '/run/x.sock' }).socketPath, '/run/x.sock');
  });

  it('names the bad flag', () => {
    assert.throws(() => parseHelperArgs(['--allow-uid', 'bob'], {}), (e: Error) => e instanceof UsageError && /--allow-uid must be a numeric uid/.test(e.message));
    assert.throws(() => parseHelperArgs(['--socket', 'rel/path'], {}), /--socket must be an absolute path/);
    assert.throws(() => parseHelperArgs(['--log-level', 'loud'], {}), /--log-level/);
    assert.throws(() => parseHelperArgs(['--nope'], {}), UsageError);
  });

  it('selects the mode', () => {
    assert.equal(parseHelperArgs(['--cleanup'], {}).mode, 'cleanup');
    assert.equal(parseHelperArgs(['-h'], {}).mode, 'help');
  });
});

describe('--idle-exit', () => {
  it('defaults to 60 s only when socket-activated', () => {
    const config = parseHelperArgs([], {});
    assert.equal(config.idleExitSeconds, undefined);
    assert.equal(idleExitMs(config, true), 60_000);
    assert.equal(idleExitMs(config, false), null);
  });
  it('applies an explicit value even when started by hand, and 0 disables', () => {
    assert.equal(idleExitMs(parseHelperArgs(['--idle-exit', '2'], {}), false), 2000);
    assert.equal(idleExitMs(parseHelperArgs(['--idle-exit', '0.5'], {}), true), 500);
    assert.equal(idleExitMs(parseHelperArgs(['--idle-exit', '0'], {}), true), null);
  });
  it('rejects non-numbers', () => {
    assert.throws(() => parseHelperArgs(['--idle-exit=-1'], {}), /--idle-exit must be a number of seconds/);
    assert.throws(() => parseHelperArgs(['--idle-exit', '1m'], {}), UsageError);
  });
});

describe('--keep-socket', () => {
  it('is a --cleanup modifier only', () => {
    assert.equal(parseHelperArgs(['--cleanup', '--keep-socket'], {}).keepSocket, true);
    assert.equal(parseHelperArgs(['--cleanup'], {}).keepSocket, false);
    assert.throws(() => parseHelperArgs(['--keep-socket'], {}), /only applies to --cleanup/);
  });
});

describe('--firewall', () => {
  it('defaults to auto and takes every backend name', () => {
    assert.equal(parseHelperArgs([], {}).firewall, 'auto');
    for (const b of ['auto', 'nft', 'iptables', 'iptables-nft', 'iptables-legacy'] as const) assert.equal(parseHelperArgs(['--firewall', b], {}).firewall, b);
  });
  it('names the choices when the value is wrong', () => {
    assert.throws(() => parseHelperArgs(['--firewall', 'pf'], {}), (e: Error) => e instanceof UsageError && e.message === '--firewall must be auto, nft, iptables, iptables-nft or iptables-legacy, got "pf"');
  });
});

describe('--config and --run-cgroup-parent', () => {
  it('are optional and taken as given when valid', () => {
    const none = parseHelperArgs([], {});
    assert.equal(none.configPath, undefined);
    assert.equal(none.runCgroupParent, undefined);
    const given = parseHelperArgs(['--config', '/etc/tproxy/other.json', '--run-cgroup-parent', 'tproxy/runs'], {});
    assert.equal(given.configPath, '/etc/tproxy/other.json');
    assert.equal(given.runCgroupParent, 'tproxy/runs');
  });
  it('refuses a relative config path and cgroup parents that could escape or are not paths', () => {
    assert.throws(() => parseHelperArgs(['--config', 'helper.json'], {}), /--config must be an absolute path/);
    assert.throws(() => parseHelperArgs(['--run-cgroup-parent', '/tproxy'], {}), /--run-cgroup-parent must be a relative cgroup path/);
    assert.throws(() => parseHelperArgs(['--run-cgroup-parent', 'tproxy/../..'], {}), /must not contain "\." or "\.\." segments/);
    assert.throws(() => parseHelperArgs(['--run-cgroup-parent', 'a b'], {}), /--run-cgroup-parent must be a relative cgroup path/);
  });
});
