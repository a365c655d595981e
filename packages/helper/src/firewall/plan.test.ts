import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CaptureStartParamsSchema } from '@tproxy/protocol';
import type { CaptureConfig, CaptureStartParams } from '@tproxy/protocol';
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
        "mark new TCP connections from this host to port 443 with 0x2333 (except the helper's own, marked 0x539)",
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
        `send IPv4 packets marked 0x2333 to route table 233 (ip rule priority ${RULE_PRIORITY})`,
        `send IPv6 packets marked 0x2333 to route table 233 (ip rule priority ${RULE_PRIORITY})`,
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
