/**
 * Golden tests of the rendered nft scripts. The .nft files under testdata/ are the reviewed output;
 * regenerate them with `UPDATE_GOLDEN=1` and review the diff. kernel.test.ts feeds the same files
 * to a real `nft -c` when run as root.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { CaptureStartParamsSchema } from '@tproxy/protocol';
import type { CaptureStartParams } from '@tproxy/protocol';
import { renderNftApply, renderNftHeartbeat, renderNftRevert } from './nft.js';
import { planSteering } from './plan.js';

const GOLDEN_CASES: Record<string, CaptureStartParams> = {
  default: {},
  'multi-port': { ports: [443, 8443, 80], listenPort: 9443, mark: 0x100, bypassMark: 0x200, routeTable: 100 },
  'ipv4-only': { ipv6: false },
  'custom-listeners': { listenV4: '127.0.0.2', listenV6: 'fd00::1', listenPort: 15001 },
};

function golden(name: string, actual: string): void {
  const url = new URL(`./testdata/${name}.nft`, import.meta.url);
  if (process.env.UPDATE_GOLDEN === '1') writeFileSync(url, actual);
  assert.equal(actual, readFileSync(url, 'utf8'), `rendered script differs from testdata/${name}.nft (UPDATE_GOLDEN=1 to accept)`);
}

describe('renderNftApply', () => {
  for (const [name, params] of Object.entries(GOLDEN_CASES)) {
    it(`matches the golden script: ${name}`, () => {
      golden(name, renderNftApply(planSteering(CaptureStartParamsSchema.parse(params))));
    });
  }

  it('starts by resetting our table so one transaction replaces it atomically', () => {
    const lines = renderNftApply(planSteering(CaptureStartParamsSchema.parse({}))).split('\n');
    assert.deepEqual(lines.slice(1, 4), ['table inet tproxy_helper {}', 'delete table inet tproxy_helper', 'table inet tproxy_helper {']);
  });

  it('with ipv6 off never mentions ip6', () => {
    const script = renderNftApply(planSteering(CaptureStartParamsSchema.parse({ ipv6: false })));
    assert.doesNotMatch(script, /ip6|ipv6|\[/);
  });
});

describe('renderNftHeartbeat', () => {
  for (const name of ['default', 'multi-port']) {
    it(`matches the golden script: ${name}.heartbeat`, () => {
      golden(`${name}.heartbeat`, renderNftHeartbeat(planSteering(CaptureStartParamsSchema.parse(GOLDEN_CASES[name]))));
    });
  }

  it('replaces the elements in one script (flush + add, one transaction) and never declares the table', () => {
    const script = renderNftHeartbeat(planSteering(CaptureStartParamsSchema.parse({})));
    assert.equal(script, 'flush set inet tproxy_helper ports\nadd element inet tproxy_helper ports { 443 timeout 8s }\n');
    assert.doesNotMatch(script, /^table|delete/m);
  });

  it('gives apply and heartbeat the same element lifetime', () => {
    const p = planSteering(CaptureStartParamsSchema.parse({ ports: [80, 443] }));
    const elements = '{ 80 timeout 8s, 443 timeout 8s }';
    assert.ok(renderNftApply(p).includes(`set ports { type inet_service; flags timeout; elements = ${elements} }`));
    assert.ok(renderNftHeartbeat(p).includes(`add element inet tproxy_helper ports ${elements}`));
  });
});

describe('renderNftRevert', () => {
  it('declares then deletes the table, so it succeeds whether or not the table exists', () => {
    assert.equal(renderNftRevert(), 'table inet tproxy_helper {}\ndelete table inet tproxy_helper\n');
    assert.equal(renderNftRevert('other'), 'table inet other {}\ndelete table inet other\n');
  });
});
