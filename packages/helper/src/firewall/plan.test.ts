import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CaptureStartParamsSchema } from '@tproxy/protocol';
import type { CaptureConfig, CaptureStartParams } from '@tproxy/protocol';
import { FirewallError } from './errors.js';
import { describePlan, hex, NFT_TABLE_NAME, planSteering, RULE_PRIORITY } from './plan.js';

const config = (p: CaptureStartParams = {}): CaptureConfig => CaptureStartParamsSchema.parse(p);

describe('planSteering', () => {
  it('explains every default rule in one sentence', () => {
    const plan = planSteering(config());
    const [output, prerouting] = plan.chains;
    assert.deepEqual(
      output?.rules.map((r) => r.explain()),
      [
        "let the helper's own upstream connections (marked 0x539) pass untouched, so nothing is intercepted twice",
        "mark new TCP connections from this host to port 443 with 0x2333 (except the helper's own, marked 0x539), changing only mark bits 0x3fff",
        'give every packet of a connection marked 0x2333 the same packet mark, so policy routing sends it to table 233',
      ],
    );
    assert.deepEqual(
      prerouting?.rules.map((r) => r.explain()),
      [
        'hand marked IPv4 TCP packets to port 443 looped back on lo to the transparent listener 127.0.0.1:8443',
        'hand marked IPv6 TCP packets to port 443 looped back on lo to the transparent listener [::1]:8443',
      ],
    );
    assert.deepEqual(
      plan.routing.map((r) => r.explain()),
      [
        'deliver every IPv4 destination looked up in route table 233 to this host (local 0.0.0.0/0 dev lo)',
        'deliver every IPv6 destination looked up in route table 233 to this host (local ::/0 dev lo)',
        `send IPv4 packets marked 0x2333 to route table 233 (ip rule priority ${RULE_PRIORITY}, fwmark 0x2333/0x3fff)`,
        `send IPv6 packets marked 0x2333 to route table 233 (ip rule priority ${RULE_PRIORITY}, fwmark 0x2333/0x3fff)`,
      ],
    );
  });

  it('uses our own table and the standard chain shapes', () => {
    const plan = planSteering(config());
    assert.deepEqual(plan.table, { family: 'inet', name: NFT_TABLE_NAME });
    assert.notEqual(plan.table.name, 'tproxy', '"tproxy" is an nft keyword and does not parse as a table name');
    assert.deepEqual(
      plan.chains.map((c) => [c.name, c.type, c.hook, c.priority, c.policy]),
      [
        ['output', 'route', 'output', 'mangle', 'accept'],
        ['prerouting', 'filter', 'prerouting', 'mangle', 'accept'],
      ],
    );
    assert.deepEqual(
      plan.chains[0]?.rules.map((r) => r.kind),
      ['bypass', 'mark-new', 'restore-mark'],
      'the bypass return must come first, or the helper would intercept its own upstream connections',
    );
  });

  it('sorts the port set and names every port in the explanation', () => {
    const plan = planSteering(config({ ports: [8443, 443, 80], listenPort: 9000 }));
    assert.deepEqual(plan.ports, [80, 443, 8443]);
    assert.match(plan.chains[0]?.rules[1]?.explain() ?? '', /to ports 80, 443, 8443 with 0x2333/);
    assert.match(plan.chains[1]?.rules[0]?.explain() ?? '', /listener 127\.0\.0\.1:9000$/);
  });

  it('with ipv6 off: no IPv6 listener, rule or route, and output only marks IPv4', () => {
    const plan = planSteering(config({ ipv6: false }));
    assert.deepEqual(plan.chains[1]?.rules.map((r) => (r.kind === 'tproxy' ? r.family : r.kind)), ['ipv4']);
    assert.deepEqual(plan.routing.map((r) => `${r.kind}/${r.family}`), ['local-route/ipv4', 'fwmark-rule/ipv4']);
    const [, markNew, restore] = plan.chains[0]?.rules ?? [];
    assert.equal(markNew?.kind === 'mark-new' && markNew.family, 'ipv4');
    assert.equal(restore?.kind === 'restore-mark' && restore.family, 'ipv4');
    assert.match(markNew?.explain() ?? '', /^mark new IPv4 TCP connections/);
  });

  it('carries the mark mask on every rule that sets or compares a mark', () => {
    const plan = planSteering(config({ markMask: 0xff00, mark: 0x100, bypassMark: 0x200 }));
    const masks = [...plan.chains.flatMap((c) => c.rules), ...plan.routing.filter((r) => r.kind === 'fwmark-rule')].map((r) => ('mask' in r ? r.mask : null));
    assert.deepEqual(masks, [0xff00, 0xff00, 0xff00, 0xff00, 0xff00, 0xff00, 0xff00]);
    assert.equal(plan.config.markMask, 0xff00);
  });

  it('scopes the mark-new rule and says whose connections it takes', () => {
    const cgroup = { path: 'system.slice/nginx.service', level: 2, nftPath: 'unified/system.slice/nginx.service' };
    const markNew = (scope: Parameters<typeof planSteering>[1]) => planSteering(config(), scope).chains[0]?.rules[1];
    assert.deepEqual(planSteering(config()).scope, {});
    const one = markNew({ uids: [1000] });
    assert.deepEqual(one?.kind === 'mark-new' && one.scope, { uids: [1000] });
    assert.match(one?.explain() ?? '', /^mark new TCP connections from processes of uid 1000 to port 443 with 0x2333/);
    assert.match(markNew({ uids: [0, 1000] })?.explain() ?? '', /from processes of uids 0, 1000 to port 443/);
    assert.match(markNew({ cgroup })?.explain() ?? '', /from processes in cgroup system\.slice\/nginx\.service to port 443/);
    assert.match(markNew({ uids: [1000], cgroup })?.explain() ?? '', /from processes of uid 1000 in cgroup system\.slice\/nginx\.service to/);
  });

  it('refuses a scope that would widen silently or cannot be rendered', () => {
    const invalid = (e: unknown) => e instanceof FirewallError && e.code === 'invalid-scope';
    assert.throws(() => planSteering(config(), { uids: [] }), (e: unknown) => invalid(e) && /name at least one uid/.test((e as Error).message));
    assert.throws(() => planSteering(config(), { uids: [-1] }), invalid);
    assert.throws(() => planSteering(config(), { uids: [1.5] }), invalid);
    assert.throws(() => planSteering(config(), { cgroup: { path: 'x', level: 0, nftPath: 'x' } }), invalid);
  });

  it('renders marks as hex', () => {
    assert.equal(hex(0x2333), '0x2333');
    assert.equal(hex(0xffffffff), '0xffffffff');
    const plan = planSteering(config({ mark: 1, bypassMark: 0xabc }));
    assert.match(plan.chains[0]?.rules[0]?.explain() ?? '', /marked 0xabc/);
  });
});

describe('describePlan', () => {
  it('lists routes, then ip rules, then nft rules: the apply order', () => {
    const lines = describePlan(planSteering(config()));
    assert.equal(lines.length, 9);
    assert.deepEqual(
      lines.map((l) => l.slice(0, l.indexOf(':'))),
      ['ip route', 'ip route', 'ip rule', 'ip rule', 'nft output', 'nft output', 'nft output', 'nft prerouting', 'nft prerouting'],
    );
    assert.equal(lines[4], "nft output: let the helper's own upstream connections (marked 0x539) pass untouched, so nothing is intercepted twice");
  });

  it('has one line per item with ipv6 off', () => {
    assert.equal(describePlan(planSteering(config({ ipv6: false }))).length, 6);
  });
});
