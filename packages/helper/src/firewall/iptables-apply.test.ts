/**
 * IptablesSteering against a FakeExec that models the kernel just enough: the ipset (create fails
 * when present, destroy fails while referenced), per family our chains (loaded by a non-test
 * `*-restore --noflush`, removed by a revert input, listed by `*-save`), and `ip` routes/rules
 * (EEXIST on a second add, ENOENT/ESRCH on a del of nothing). Failures are injected per call.
 * The real kernel is exercised by iptables-kernel.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CaptureStartParamsSchema } from '@tproxy/protocol';
import type { CaptureStartParams } from '@tproxy/protocol';
import { ExecError, FakeExec } from '../exec.js';
import type { Exec, ExecCall, ExecOptions, ExecResult } from '../exec.js';
import { createLogger } from '../log.js';
import { revertError } from './apply.js';
import { FirewallError } from './errors.js';
import { IPSET_DESTROY_ATTEMPTS, IptablesSteering } from './iptables-apply.js';
import type { IptablesFlavour } from './iptables-apply.js';
import { iptablesJumpLines, iptablesRuleLines, renderIpsetCreate, renderIpsetHeartbeat, renderIptablesApply } from './iptables.js';
import { planSteering, RULE_PRIORITY } from './plan.js';
import type { IpFamily, SteeringPlan } from './plan.js';

const P = RULE_PRIORITY;
const plan = (p: CaptureStartParams = {}) => planSteering(CaptureStartParamsSchema.parse(p));
const log = createLogger('test', 'error');

/** The read-only collision check (collision.ts) that apply runs first, as for the nft backend. */
const READS = ['nft list tables', 'ip -N -j -4 rule show', 'ip -j -4 route show table 233', 'ip -N -j -6 rule show', 'ip -j -6 route show table 233', 'nft -j list ruleset'];

const APPLY_ORDER = [
  ...READS,
  'ipset restore',
  'iptables-nft-restore --test --noflush -w 10',
  'ip6tables-nft-restore --test --noflush -w 10',
  'ip -4 route add local 0.0.0.0/0 dev lo table 233',
  'ip -6 route add local ::/0 dev lo table 233',
  `ip -4 rule add priority ${P} fwmark 0x2333/0x3fff lookup 233`,
  `ip -6 rule add priority ${P} fwmark 0x2333/0x3fff lookup 233`,
  'iptables-nft-restore --noflush -w 10',
  'ip6tables-nft-restore --noflush -w 10',
];

const FAMILY_OF: Record<string, IpFamily> = {
  'iptables-nft-restore': 'ipv4',
  'ip6tables-nft-restore': 'ipv6',
  'iptables-legacy-restore': 'ipv4',
  'ip6tables-legacy-restore': 'ipv6',
  'iptables-nft-save': 'ipv4',
  'ip6tables-nft-save': 'ipv6',
  'iptables-legacy-save': 'ipv4',
  'ip6tables-legacy-save': 'ipv6',
};

class FakeKernel implements Exec {
  readonly fake = new FakeExec();
  readonly objects = new Map<string, number>();
  /** Saved `-A` lines of our chains per family (undefined: our chains do not exist). */
  readonly chains = new Map<IpFamily, string[]>();
  set: number[] | null = null;
  /** `ipset destroy` fails as "in use" this many more times. */
  setBusy = 0;
  /** Binaries that are "not installed" (ENOENT). */
  readonly missing = new Set<string>();
  inject: (call: ExecCall) => string | null = () => null;

  constructor(private readonly plan: SteeringPlan) {
    this.fake.failWhen = (call) => this.inject(call) ?? this.effect(call.argv, call.input ?? '');
    this.fake.respond = (call) => this.listing(call.argv);
  }

  get commands(): string[] {
    return this.fake.commands;
  }

  async run(file: string, args: readonly string[], options?: ExecOptions): Promise<ExecResult> {
    if (this.missing.has(file)) {
      this.fake.calls.push({ argv: [file, ...args] });
      throw new ExecError([file, ...args], null, '', 'ENOENT');
    }
    return this.fake.run(file, args, options);
  }

