/**
 * Steering against a FakeExec that models the kernel just enough: `ip ... add` creates one copy
 * (EEXIST when present), `ip ... del` removes one (ENOENT/ESRCH when absent), and `nft -f` of an
 * apply/revert script creates/removes our table. Failures are injected per argv.
 */
import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import { CaptureStartParamsSchema } from '@tproxy/protocol';
import type { CaptureStartParams } from '@tproxy/protocol';
import { ExecError, FakeExec } from '../exec.js';
import type { Exec, ExecCall, ExecOptions, ExecResult } from '../exec.js';
import { createLogger } from '../log.js';
import type { Logger } from '../log.js';
import { listedSetElements, MAX_DELETES_PER_STEP, revertError, Steering } from './apply.js';
import { FirewallError } from './errors.js';
import { renderNftApply, renderNftHeartbeat, renderNftRevert } from './nft.js';
import { planSteering, RULE_PRIORITY } from './plan.js';

const P = RULE_PRIORITY;
const plan = (p: CaptureStartParams = {}) => planSteering(CaptureStartParamsSchema.parse(p));

/** The read-only collision check (collision.ts) that apply runs before anything else. */
const READS = [
  'nft list tables',
  'ip -N -j -4 rule show',
  'ip -j -4 route show table 233',
  'ip -N -j -6 rule show',
  'ip -j -6 route show table 233',
  'nft -j list ruleset',
];

const APPLY_ORDER = [
  ...READS,
  'nft -c -f -',
  'ip -4 route add local 0.0.0.0/0 dev lo table 233',
  'ip -6 route add local ::/0 dev lo table 233',
  `ip -4 rule add priority ${P} fwmark 0x2333/0x3fff lookup 233`,
  `ip -6 rule add priority ${P} fwmark 0x2333/0x3fff lookup 233`,
  'nft -f -',
];

class FakeKernel {
  readonly exec = new FakeExec();
  /** Copies present per object, keyed by the argv without its verb. */
  readonly objects = new Map<string, number>();
  table = false;
  /** Injected failure: return stderr to fail this call before the kernel model sees it. */
  inject: (call: ExecCall) => string | null = () => null;

  constructor() {
    // failWhen doubles as the kernel model: it applies the call's effect and returns the errno text.
    this.exec.failWhen = (call) => this.inject(call) ?? this.effect(call.argv, call.input);
  }

  private effect(argv: string[], input?: string): string | null {
    if (argv[0] === 'nft') {
      if (argv[1] === '-f') this.table = (input ?? '').includes('set ports');
      return null;
    }
    const verb = argv[3];
    const key = [...argv.slice(0, 3), ...argv.slice(4)].join(' ');
    const n = this.objects.get(key) ?? 0;
    if (verb === 'add') {
      if (n > 0) return 'RTNETLINK answers: File exists';
      this.objects.set(key, 1);
    } else if (verb === 'del') {
      if (n === 0) return argv[1] === '-4' && argv[2] === 'route' ? 'RTNETLINK answers: No such process' : 'RTNETLINK answers: No such file or directory';
      if (n === 1) this.objects.delete(key);
      else this.objects.set(key, n - 1);
    }
    return null;
  }

  get empty(): boolean {
    return !this.table && this.objects.size === 0;
  }
}

function capturingLogger(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: createLogger('test', 'debug', (l) => lines.push(l)), lines };
}

let k: FakeKernel;
let steering: Steering;
let logLines: string[];
beforeEach(() => {
  k = new FakeKernel();
  const { log, lines } = capturingLogger();
  logLines = lines;
  steering = new Steering(k.exec, log);
});

