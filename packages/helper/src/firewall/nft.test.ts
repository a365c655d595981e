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
import { FirewallError } from './errors.js';
import { keepMask, renderNftApply, renderNftHeartbeat, renderNftRevert } from './nft.js';
import { planSteering } from './plan.js';
import type { SteeringScope } from './plan.js';

const GOLDEN_CASES: Record<string, CaptureStartParams> = {
  default: {},
  'multi-port': { ports: [443, 8443, 80], listenPort: 9443, mark: 0x100, bypassMark: 0x200, routeTable: 100 },
  'ipv4-only': { ipv6: false },
  'custom-listeners': { listenV4: '127.0.0.2', listenV6: 'fd00::1', listenPort: 15001 },
  'wide-mask': { markMask: 0xffff00, mark: 0x2300, bypassMark: 0x500 },
  scoped: {},
};

/** Scopes of the golden cases that have one (as the capture service resolves them). */
const GOLDEN_SCOPES: Record<string, SteeringScope> = {
  // A hybrid host's path (cgroup2 at /sys/fs/cgroup/unified); kernel.test.ts creates this cgroup to nft -c it.
  scoped: { uids: [0, 1000], cgroup: { path: 'tproxy-golden-test', level: 1, nftPath: 'unified/tproxy-golden-test' } },
};

const planFor = (params: CaptureStartParams, scope: SteeringScope = {}) => planSteering(CaptureStartParamsSchema.parse(params), scope);

function golden(name: string, actual: string): void {
  const url = new URL(`./testdata/${name}.nft`, import.meta.url);
  if (process.env.UPDATE_GOLDEN === '1') writeFileSync(url, actual);
  assert.equal(actual, readFileSync(url, 'utf8'), `rendered script differs from testdata/${name}.nft (UPDATE_GOLDEN=1 to accept)`);
}

describe('renderNftApply', () => {
  for (const [name, params] of Object.entries(GOLDEN_CASES)) {
    it(`matches the golden script: ${name}`, () => {
      golden(name, renderNftApply(planFor(params, GOLDEN_SCOPES[name])));
    });
  }

  it('sets and compares only the bits of the mark mask', () => {
    const script = renderNftApply(planFor({}));
    assert.equal(keepMask(0x3fff), 0xffffc000);
    assert.ok(script.includes('meta mark and 0x3fff == 0x539 return'), script);
    assert.ok(script.includes('ct state new ct mark set ct mark and 0xffffc000 or 0x2333'), script);
    assert.ok(script.includes('ct mark and 0x3fff == 0x2333 meta mark set meta mark and 0xffffc000 or 0x2333'), script);
    assert.equal(script.match(/meta mark and 0x3fff == 0x2333 meta nfproto/g)?.length, 2, script);
    assert.doesNotMatch(script, /mark set 0x|mark 0x2333 /, 'no mark is written or compared whole');
  });

  it('restricts only the mark-new rule to the scope: uids, cgroup, or both', () => {
    const cgroup = { path: 'system.slice/nginx.service', level: 2, nftPath: 'unified/system.slice/nginx.service' };
    const markNew = (scope: SteeringScope) => renderNftApply(planFor({}, scope)).split('\n').filter((l) => l.includes('ct state new'));
    assert.deepEqual(markNew({ uids: [1000] }), ['    meta l4proto tcp tcp dport @ports ct state new meta skuid 1000 ct mark set ct mark and 0xffffc000 or 0x2333']);
    assert.deepEqual(markNew({ uids: [0, 1000] }), ['    meta l4proto tcp tcp dport @ports ct state new meta skuid { 0, 1000 } ct mark set ct mark and 0xffffc000 or 0x2333']);
    assert.deepEqual(markNew({ cgroup }), [
      '    meta l4proto tcp tcp dport @ports ct state new socket cgroupv2 level 2 "unified/system.slice/nginx.service" ct mark set ct mark and 0xffffc000 or 0x2333',
    ]);
    assert.match(markNew({ uids: [7], cgroup })[0] ?? '', /ct state new meta skuid 7 socket cgroupv2 level 2 "unified\/system\.slice\/nginx\.service" ct mark set/);
    const unscoped = renderNftApply(planFor({}));
    assert.doesNotMatch(unscoped, /skuid|cgroupv2/);
    const scoped = renderNftApply(planFor({}, { uids: [1000], cgroup }));
    assert.equal(scoped.match(/skuid/g)?.length, 1, 'only the mark-new rule is scoped (restore and tproxy follow the mark)');
  });

  it('refuses a cgroup path nft cannot quote instead of rendering it', () => {
    for (const nftPath of ['unified/a"b', 'unified/a\\b', 'unified/a\nb']) {
      assert.throws(
        () => renderNftApply(planFor({}, { cgroup: { path: nftPath, level: 2, nftPath } })),
        (e: unknown) => e instanceof FirewallError && e.code === 'invalid-scope' && /nft cannot express/.test(e.message),
        nftPath,
      );
    }
  });

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
      golden(`${name}.heartbeat`, renderNftHeartbeat(planFor(GOLDEN_CASES[name] ?? {})));
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
