/**
 * Collision detection: the pure check over inspected state, the nft JSON reader, and Steering.apply
 * refusing (with nothing applied) when the kernel state collides. kernel.test.ts repeats the
 * main cases against a real kernel.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CaptureStartParamsSchema, ErrorCode } from '@tproxy/protocol';
import type { CaptureStartParams } from '@tproxy/protocol';
import { FakeExec } from '../exec.js';
import { createLogger, silentLogger } from '../log.js';
import { toRpcError } from '../rpc/errors.js';
import { Steering } from './apply.js';
import { collisionError, findCollisions, parseNftMarkUses } from './collision.js';
import type { CollisionState, NftMarkUse } from './collision.js';
import { FirewallError } from './errors.js';
import { parseIpRules, parseRoutes } from './inspect.js';
import type { IpRuleEntry } from './inspect.js';
import { planSteering, RULE_PRIORITY } from './plan.js';

const P = RULE_PRIORITY;
const plan = (p: CaptureStartParams = {}) => planSteering(CaptureStartParamsSchema.parse(p));

/** A host with only the standard rules, as `ip -N -j rule show` prints them. */
const STANDARD = [
  { priority: 0, src: 'all', table: '255' },
  { priority: 32766, src: 'all', table: '254' },
  { priority: 32767, src: 'all', table: '253' },
];

function rules(family: 'ipv4' | 'ipv6', extra: object[]): IpRuleEntry[] {
  return parseIpRules(family, JSON.stringify([...STANDARD, ...extra]));
}

function state(over: Partial<CollisionState> = {}): CollisionState {
  return { rules: [...rules('ipv4', []), ...rules('ipv6', [])], routes: [], nftMarks: [], errors: [], ...over };
}

const kinds = (s: CollisionState, p = plan()) => findCollisions(p, s).map((c) => `${c.kind}: ${c.what}`);

describe('findCollisions: ip rules', () => {
  it('finds nothing on a host with only the standard rules', () => {
    assert.deepEqual(findCollisions(plan(), state()), []);
  });

  it('reports a foreign rule that selects our mark, at any preference, and how to avoid it', () => {
    const s = state({ rules: rules('ipv4', [{ priority: 32765, src: 'all', fwmark: '0x2333', table: '100' }]) });
    const [c, ...rest] = findCollisions(plan(), s);
    assert.deepEqual(rest, []);
    assert.equal(c?.kind, 'rule-fwmark');
    assert.equal(c?.what, 'ipv4 rule 32765: from all fwmark 0x2333 lookup 100');
    assert.match(c?.why ?? '', /packets it selects \(fwmark 0x2333\) carry our mark 0x2333 under mask 0x3fff/);
    assert.match(c?.fix ?? '', /tproxyctl start --mark N, capture\.start mark/);
  });

  it('reports a rule at an earlier preference that would route our marked packets away', () => {
    // Matches every packet with bit 0x2000, which our 0x2333 has; consulted before ours.
    const s = state({ rules: rules('ipv6', [{ priority: 100, src: 'all', fwmark: '0x2000', fwmask: '0x2000', table: '50' }]) });
    assert.deepEqual(kinds(s), ['rule-fwmark: ipv6 rule 100: from all fwmark 0x2000/0x2000 lookup 50']);
    assert.match(findCollisions(plan(), s)[0]?.why ?? '', /at a preference no later than ours \(4233\)/);
    // The same selector after ours never sees our packets, and its own (0x2000) are not ours.
    assert.deepEqual(kinds(state({ rules: rules('ipv6', [{ priority: 30000, src: 'all', fwmark: '0x2000', fwmask: '0x2000', table: '50' }]) })), []);
  });

  it('leaves VPN and container rules on other mark bits alone (Tailscale, kube-proxy-style marks)', () => {
    const s = state({
      rules: rules('ipv4', [
        { priority: 5210, src: 'all', fwmark: '0x80000', fwmask: '0xff0000', table: '254' },
        { priority: 5230, src: 'all', fwmark: '0x80000', fwmask: '0xff0000', table: '52' },
        { priority: 1000, src: 'all', fwmark: '0x4000', fwmask: '0x4000', table: '77' },
      ]),
    });
    assert.deepEqual(findCollisions(plan(), s), []);
  });

  it('reports any foreign rule at our preference, and an identical one as a possible leftover', () => {
    const other = state({ rules: rules('ipv4', [{ priority: P, src: 'all', table: '99' }]) });
    const [c] = findCollisions(plan(), other);
    assert.equal(c?.kind, 'rule-priority');
    assert.match(c?.why ?? '', /preference 4233, which tproxy reserves/);
    const same = state({ rules: rules('ipv6', [{ priority: P, src: 'all', fwmark: '0x2333', fwmask: '0x3fff', table: '233' }]) });
    const [d] = findCollisions(plan(), same);
    assert.equal(d?.kind, 'rule-priority');
    assert.match(d?.why ?? '', /identical to the rule tproxy would add/);
    assert.match(d?.fix ?? '', /tproxy-helper --cleanup/);
  });

  it('reports a foreign rule that looks up our route table', () => {
    const s = state({ rules: rules('ipv4', [{ priority: 9000, src: '10.0.0.0/8', table: '233' }]) });
    const [c] = findCollisions(plan(), s);
    assert.equal(c?.kind, 'rule-table');
    assert.match(c?.fix ?? '', /tproxyctl start --table N, capture\.start routeTable/);
  });

  it('checks only the families the plan uses', () => {
    const v6 = state({ rules: rules('ipv6', [{ priority: 32765, src: 'all', fwmark: '0x2333', table: '100' }]) });
    assert.equal(findCollisions(plan(), v6).length, 1);
    assert.deepEqual(findCollisions(plan({ ipv6: false }), v6), []);
  });

  it('compares marks under our mask: a foreign mark with extra bits outside it still collides', () => {
    const s = state({ rules: rules('ipv4', [{ priority: 32000, src: 'all', fwmark: '0x42333', table: '100' }]) });
    assert.deepEqual(kinds(s), ['rule-fwmark: ipv4 rule 32000: from all fwmark 0x42333 lookup 100']);
    assert.deepEqual(kinds(s, plan({ markMask: 0xffffffff })), [], 'under the full mask 0x42333 is another mark');
  });
});