describe('Steering.apply', () => {
  it('checks the script, adds routes, then rules, and loads nft last', async () => {
    const p = plan();
    await steering.apply(p);
    assert.deepEqual(k.exec.commands, APPLY_ORDER);
    assert.equal(k.exec.calls[READS.length]?.input, renderNftApply(p));
    assert.equal(k.exec.calls.at(-1)?.input, renderNftApply(p));
    assert.equal(k.table, true);
    assert.equal(k.objects.size, 4);
  });

  it('with ipv6 off touches IPv4 only', async () => {
    await steering.apply(plan({ ipv6: false }));
    assert.deepEqual(k.exec.commands, [
      ...READS,
      'nft -c -f -',
      'ip -4 route add local 0.0.0.0/0 dev lo table 233',
      `ip -4 rule add priority ${P} fwmark 0x2333/0x3fff lookup 233`,
      'nft -f -',
    ]);
  });

  it('rolls every route and rule back in reverse order when nft fails, and says what it attempted', async () => {
    k.inject = (c) => (c.argv.join(' ') === 'nft -f -' ? 'Error: Could not process rule: No such file or directory' : null);
    const err = await steering.apply(plan()).then(
      () => assert.fail('apply should fail'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof FirewallError);
    assert.equal(err.code, 'apply-failed');
    assert.equal(err.message, 'applying nft ruleset (table inet tproxy_helper): Error: Could not process rule: No such file or directory; rolled back');
    assert.ok(err.cause instanceof ExecError);
    assert.deepEqual(k.exec.commands.slice(APPLY_ORDER.length), [
      `ip -6 rule del priority ${P} fwmark 0x2333/0x3fff lookup 233`,
      `ip -4 rule del priority ${P} fwmark 0x2333/0x3fff lookup 233`,
      'ip -6 route del local ::/0 dev lo table 233',
      'ip -4 route del local 0.0.0.0/0 dev lo table 233',
    ]);
    assert.ok(k.empty);
    assert.ok(logLines.some((l) => l.startsWith('error test: applying nft ruleset')));
  });

  it('rolls back the first route when the second route fails, and never loads nft', async () => {
    k.inject = (c) => (c.argv.join(' ').startsWith('ip -6 route add') ? 'RTNETLINK answers: Permission denied' : null);
    await assert.rejects(steering.apply(plan()), {
      name: 'FirewallError',
      code: 'apply-failed',
      message: 'adding ip -6 route local ::/0 dev lo table 233: RTNETLINK answers: Permission denied; rolled back',
    });
    assert.deepEqual(k.exec.commands, [
      ...READS,
      'nft -c -f -',
      'ip -4 route add local 0.0.0.0/0 dev lo table 233',
      'ip -6 route add local ::/0 dev lo table 233',
      'ip -4 route del local 0.0.0.0/0 dev lo table 233',
    ]);
    assert.ok(k.empty);
  });

  it('changes nothing when the kernel rejects the script in the nft -c dry run', async () => {
    k.inject = (c) => (c.argv.includes('-c') ? '/dev/stdin:4:12-17: Error: syntax error' : null);
    await assert.rejects(steering.apply(plan()), {
      code: 'apply-failed',
      message: 'checking nft ruleset (table inet tproxy_helper): /dev/stdin:4:12-17: Error: syntax error',
    });
    assert.deepEqual(k.exec.commands, [...READS, 'nft -c -f -']);
  });

  // The collision check normally reports such a rule first (collision.test.ts); EEXIST still covers
  // one added between that check and our add.
  it('refuses to adopt an existing identical rule (EEXIST), leaves it in place and rolls back its own routes', async () => {
    k.objects.set(`ip -4 rule priority ${P} fwmark 0x2333/0x3fff lookup 233`, 1);
    const err = await steering.apply(plan()).catch((e: unknown) => e);
    assert.ok(err instanceof FirewallError);
    assert.equal(err.code, 'apply-failed');
    assert.match(err.message, /^adding ip -4 rule priority \d+ fwmark 0x2333\/0x3fff lookup 233: RTNETLINK answers: File exists \(already present/);
    assert.match(err.message, /tproxy-helper --cleanup/);
    assert.deepEqual(k.exec.commands.slice(READS.length + 4), ['ip -6 route del local ::/0 dev lo table 233', 'ip -4 route del local 0.0.0.0/0 dev lo table 233']);
    assert.deepEqual([...k.objects.keys()], [`ip -4 rule priority ${P} fwmark 0x2333/0x3fff lookup 233`], 'the pre-existing rule is not ours to delete');
  });

  it('reports a failed rollback in the error instead of hiding it', async () => {
    k.inject = (c) => {
      const cmd = c.argv.join(' ');
      if (cmd === 'nft -f -') return 'Error: out of memory';
      if (cmd.startsWith('ip -6 route del')) return 'RTNETLINK answers: Operation not permitted';
      return null;
    };
    await assert.rejects(steering.apply(plan()), (e: unknown) => {
      assert.ok(e instanceof FirewallError);
      assert.match(e.message, /^applying nft ruleset \(table inet tproxy_helper\): Error: out of memory; rollback also failed for ip -6 route local ::\/0 dev lo table 233: RTNETLINK answers: Operation not permitted$/);
      return true;
    });
    assert.deepEqual([...k.objects.keys()], ['ip -6 route local ::/0 dev lo table 233']);
  });

  it('maps a missing nft or ip binary to its own code', async () => {
    const missing = (bin: string): Exec => ({
      async run(file: string, args: readonly string[], _o?: ExecOptions): Promise<ExecResult> {
        if (file === bin) throw new ExecError([file, ...args], null, '', 'ENOENT');
        return { stdout: '', stderr: '' };
      },
    });
    const quiet = capturingLogger().log;
    await assert.rejects(new Steering(missing('nft'), quiet).apply(plan()), { code: 'nft-missing', message: /^checking nft ruleset .*: nft is not installed/ });
    await assert.rejects(new Steering(missing('ip'), quiet).apply(plan()), { code: 'ip-missing', message: /^adding ip -4 route .*: ip is not installed/ });
  });
});

describe('Steering.revert', () => {
  it('removes the nft table first, then rules, then routes', async () => {
    const p = plan();
    await steering.apply(p);
    k.exec.calls.length = 0;
    const report = await steering.revert(p);
    assert.ok(report.ok);
    assert.ok(k.empty);
    const deletes = k.exec.commands.filter((c) => !c.startsWith('nft'));
    assert.equal(k.exec.commands[0], 'nft -f -');
    assert.equal(k.exec.calls[0]?.input, renderNftRevert());
    // Each del repeats until the kernel says it is gone: one success, then one "gone".
    assert.deepEqual(deletes, [
      `ip -6 rule del priority ${P} fwmark 0x2333/0x3fff lookup 233`,
      `ip -6 rule del priority ${P} fwmark 0x2333/0x3fff lookup 233`,
      `ip -4 rule del priority ${P} fwmark 0x2333/0x3fff lookup 233`,
      `ip -4 rule del priority ${P} fwmark 0x2333/0x3fff lookup 233`,
      'ip -6 route del local ::/0 dev lo table 233',
      'ip -6 route del local ::/0 dev lo table 233',
      'ip -4 route del local 0.0.0.0/0 dev lo table 233',
      'ip -4 route del local 0.0.0.0/0 dev lo table 233',
    ]);
    assert.deepEqual(
      report.steps.map((s) => [s.step, s.outcome, s.count]),
      [
        ['nft table inet tproxy_helper', 'removed', 1],
        [`ip -6 rule priority ${P} fwmark 0x2333/0x3fff lookup 233`, 'removed', 1],
        [`ip -4 rule priority ${P} fwmark 0x2333/0x3fff lookup 233`, 'removed', 1],
        ['ip -6 route local ::/0 dev lo table 233', 'removed', 1],
        ['ip -4 route local 0.0.0.0/0 dev lo table 233', 'removed', 1],
      ],
    );
    assert.equal(revertError(report), null);
  });

  it('treats "No such file or directory" / "No such process" as already gone and is idempotent', async () => {
    const p = plan();
    await steering.apply(p);
    await steering.revert(p);
    const second = await steering.revert(p);
    assert.ok(second.ok);
    assert.deepEqual(second.steps.slice(1).map((s) => s.outcome), ['absent', 'absent', 'absent', 'absent']);
    const onEmpty = await new Steering(new FakeKernel().exec, capturingLogger().log).revert(p);
    assert.ok(onEmpty.ok);
  });

  it('removes duplicates a crashed run left behind', async () => {
    k.objects.set(`ip -4 rule priority ${P} fwmark 0x2333/0x3fff lookup 233`, 3);
    const report = await steering.revert(plan());
    assert.deepEqual(report.steps.find((s) => s.step.startsWith('ip -4 rule')), {
      step: `ip -4 rule priority ${P} fwmark 0x2333/0x3fff lookup 233`,
      outcome: 'removed',
      count: 3,
    });
    assert.ok(k.empty);
  });

  it(`stops after ${MAX_DELETES_PER_STEP} deletes of one step even if ip keeps succeeding`, async () => {
    const exec = new FakeExec();
    const report = await new Steering(exec, capturingLogger().log).revert(plan({ ipv6: false }));
    assert.equal(exec.commands.filter((c) => c.startsWith('ip -4 rule del')).length, MAX_DELETES_PER_STEP);
    assert.ok(report.steps.slice(1).every((s) => s.outcome === 'removed' && s.count === MAX_DELETES_PER_STEP));
  });

  it('continues past failures, logs and reports them, and never throws', async () => {
    const p = plan();
    await steering.apply(p);
    k.inject = (c) => {
      const cmd = c.argv.join(' ');
      if (cmd === 'nft -f -') return 'Error: Could not process rule: Device or resource busy';
      if (cmd.startsWith('ip -4 rule del')) return 'RTNETLINK answers: Operation not permitted';
      return null;
    };
    const report = await steering.revert(p);
    assert.equal(report.ok, false);
    assert.deepEqual(
      report.steps.map((s) => s.outcome),
      ['failed', 'removed', 'failed', 'removed', 'removed'],
    );
    assert.deepEqual([...k.objects.keys()], [`ip -4 rule priority ${P} fwmark 0x2333/0x3fff lookup 233`]);
    const err = revertError(report);
    assert.ok(err instanceof FirewallError);
    assert.equal(err.code, 'revert-failed');
    assert.match(err.message, /left 2 item\(s\) behind: nft table inet tproxy_helper: Error: Could not process rule: Device or resource busy; ip -4 rule .*Operation not permitted/);
    assert.ok(logLines.some((l) => l.startsWith('error test: reverting ip -4 rule')));
  });
});

describe('Steering.verify', () => {
  const LISTING = [
    'table inet tproxy_helper {',
    '\tset ports {',
    '\t\ttype inet_service',
    '\t\tflags timeout',
    '\t\telements = { 443 timeout 8s expires 6s120ms }',
    '\t}',
    '',
    '\tchain output {',
    '\t\ttype route hook output priority mangle; policy accept;',
    '\t\tmeta mark & 0x00003fff == 0x00000539 return',
    '\t\ttcp dport @ports ct state new ct mark set ct mark & 0xffffe333 | 0x00002333',
    '\t\tct mark & 0x00003fff == 0x00002333 meta mark set meta mark & 0xffffe333 | 0x00002333',
    '\t}',
    '\tchain prerouting {',
    '\t\tiifname "lo" tcp dport @ports meta mark & 0x00003fff == 0x00002333 meta nfproto ipv4 tproxy ip to 127.0.0.1:8443 accept',
    '\t\tiifname "lo" tcp dport @ports meta mark & 0x00003fff == 0x00002333 meta nfproto ipv6 tproxy ip6 to [::1]:8443 accept',
    '\t}',
    '}',
  ].join('\n');
  const RULES = (fwmask = '0x3fff') =>
    JSON.stringify([
      { priority: 0, src: 'all', table: '255' },
      { priority: P, src: 'all', fwmark: '0x2333', ...(fwmask ? { fwmask } : {}), table: '233' },
      { priority: 32766, src: 'all', table: '254' },
    ]);
  const ROUTES = JSON.stringify([{ type: 'local', dst: 'default', dev: 'lo', scope: 'host', flags: [] }]);

  function responder(overrides: Record<string, string> = {}) {
    const table: Record<string, string> = {
      'nft list tables': 'table inet other\ntable inet tproxy_helper\n',
      'nft list table inet tproxy_helper': LISTING,
      'ip -N -j -4 rule show': RULES(),
      'ip -N -j -6 rule show': RULES(),
      'ip -j -4 route show table 233': ROUTES,
      'ip -j -6 route show table 233': ROUTES,
      ...overrides,
    };
    return (c: ExecCall) => table[c.argv.join(' ')] ?? '';
  }

  it('is ok when everything is present', async () => {
    const exec = new FakeExec();
    exec.respond = responder();
    assert.deepEqual(await new Steering(exec, capturingLogger().log).verify(plan()), { ok: true, missing: [] });
  });

  it('names what is missing', async () => {
    const exec = new FakeExec();
    exec.respond = responder({
      'nft list tables': 'table inet other\n',
      'ip -N -j -6 rule show': RULES('0xffff'),
      'ip -j -4 route show table 233': '[]',
    });
    const result = await new Steering(exec, capturingLogger().log).verify(plan());
    assert.deepEqual(result, {
      ok: false,
      missing: ['nft table inet tproxy_helper', 'ip -4 route local 0.0.0.0/0 dev lo table 233', `ip -6 rule priority ${P} fwmark 0x2333/0x3fff lookup 233`],
    });
  });

  it('does not take a same-mark rule with the full mask (no fwmask listed) for ours', async () => {
    const exec = new FakeExec();
    exec.respond = responder({ 'ip -N -j -4 rule show': RULES('') });
    const result = await new Steering(exec, capturingLogger().log).verify(plan());
    assert.deepEqual(result.missing, [`ip -4 rule priority ${P} fwmark 0x2333/0x3fff lookup 233`]);
  });

  it('notices a rule that writes the whole mark instead of our bits only', async () => {
    const exec = new FakeExec();
    const whole = LISTING.replace('ct mark set ct mark & 0xffffe333 | 0x00002333', 'ct mark set 0x00002333');
    exec.respond = responder({ 'nft list table inet tproxy_helper': whole });
    const result = await new Steering(exec, capturingLogger().log).verify(plan());
    assert.deepEqual(result.missing, ['nft inet tproxy_helper output: mark-new rule']);
  });

  it('notices a missing IPv6 listener rule inside an existing table', async () => {
    const exec = new FakeExec();
    exec.respond = responder({ 'nft list table inet tproxy_helper': LISTING.replace(/.*tproxy ip6.*\n/, '') });
    const result = await new Steering(exec, capturingLogger().log).verify(plan());
    assert.deepEqual(result.missing, ['nft inet tproxy_helper prerouting: tproxy ip6 to listener']);
  });

  it('notices expired port elements (the fail-open timeout ran out) and a flushed chain', async () => {
    const exec = new FakeExec();
    const listing = LISTING.replace(/.*elements = .*\n/, '').replace(/.*(return|ct state new|meta mark set).*\n/g, '');
    exec.respond = responder({ 'nft list table inet tproxy_helper': listing });
    const result = await new Steering(exec, capturingLogger().log).verify(plan());
    assert.deepEqual(result.missing, [
      'nft set inet tproxy_helper ports element(s) 443',
      'nft inet tproxy_helper output: bypass rule',
      'nft inet tproxy_helper output: mark-new rule',
      'nft inet tproxy_helper output: restore-mark rule',
    ]);
  });
});

describe('listedSetElements', () => {
  it('reads ports with or without timeouts, and [] for an empty or absent set', () => {
    assert.deepEqual(listedSetElements('set ports {\n\t\telements = { 80 timeout 8s expires 7s992ms, 443 timeout 8s expires 7s992ms }\n\t}'), [80, 443]);
    assert.deepEqual(listedSetElements('set ports {\n\t\telements = { 80, 443,\n\t\t\t8443 }\n\t}'), [80, 443, 8443]);
    assert.deepEqual(listedSetElements('set ports {\n\t\ttype inet_service\n\t\tflags timeout\n\t}\n\tchain x {\n\t}'), []);
    assert.deepEqual(listedSetElements('table inet tproxy_helper {\n}'), []);
  });
});

describe('Steering.heartbeat', () => {
  it('runs the heartbeat script as one nft -f transaction', async () => {
    const exec = new FakeExec();
    await new Steering(exec, capturingLogger().log).heartbeat(plan({ ports: [443, 80] }));
    assert.equal(exec.calls.length, 1);
    assert.deepEqual(exec.calls[0]!.argv, ['nft', '-f', '-']);
    assert.equal(exec.calls[0]!.input, renderNftHeartbeat(plan({ ports: [443, 80] })));
    assert.equal(exec.calls[0]!.input, 'flush set inet tproxy_helper ports\nadd element inet tproxy_helper ports { 80 timeout 8s, 443 timeout 8s }\n');
  });

  it('throws heartbeat-failed with nft\'s stderr when our table is gone', async () => {
    const exec = new FakeExec();
    exec.failWhen = () => 'Error: No such file or directory';
    await assert.rejects(new Steering(exec, capturingLogger().log).heartbeat(plan()), (err: unknown) => {
      assert.ok(err instanceof FirewallError);
      assert.equal(err.code, 'heartbeat-failed');
      assert.equal(err.message, 'refreshing nft set inet tproxy_helper ports: Error: No such file or directory');
      return true;
    });
  });
});
