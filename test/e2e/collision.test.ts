/**
 * Fwmark masks and collision detection, end to end: the real helper in the client namespace of
 * lib/topology.ts, real `ip rule`/`ip route`/nft state put there by the test, the real JSON-RPC
 * socket and the real tproxyctl.
 *
 *   client ns: [ip rule fwmark 0x2333 lookup 100]  ──▶  capture.start  ──▶  firewall-collision,
 *              nothing applied (no table, rule, route or CA)
 *              [route in table 233]                ──▶  tproxyctl start fails; --table 234 starts
 *              [nft "vpn" table: mark | 0x40000]   ──▶  curl still intercepted; the bit survives
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { methods } from '@tproxy/client';
import type { UpstreamCerts } from './lib/certs.js';
import { curlInNs } from './lib/curl.js';
import { startHelper, tproxyctl, type HelperHandle } from './lib/helper.js';
import { e2ePreflight } from './lib/preflight.js';
import { runInNs } from './lib/proc.js';
import { RawRpc } from './lib/raw-rpc.js';
import type { Topology } from './lib/topology.js';
import { HELLO_BODY } from './lib/upstream-app.js';
import { anchors, ourSteering, waitForExchange } from './lib/checks.js';
import { world } from './lib/world.js';

const skip = await e2ePreflight(['curl', 'systemd-socket-activate', 'update-ca-certificates']);

const GOOD = ['--resolve', 'upstream.test:443:198.18.0.2'];

async function inNs(ns: string, argv: string[]): Promise<string> {
  const r = await runInNs(ns, argv, { timeoutMs: 15_000 });
  assert.equal(r.code, 0, `${argv.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

describe('fwmark masks and collisions end to end', { skip: skip ?? false, timeout: 600_000 }, () => {
  const w = world();
  let dir: string;
  let certs: UpstreamCerts;
  let topo: Topology;
  let helper: HelperHandle;

  before(async () => {
    ({ dir, certs, topo } = w);
    helper = await startHelper(topo, dir, 'helper', certs.caCert);
  });

  after(async () => {
    await helper?.client.close().catch(() => undefined);
  });

  it('refuses capture.start next to a rule using our mark, with firewall-collision, applying nothing', async (t) => {
    await inNs(topo.clientNs, ['ip', 'rule', 'add', 'fwmark', '0x2333', 'lookup', '100']);
    try {
      const rpc = await RawRpc.connect(helper.socketPath);
      try {
        const res = await rpc.request(5, 'capture.start', {}, 30_000);
        t.diagnostic(`transcript: ${JSON.stringify(res)}`);
        assert.equal(res.error?.code, -32015);
        assert.equal(res.error?.data?.code, 'firewall-collision');
        assert.match(res.error?.message ?? '', /^steering would collide with existing rules, nothing was applied: ipv4 rule \d+: from all fwmark 0x2333 lookup 100: /);
        assert.match(res.error?.message ?? '', /choose another mark within markMask \(tproxyctl start --mark N, capture\.start mark\)/);
      } finally {
        rpc.close();
      }
      const status = await helper.client.call(methods.captureStatus, {});
      assert.equal(status.running, false);
      assert.equal(status.caInstalled, false);
      assert.deepEqual(anchors(), [], 'the CA installed before steering was removed again');
      const left = await ourSteering(topo.clientNs);
      assert.doesNotMatch(left, /tproxy_helper|lookup 233|local/, `only the other rule remains:\n${left}`);
      assert.match(left, /fwmark 0x2333 lookup 100/);
    } finally {
      await inNs(topo.clientNs, ['ip', 'rule', 'del', 'fwmark', '0x2333', 'lookup', '100']);
    }
  });

  it('tproxyctl start names a busy route table and how to avoid it; --table picks a free one', async () => {
    await inNs(topo.clientNs, ['ip', '-6', 'route', 'add', 'fd77::/64', 'dev', 'lo', 'table', '233']);
    try {
      const r = await tproxyctl(helper.socketPath, ['start']);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /ipv6 route table 233: unicast fd77::\/64 dev lo: .*choose another routeTable \(tproxyctl start --table N, capture\.start routeTable\)/);
      assert.equal((await helper.client.call(methods.captureStatus, {})).running, false);

      const ok = await tproxyctl(helper.socketPath, ['--json', 'start', '--table', '234']);
      assert.equal(ok.code, 0, ok.stderr);
      const status = JSON.parse(ok.stdout);
      assert.equal(status.config.routeTable, 234);
      assert.equal(status.config.markMask, 0x3fff);
      assert.ok(status.rules.includes('ip rule: send IPv4 packets marked 0x2333 to route table 234 (ip rule priority 4233, fwmark 0x2333/0x3fff)'), status.rules.join('\n'));
      const rules = await inNs(topo.clientNs, ['ip', 'rule', 'show']);
      assert.match(rules, /^4233:\s+from all fwmark 0x2333\/0x3fff lookup 234\s*$/m);
    } finally {
      await tproxyctl(helper.socketPath, ['stop']);
      await inNs(topo.clientNs, ['ip', '-6', 'route', 'del', 'fd77::/64', 'dev', 'lo', 'table', '233']);
    }
    assert.doesNotMatch(await inNs(topo.clientNs, ['ip', 'rule', 'show']), /0x2333/, 'stop removed the masked rule');
  });

  it('rejects a mark outside --mark-mask before touching anything', async () => {
    const r = await tproxyctl(helper.socketPath, ['start', '--mark-mask', '0xff']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /mark: mark 0x2333 has bits outside markMask 0xff \(0x2300\); choose a mark within the mask or widen markMask/);
    assert.equal((await helper.client.call(methods.captureStatus, {})).running, false);
  });

  it('intercepts next to another tool that sets its own mark bit, and leaves that bit set', async (t) => {
    // A "VPN": sets 0x40000 on every packet and connection to port 443, between conntrack and us.
    const vpn = [
      'table inet tpe_vpn {',
      '  chain setbit { type route hook output priority mangle - 10; policy accept;',
      '    meta l4proto tcp tcp dport 443 meta mark set meta mark or 0x40000 ct mark set ct mark or 0x40000',
      '  }',
      '}',
    ].join('\n');
    await runInNs(topo.clientNs, ['nft', '-f', '-'], { input: `${vpn}\n`, timeoutMs: 15_000 }).then((r) => assert.equal(r.code, 0, r.stderr));
    try {
      const status = await helper.client.call(methods.captureStart, { ports: [443] });
      t.diagnostic(`transcript: ${JSON.stringify(status)}`);
      assert.equal(status.running, true);
      // Counts, after our chain, packets carrying both the VPN bit and our mark. Added after start:
      // the collision check would rightly object to a rule matching our mark.
      const observe = [
        'table inet tpe_vpn {',
        '  chain observe { type filter hook output priority filter; policy accept;',
        '    meta l4proto tcp tcp dport 443 meta mark 0x42333 ct mark 0x42333 counter',
        '  }',
        '}',
      ].join('\n');
      await runInNs(topo.clientNs, ['nft', '-f', '-'], { input: `${observe}\n`, timeoutMs: 15_000 }).then((r) => assert.equal(r.code, 0, r.stderr));
      const r = await curlInNs(topo.clientNs, ['--fail', '--http1.1', ...GOOD, 'https://upstream.test/hello?tag=vpn-bit']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, HELLO_BODY);
      await waitForExchange(helper.client, (e) => e.request.url.endsWith('tag=vpn-bit'));
      const listed = await inNs(topo.clientNs, ['nft', 'list', 'table', 'inet', 'tpe_vpn']);
      assert.match(listed, /meta mark 0x00042333 ct mark 0x00042333 counter packets [1-9]/, listed);
    } finally {
      await helper.client.call(methods.captureStop, {});
      await runInNs(topo.clientNs, ['nft', 'delete', 'table', 'inet', 'tpe_vpn'], { timeoutMs: 15_000 });
    }
  });
});
