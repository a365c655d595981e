import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CaptureConfigSchema, CaptureStartParamsSchema } from '@tproxy/protocol';
import { planSteering, RULE_PRIORITY } from './plan.js';
import { routeSteps } from './routing.js';

const steps = (p = {}) => routeSteps(planSteering(CaptureStartParamsSchema.parse(p)));

describe('routeSteps', () => {
  it('adds local routes first, then the fwmark rules, with an explicit priority', () => {
    assert.deepEqual(
      steps().map((s) => s.add.join(' ')),
      [
        'ip -4 route add local 0.0.0.0/0 dev lo table 233',
        'ip -6 route add local ::/0 dev lo table 233',
        `ip -4 rule add priority ${RULE_PRIORITY} fwmark 0x2333/0x3fff lookup 233`,
        `ip -6 rule add priority ${RULE_PRIORITY} fwmark 0x2333/0x3fff lookup 233`,
      ],
    );
  });

  it('pairs every add with its exact inverse: same argv, only the verb differs', () => {
    for (const params of [{}, { ipv6: false }, { mark: 0xfffffffe, markMask: 0xffffffff, routeTable: 2147483647 }]) {
      for (const step of steps(params)) {
        const verb = step.add.indexOf('add');
        assert.ok(verb > 0, step.label);
        assert.deepEqual(step.del, [...step.add.slice(0, verb), 'del', ...step.add.slice(verb + 1)], step.label);
        assert.equal(step.add.filter((a) => a === 'add').length, 1, `${step.label}: one verb only`);
      }
    }
  });

  it('names the family explicitly so a rule is never created for the wrong one', () => {
    for (const s of steps()) assert.equal(s.add[1], s.spec.family === 'ipv4' ? '-4' : '-6');
  });

  it('labels steps the way errors and reports name them', () => {
    assert.deepEqual(
      steps({ ipv6: false, mark: 0x10, routeTable: 7 }).map((s) => s.label),
      ['ip -4 route local 0.0.0.0/0 dev lo table 7', `ip -4 rule priority ${RULE_PRIORITY} fwmark 0x10/0x3fff lookup 7`],
    );
  });

  it('names the mask in add and del, so del removes our masked rule and never a same-mark rule with another mask', () => {
    const [rule] = steps({ ipv6: false, markMask: 0xff0, mark: 0x230, bypassMark: 0x540 }).filter((s) => s.spec.kind === 'fwmark-rule');
    assert.deepEqual(rule?.del, ['ip', '-4', 'rule', 'del', 'priority', String(RULE_PRIORITY), 'fwmark', '0x230/0xff0', 'lookup', '233']);
  });

  it('removes a rule recorded before masks existed with the full mask, as it was added', () => {
    const { markMask: _omitted, ...legacy } = CaptureStartParamsSchema.parse({ ipv6: false });
    const config = CaptureConfigSchema.parse(legacy);
    assert.equal(config.markMask, 0xffffffff);
    const [rule] = routeSteps(planSteering(config)).filter((s) => s.spec.kind === 'fwmark-rule');
    assert.deepEqual(rule?.del.slice(6, 8), ['fwmark', '0x2333/0xffffffff']);
  });
});