  get clean(): boolean {
    return this.set === null && this.chains.size === 0 && [...this.objects.values()].every((n) => n === 0);
  }

  private effect(argv: string[], input: string): string | null {
    const [file, ...args] = argv;
    if (file === 'ipset') {
      if (args[0] === 'restore' && args[1] === '-exist') {
        if (this.set === null) return 'ipset v7.17: Error in line 1: The set with the given name does not exist';
        return null;
      }
      if (args[0] === 'restore') {
        if (this.set !== null) return 'ipset v7.17: Error in line 1: Set cannot be created: set with the same name already exists';
        this.set = [...this.plan.ports];
        return null;
      }
      if (args[0] === 'destroy') {
        if (this.set === null) return 'ipset v7.17: The set with the given name does not exist';
        if (this.setBusy > 0 || this.chains.size > 0) {
          this.setBusy = Math.max(0, this.setBusy - 1);
          return 'ipset v7.17: Set cannot be destroyed: it is in use by a kernel component';
        }
        this.set = null;
        return null;
      }
      if (args[0] === 'list') return this.set === null ? 'ipset v7.17: The set with the given name does not exist' : null;
    }
    const family = file ? FAMILY_OF[file] : undefined;
    if (family && file?.endsWith('-restore')) {
      if (args.includes('--test')) return null;
      if (input.includes(':TPROXY_HELPER_OUT')) this.chains.set(family, input.split('\n').filter((l) => l.startsWith('-A ')));
      else if (input.includes('-X TPROXY_HELPER_OUT')) this.chains.delete(family);
      return null;
    }
    if (file === 'ip' && (args[2] === 'add' || args[2] === 'del')) {
      const key = [args[0], args[1], ...args.slice(3)].join(' ');
      const n = this.objects.get(key) ?? 0;
      if (args[2] === 'add') {
        if (n > 0) return 'RTNETLINK answers: File exists';
        this.objects.set(key, 1);
      } else {
        if (n === 0) return args[1] === 'route' && args[0] === '-4' ? 'RTNETLINK answers: No such process' : 'RTNETLINK answers: No such file or directory';
        this.objects.set(key, n - 1);
      }
    }
    return null;
  }

