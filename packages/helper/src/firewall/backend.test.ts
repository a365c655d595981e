/**
 * detectBackend against scripted probes: which binaries answer, and how many rules legacy iptables
 * already holds. Asserts the choice, the logged reason, and that only read-only probes run.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ExecError, FakeExec } from '../exec.js';
import type { Exec, ExecOptions, ExecResult } from '../exec.js';
import { createLogger } from '../log.js';
import type { Logger } from '../log.js';
import { Steering } from './apply.js';
import { createSteering, detectBackend } from './backend.js';
import { FirewallError } from './errors.js';
import { IptablesSteering } from './iptables-apply.js';

const LEGACY_WITH_RULES = '*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n';

/** FakeExec where named binaries are missing (ENOENT) or fail, and `*-save` prints a listing. */
class Probes implements Exec {
  readonly fake = new FakeExec();
  constructor(
    private readonly missing: string[],
    failing: string[] = [],
    listings: Record<string, string> = {},
  ) {
    this.fake.failWhen = (c) => (failing.includes(c.argv[0] ?? '') ? 'Could not fetch rule set generation id: Permission denied (you must be root)' : null);
    this.fake.respond = (c) => listings[c.argv[0] ?? ''] ?? '';
  }
  run(file: string, args: readonly string[], options?: ExecOptions): Promise<ExecResult> {
    if (this.missing.includes(file)) {
      this.fake.calls.push({ argv: [file, ...args] });
      return Promise.reject(new ExecError([file, ...args], null, '', 'ENOENT'));
    }
    return this.fake.run(file, args, options);
  }
}

function recordingLog(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: createLogger('test', 'info', (line) => lines.push(line)), lines };
}

describe('detectBackend', () => {
  it('auto prefers nft when it answers, probing nothing else', async () => {
    const p = new Probes([]);
    const { log, lines } = recordingLog();
    const c = await detectBackend(p, 'auto', log);
    assert.equal(c.backend, 'nft');
    assert.deepEqual(p.fake.commands, ['nft list tables']);
    assert.equal(lines.length, 1);
    assert.match(lines[0] ?? '', /firewall backend: nft \(nft answers \(nftables is preferred: one atomic table for both families\)\)$/);
  });

  it('auto without nft takes iptables-nft when legacy iptables holds no rules', async () => {
    const p = new Probes(['nft']);
    const c = await detectBackend(p, 'auto', recordingLog().log);
    assert.equal(c.backend, 'iptables-nft');
    assert.equal(c.reason, 'nft is unusable (not installed); iptables-nft answers and legacy iptables holds no rules');
    assert.deepEqual(p.fake.commands.sort(), ['iptables-legacy-save', 'iptables-nft-save', 'nft list tables']);
  });

  it('auto without nft joins legacy iptables when it already holds rules', async () => {
    const p = new Probes(['nft'], [], { 'iptables-legacy-save': LEGACY_WITH_RULES });
    const c = await detectBackend(p, 'auto', recordingLog().log);
    assert.equal(c.backend, 'iptables-legacy');
    assert.match(c.reason, /legacy iptables already holds 2 rule\(s\)/);
  });

  it('falls back to legacy when iptables-nft cannot work, and names nft\'s failure', async () => {
    const p = new Probes(['iptables-nft-save'], ['nft']);
    const c = await detectBackend(p, 'auto', recordingLog().log);
    assert.equal(c.backend, 'iptables-legacy');
    assert.match(c.reason, /^nft is unusable \(Could not fetch rule set generation id.*\); iptables-nft is unusable \(not installed\); iptables-legacy answers$/);
  });

  it('with nothing usable, fails naming the packages to install', async () => {
    const p = new Probes(['nft', 'iptables-nft-save', 'iptables-legacy-save']);
    await assert.rejects(detectBackend(p, 'auto', recordingLog().log), (err: unknown) => err instanceof FirewallError && /no usable firewall: .*nftables package.*iptables and ipset packages/.test(err.message));
  });

  it('`iptables` skips nft even when it answers; a named backend probes nothing', async () => {
    const p = new Probes([]);
    assert.equal((await detectBackend(p, 'iptables', recordingLog().log)).backend, 'iptables-nft');
    assert.ok(!p.fake.commands.includes('nft list tables'));
    for (const named of ['nft', 'iptables-nft', 'iptables-legacy'] as const) {
      const q = new Probes([]);
      const c = await detectBackend(q, named, recordingLog().log);
      assert.deepEqual([c.backend, c.reason, q.fake.commands], [named, `asked for ${named}`, []]);
    }
  });

  it('createSteering builds the matching executor', () => {
    const exec = new FakeExec();
    const log = createLogger('test', 'error');
    assert.ok(createSteering('nft', exec, log) instanceof Steering);
    const legacy = createSteering('iptables-legacy', exec, log);
    assert.ok(legacy instanceof IptablesSteering && legacy.flavour === 'iptables-legacy');
  });
});