describe('findCollisions: route table and nft', () => {
  it('reports a non-empty route table per family, naming a few routes', () => {
    const routes = [...parseRoutes('ipv4', JSON.stringify([{ type: 'unicast', dst: '10.0.0.0/8', dev: 'eth0' }])), ...parseRoutes('ipv6', '[]')];
    const [c, ...rest] = findCollisions(plan(), state({ routes }));
    assert.deepEqual(rest, []);
    assert.equal(c?.kind, 'route-table');
    assert.equal(c?.what, 'ipv4 route table 233: unicast 10.0.0.0/8 dev eth0');
    assert.match(c?.fix ?? '', /choose another routeTable \(tproxyctl start --table N, capture\.start routeTable\)/);
  });

  it('reports another table that sets or matches our mark under our mask, once per place', () => {
    const uses: NftMarkUse[] = [
      { where: 'inet other output', key: 'meta mark', op: 'set', value: 0x2333, mask: 0xffffffff },
      { where: 'inet other output', key: 'meta mark', op: 'set', value: 0x2333, mask: 0xffffffff },
      { where: 'ip mangle OUTPUT', key: 'ct mark', op: 'match', value: 0x2333, mask: 0x3fff },
      { where: 'inet vpn output', key: 'meta mark', op: 'set', value: 0x40000, mask: 0xffffffff },
      { where: 'inet ts prerouting', key: 'meta mark', op: 'match', value: 0x40000, mask: 0xff0000 },
      { where: 'ip kube mark', key: 'meta mark', op: 'match', value: 0x4000, mask: 0x4000 },
    ];
    assert.deepEqual(kinds(state({ nftMarks: uses })), [
      'nft-mark: nft inet other output: meta mark set 0x2333',
      'nft-mark: nft ip mangle OUTPUT: ct mark & 0x3fff == 0x2333',
    ]);
  });

  it('builds one error naming every collision and its fix, mapped to firewall-collision on the wire', () => {
    const s = state({
      rules: rules('ipv4', [{ priority: 32765, src: 'all', fwmark: '0x2333', table: '100' }]),
      routes: parseRoutes('ipv6', JSON.stringify([{ type: 'unicast', dst: 'default', dev: 'wg0' }])),
    });
    const err = collisionError(findCollisions(plan(), s));
    assert.equal(err.code, 'collision');
    assert.match(err.message, /^steering would collide with existing rules, nothing was applied: ipv4 rule 32765: from all fwmark 0x2333 lookup 100: .*; to avoid it, choose another mark .* \| ipv6 route table 233: unicast default dev wg0: .*choose another routeTable/);
    const wire = toRpcError(err, silentLogger);
    assert.equal(wire.code, ErrorCode.FirewallCollision);
    assert.equal(wire.message, err.message);
    assert.equal(toRpcError(new FirewallError('apply-failed', 'x'), silentLogger).code, ErrorCode.FirewallApplyFailed);
    assert.equal(toRpcError(new FirewallError('invalid-scope', 'x'), silentLogger).code, ErrorCode.ScopeUnavailable);
  });
});