  private listing(argv: string[]): string {
    const [file, ...args] = argv;
    const family = file ? FAMILY_OF[file] : undefined;
    if (family && file?.endsWith('-save')) {
      const lines = this.chains.get(family);
      if (!lines) return '*mangle\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n';
      return ['*mangle', ':PREROUTING ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ':TPROXY_HELPER_OUT - [0:0]', ':TPROXY_HELPER_PRE - [0:0]', ...iptablesJumpLines(), ...lines, 'COMMIT', ''].join('\n');
    }
    if (file === 'ipset' && args[0] === 'list' && this.set) return `Name: tproxy_helper_ports\nMembers:\n${this.set.map((p) => `${p} timeout 7`).join('\n')}\n`;
    if (file === 'ip' && args.includes('rule') && args.includes('show')) {
      const fam = args.includes('-4') ? '-4' : '-6';
      const present = (this.objects.get(`${fam} rule priority ${P} fwmark 0x2333/0x3fff lookup 233`) ?? 0) > 0;
      return JSON.stringify(present ? [{ priority: P, src: 'all', fwmark: '0x2333', fwmask: '0x3fff', table: '233' }] : []);
    }
    if (file === 'ip' && args.includes('route') && args.includes('show')) {
      const fam = args.includes('-4') ? '-4' : '-6';
      const any = fam === '-4' ? '0.0.0.0/0' : '::/0';
      const present = (this.objects.get(`${fam} route local ${any} dev lo table 233`) ?? 0) > 0;
      return JSON.stringify(present ? [{ type: 'local', dst: 'default', dev: 'lo' }] : []);
    }
    return '';
  }
}

function steering(k: FakeKernel, flavour: IptablesFlavour = 'iptables-nft'): IptablesSteering {
  return new IptablesSteering(k, log, flavour, { sleep: () => Promise.resolve() });
}

async function applyError(s: IptablesSteering, p: SteeringPlan): Promise<FirewallError> {
  try {
    await s.apply(p);
  } catch (err) {
    assert.ok(err instanceof FirewallError, String(err));
    return err;
  }
  assert.fail('apply should have failed');
}

describe('IptablesSteering.apply', () => {
  it('checks collisions, creates the ipset, dry-runs, routes, rules, then one restore per family', async () => {
    const p = plan();
    const k = new FakeKernel(p);
    await steering(k).apply(p);
    assert.deepEqual(k.commands, APPLY_ORDER);
    const inputs = k.fake.calls.filter((c) => c.input !== undefined).map((c) => c.input);
    assert.deepEqual(inputs, [renderIpsetCreate(p), renderIptablesApply(p, 'ipv4'), renderIptablesApply(p, 'ipv6'), renderIptablesApply(p, 'ipv4'), renderIptablesApply(p, 'ipv6')]);
    assert.deepEqual(k.chains.get('ipv4'), iptablesRuleLines(p, 'ipv4'));
  });

  it('uses the legacy binaries for the legacy flavour, and only IPv4 when ipv6 is off', async () => {
    const p = plan({ ipv6: false });
    const k = new FakeKernel(p);
    await steering(k, 'iptables-legacy').apply(p);
    const ipt = k.commands.filter((c) => /^ip6?tables/.test(c));
    assert.deepEqual(ipt, ['iptables-legacy-restore --test --noflush -w 10', 'iptables-legacy-restore --noflush -w 10']);
  });

  it('refuses without ipset, naming the package and why (fail-open), having changed nothing', async () => {
    const p = plan();
    const k = new FakeKernel(p);
    k.missing.add('ipset');
    const err = await applyError(steering(k), p);
    assert.equal(err.code, 'apply-failed');
    assert.match(err.message, /^creating ipset tproxy_helper_ports: ipset is not installed \(command not found\): .*fail-open.*apt-get install ipset.*--firewall nft/);
    assert.deepEqual(k.commands, [...READS, 'ipset restore']);
    assert.ok(k.clean);
  });

  it('a scope iptables cannot express fails before anything changed', async () => {
    const p = planSteering(CaptureStartParamsSchema.parse({}), { cgroup: { path: 'user.slice/a b', level: 2, nftPath: 'user.slice/a b' } });
    const k = new FakeKernel(p);
    await assert.rejects(steering(k).apply(p), (err: unknown) => err instanceof FirewallError && err.code === 'invalid-scope');
    assert.deepEqual(k.commands, []);
  });

  it('does not adopt an existing set of our name', async () => {
    const p = plan();
    const k = new FakeKernel(p);
    k.set = [443];
    const err = await applyError(steering(k), p);
    assert.match(err.message, /already exists \(left over from an earlier run and left untouched: run "tproxy-helper --cleanup"\)$/);
    assert.deepEqual(k.set, [443], 'the existing set stays');
    assert.deepEqual(k.commands.slice(READS.length), ['ipset restore']);
  });

  it('a rejected dry run destroys the set and changes nothing else', async () => {
    const p = plan();
    const k = new FakeKernel(p);
    k.inject = (c) => (c.argv[0] === 'ip6tables-nft-restore' && c.argv.includes('--test') ? 'ip6tables-restore: line 5 failed' : null);
    const err = await applyError(steering(k), p);
    assert.equal(err.message, 'checking iptables-nft ipv6 rules (ip6tables-nft-restore --test): ip6tables-restore: line 5 failed; rolled back');
    assert.deepEqual(k.commands.slice(READS.length), ['ipset restore', 'iptables-nft-restore --test --noflush -w 10', 'ip6tables-nft-restore --test --noflush -w 10', 'ipset destroy tproxy_helper_ports']);
    assert.ok(k.clean);
  });

  it('a failed IPv6 load rolls back the IPv4 chains, rules, routes and the set, newest first', async () => {
    const p = plan();
    const k = new FakeKernel(p);
    k.inject = (c) => (c.argv[0] === 'ip6tables-nft-restore' && !c.argv.includes('--test') ? 'ip6tables-restore: injected' : null);
    const err = await applyError(steering(k), p);
    assert.equal(err.message, 'applying iptables-nft ipv6 mangle chains TPROXY_HELPER_OUT, TPROXY_HELPER_PRE: ip6tables-restore: injected; rolled back');
    assert.deepEqual(k.commands.slice(APPLY_ORDER.length), [
      'iptables-nft-save',
      'iptables-nft-restore --noflush -w 10',
      'iptables-nft-save',
      `ip -6 rule del priority ${P} fwmark 0x2333/0x3fff lookup 233`,
      `ip -4 rule del priority ${P} fwmark 0x2333/0x3fff lookup 233`,
      'ip -6 route del local ::/0 dev lo table 233',
      'ip -4 route del local 0.0.0.0/0 dev lo table 233',
      'ipset destroy tproxy_helper_ports',
    ]);
    assert.ok(k.clean, JSON.stringify({ set: k.set, chains: [...k.chains], objects: [...k.objects] }));
  });

  it('a route table already in use is a collision: nothing is changed', async () => {
    const p = plan();
    const k = new FakeKernel(p);
    k.objects.set('-6 route local ::/0 dev lo table 233', 1);
    const err = await applyError(steering(k), p);
    assert.equal(err.code, 'collision');
    assert.deepEqual(k.commands, READS);
  });

  it('an identical route appearing after the check (EEXIST) fails with the hint and rolls back', async () => {
    const p = plan();
    const k = new FakeKernel(p);
    k.inject = (c) => {
      if (c.argv.join(' ') !== 'ip -6 route add local ::/0 dev lo table 233') return null;
      k.objects.set('-6 route local ::/0 dev lo table 233', 1);
      return 'RTNETLINK answers: File exists';
    };
    const err = await applyError(steering(k), p);
    assert.match(err.message, /^adding ip -6 route local ::\/0 dev lo table 233: RTNETLINK answers: File exists \(already present: .*tproxy-helper --cleanup.*; rolled back$/);
    assert.equal(k.objects.get('-6 route local ::/0 dev lo table 233'), 1, 'left untouched');
    assert.equal(k.objects.get('-4 route local 0.0.0.0/0 dev lo table 233'), 0, 'ours rolled back');
    assert.equal(k.set, null);
  });
});

describe('IptablesSteering.revert', () => {
  it('removes chains (both families), the set, rules and routes; again finds nothing', async () => {
    const p = plan();
    const k = new FakeKernel(p);
    const s = steering(k);
    await s.apply(p);
    const first = await s.revert(p);
    assert.ok(first.ok, JSON.stringify(first));
    assert.deepEqual(
      first.steps.map((st) => [st.step, st.outcome, st.count]),
      [
        ['iptables-nft ipv4 mangle chains TPROXY_HELPER_OUT, TPROXY_HELPER_PRE', 'removed', 4],
        ['iptables-nft ipv6 mangle chains TPROXY_HELPER_OUT, TPROXY_HELPER_PRE', 'removed', 4],
        ['ipset tproxy_helper_ports', 'removed', 1],
        [`ip -6 rule priority ${P} fwmark 0x2333/0x3fff lookup 233`, 'removed', 1],
        [`ip -4 rule priority ${P} fwmark 0x2333/0x3fff lookup 233`, 'removed', 1],
        ['ip -6 route local ::/0 dev lo table 233', 'removed', 1],
        ['ip -4 route local 0.0.0.0/0 dev lo table 233', 'removed', 1],
      ],
    );
    assert.ok(k.clean);
    const again = await s.revert(p);
    assert.ok(again.ok);
    assert.deepEqual(again.steps.map((st) => st.outcome), ['absent', 'absent', 'absent', 'absent', 'absent', 'absent', 'absent']);
    assert.equal(revertError(again), null);
  });

  it('retries destroying a set the kernel still references, and reports one that stays busy', async () => {
    const p = plan();
    const k = new FakeKernel(p);
    k.set = [443];
    k.setBusy = 2;
    const r = await steering(k).revertOwn();
    assert.equal(r.steps.at(-1)?.outcome, 'removed');
    assert.equal(k.commands.filter((c) => c === 'ipset destroy tproxy_helper_ports').length, 3);

    const k2 = new FakeKernel(p);
    k2.set = [443];
    k2.setBusy = 1000;
    const r2 = await steering(k2).revertOwn();
    assert.equal(r2.ok, false);
    assert.equal(k2.commands.filter((c) => c === 'ipset destroy tproxy_helper_ports').length, IPSET_DESTROY_ATTEMPTS);
    assert.match(revertError(r2)?.message ?? '', /ipset tproxy_helper_ports: ipset v7\.17: Set cannot be destroyed: it is in use/);
  });

  it('a flavour that is not installed has nothing to remove', async () => {
    const p = plan();
    const k = new FakeKernel(p);
    for (const b of ['iptables-legacy-save', 'ip6tables-legacy-save', 'ipset']) k.missing.add(b);
    const r = await steering(k, 'iptables-legacy').revertOwn();
    assert.ok(r.ok);
    assert.deepEqual(r.steps.map((st) => st.outcome), ['absent', 'absent', 'absent']);
  });

  it('a failing revert restore is reported, and the remaining steps still run', async () => {
    const p = plan();
    const k = new FakeKernel(p);
    const s = steering(k);
    await s.apply(p);
    k.inject = (c) => (c.argv[0] === 'iptables-nft-restore' ? 'iptables-restore: Couldn\'t load target' : null);
    const r = await s.revert(p);
    assert.equal(r.ok, false);
    assert.equal(r.steps[0]?.outcome, 'failed');
    assert.equal(r.steps[1]?.outcome, 'removed', 'IPv6 still reverted');
    assert.equal(r.steps.at(-1)?.outcome, 'removed', 'routes still reverted');
  });
});

describe('IptablesSteering.heartbeat and verify', () => {
  it('the heartbeat re-adds every port in one ipset restore -exist batch', async () => {
    const p = plan({ ports: [443, 80] });
    const k = new FakeKernel(p);
    await steering(k).apply(p);
    const before = k.fake.calls.length;
    await steering(k).heartbeat(p);
    assert.deepEqual(k.fake.calls.slice(before), [{ argv: ['ipset', 'restore', '-exist'], input: renderIpsetHeartbeat(p) }]);
  });

  it('the heartbeat fails (and creates nothing) once the set is gone', async () => {
    const p = plan();
    const k = new FakeKernel(p);
    await assert.rejects(steering(k).heartbeat(p), (err: unknown) => err instanceof FirewallError && err.code === 'heartbeat-failed' && /^refreshing ipset tproxy_helper_ports: .*does not exist/.test(err.message));
    assert.equal(k.set, null);
  });

  it('verify passes after apply and names each missing rule, element, chain, rule and route', async () => {
    const p = plan();
    const k = new FakeKernel(p);
    const s = steering(k);
    await s.apply(p);
    assert.deepEqual(await s.verify(p), { ok: true, missing: [] });

    const v4 = k.chains.get('ipv4') ?? [];
    k.chains.set('ipv4', v4.filter((l) => !l.includes('CONNMARK')));
    k.set = [];
    k.chains.delete('ipv6');
    k.objects.set(`-4 rule priority ${P} fwmark 0x2333/0x3fff lookup 233`, 0);
    const r = await s.verify(p);
    assert.equal(r.ok, false);
    assert.deepEqual(r.missing, [
      `iptables-nft ipv4 mangle: ${iptablesRuleLines(p, 'ipv4').find((l) => l.includes('CONNMARK'))}`,
      'iptables-nft ipv6 mangle chain TPROXY_HELPER_OUT',
      'iptables-nft ipv6 mangle chain TPROXY_HELPER_PRE',
      'ipset tproxy_helper_ports element(s) 443',
      `ip -4 rule priority ${P} fwmark 0x2333/0x3fff lookup 233`,
    ]);
    k.set = null;
    assert.ok((await s.verify(p)).missing.includes('ipset tproxy_helper_ports'));
  });
});