describe('parseNftMarkUses', () => {
  // Shapes from `nft -j list ruleset` (nft 1.0.6), trimmed to the rules.
  const rule = (table: string, expr: unknown[]) => ({ rule: { family: 'inet', table, chain: 'output', handle: 2, expr } });
  const meta = { meta: { key: 'mark' } };
  const ct = { ct: { key: 'mark' } };
  const doc = {
    nftables: [
      { metainfo: { version: '1.0.6', json_schema_version: 1 } },
      { table: { family: 'inet', name: 'vpn', handle: 1 } },
      rule('vpn', [{ mangle: { key: meta, value: 0x40000 } }]),
      rule('vpn', [{ mangle: { key: ct, value: { '|': [{ '&': [ct, 4294959923] }, 9011] } } }]),
      rule('vpn', [{ match: { op: '==', left: { '&': [meta, 16383] }, right: 1337 } }, { return: null }]),
      rule('vpn', [{ match: { op: '==', left: meta, right: 9011 } }]),
      rule('vpn', [{ match: { op: '==', left: { payload: { protocol: 'tcp', field: 'dport' } }, right: 443 } }]),
      rule('tproxy_helper', [{ mangle: { key: meta, value: 9011 } }]),
    ],
  };

  it('finds constant sets and compares of meta/ct mark, skipping our own table', () => {
    assert.deepEqual(parseNftMarkUses(JSON.stringify(doc), 'tproxy_helper'), [
      { where: 'inet vpn output', key: 'meta mark', op: 'set', value: 0x40000, mask: 0xffffffff },
      { where: 'inet vpn output', key: 'ct mark', op: 'set', value: 0x2333, mask: 0xffffffff },
      { where: 'inet vpn output', key: 'meta mark', op: 'match', value: 0x539, mask: 0x3fff },
      { where: 'inet vpn output', key: 'meta mark', op: 'match', value: 0x2333, mask: 0xffffffff },
    ]);
  });

  it('is empty for an empty ruleset and throws on garbage (the reader records it)', () => {
    assert.deepEqual(parseNftMarkUses('', 'tproxy_helper'), []);
    assert.deepEqual(parseNftMarkUses('{"nftables":[{"metainfo":{}}]}', 'tproxy_helper'), []);
    assert.throws(() => parseNftMarkUses('{', 'tproxy_helper'));
  });
});

describe('Steering.apply with a collision', () => {
  it('fails with FirewallError(collision) after read-only queries, changing nothing', async () => {
    const exec = new FakeExec();
    exec.respond = (c) =>
      c.argv.join(' ') === 'ip -N -j -4 rule show' ? JSON.stringify([...STANDARD, { priority: 32765, src: 'all', fwmark: '0x2333', table: '100' }]) : '';
    const err = await new Steering(exec, silentLogger).apply(plan()).catch((e: unknown) => e);
    assert.ok(err instanceof FirewallError, String(err));
    assert.equal(err.code, 'collision');
    assert.match(err.message, /ipv4 rule 32765: from all fwmark 0x2333 lookup 100/);
    assert.ok(
      exec.commands.every((c) => / (show|list)( |$)/.test(c)),
      `only read-only commands ran:\n${exec.commands.join('\n')}`,
    );
  });

  it('goes ahead when a query fails (best-effort), and logs that the check was incomplete', async () => {
    const exec = new FakeExec();
    exec.failWhen = (c) => (c.argv.join(' ') === 'nft -j list ruleset' ? 'Error: JSON support not compiled-in' : null);
    const lines: string[] = [];
    await new Steering(exec, createLogger('t', 'debug', (l) => lines.push(l))).apply(plan());
    assert.ok(exec.commands.includes('nft -f -'), 'applied');
    assert.ok(lines.some((l) => /collision check incomplete: listing the nft ruleset as JSON/.test(l)), lines.join('\n'));
  });
});
