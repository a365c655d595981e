/**
 * Golden tests of the rendered iptables-restore inputs and ipset batches, plus the pure parsers.
 * The .iptables files under testdata/ are the reviewed output; regenerate them with
 * `UPDATE_GOLDEN=1` and review the diff. iptables-kernel.test.ts feeds the same files to a real
 * `iptables-restore --test` of both flavours when run as root.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { CaptureStartParamsSchema } from '@tproxy/protocol';
import type { CaptureStartParams } from '@tproxy/protocol';
import { FirewallError } from './errors.js';
import {
  describeIptablesPlan,
  iptablesFamilies,
  iptablesRuleLines,
  parseIpsetMembers,
  parseMangle,
  renderIpsetCreate,
  renderIpsetHeartbeat,
  renderIptablesApply,
  renderIptablesRevert,
} from './iptables.js';
import { planSteering } from './plan.js';
import type { SteeringScope } from './plan.js';

const IPTABLES_GOLDEN_CASES: Record<string, { params: CaptureStartParams; scope?: SteeringScope }> = {
  default: { params: {} },
  'multi-port': { params: { ports: [443, 8443, 80], listenPort: 9443, mark: 0x100, bypassMark: 0x200, routeTable: 100 } },
  'ipv4-only': { params: { ipv6: false } },
  'full-mask': { params: { markMask: 0xffffffff } },
  scoped: { params: {}, scope: { uids: [0, 1000], cgroup: { path: 'system.slice/demo.service', level: 2, nftPath: 'system.slice/demo.service' } } },
};

function plan(params: CaptureStartParams, scope?: SteeringScope) {
  return planSteering(CaptureStartParamsSchema.parse(params), scope);
}

function golden(name: string, actual: string): void {
  const url = new URL(`./testdata/${name}.iptables`, import.meta.url);
  if (process.env.UPDATE_GOLDEN === '1') writeFileSync(url, actual);
  assert.equal(actual, readFileSync(url, 'utf8'), `rendered input differs from testdata/${name}.iptables (UPDATE_GOLDEN=1 to accept)`);
}

describe('renderIptablesApply', () => {
  for (const [name, { params, scope }] of Object.entries(IPTABLES_GOLDEN_CASES)) {
    it(`matches the golden input: ${name}`, () => {
      const p = plan(params, scope);
      for (const family of iptablesFamilies(p)) golden(`${name}.${family}`, renderIptablesApply(p, family));
    });
  }

  it('renders the default plan exactly (IPv4)', () => {
    assert.equal(
      renderIptablesApply(plan({}), 'ipv4'),
      [
        '# tproxy-helper steering rules (ipv4); generated from packages/helper/src/firewall/plan.ts',
        '*mangle',
        ':TPROXY_HELPER_OUT - [0:0]',
        ':TPROXY_HELPER_PRE - [0:0]',
        '-A TPROXY_HELPER_OUT -m mark --mark 0x539/0x3fff -j RETURN',
        '-A TPROXY_HELPER_OUT -p tcp -m set --match-set tproxy_helper_ports dst -m conntrack --ctstate NEW -j CONNMARK --set-xmark 0x2333/0x3fff',
        '-A TPROXY_HELPER_OUT -m connmark --mark 0x2333/0x3fff -j MARK --set-xmark 0x2333/0x3fff',
        '-A TPROXY_HELPER_PRE -i lo -p tcp -m set --match-set tproxy_helper_ports dst -m mark --mark 0x2333/0x3fff -j TPROXY --on-port 8443 --on-ip 127.0.0.1 --tproxy-mark 0x2333/0x3fff',
        '-I PREROUTING 1 -j TPROXY_HELPER_PRE',
        '-I OUTPUT 1 -j TPROXY_HELPER_OUT',
        'COMMIT',
        '',
      ].join('\n'),
    );
  });

  it('IPv6 gets the same chains with the IPv6 listener', () => {
    const v6 = renderIptablesApply(plan({}), 'ipv6');
    assert.match(v6, /-j TPROXY --on-port 8443 --on-ip ::1 --tproxy-mark 0x2333\/0x3fff\n/);
    assert.doesNotMatch(v6, /127\.0\.0\.1/);
  });

  it('with ipv6 off steers IPv4 only', () => {
    assert.deepEqual(iptablesFamilies(plan({ ipv6: false })), ['ipv4']);
    assert.deepEqual(iptablesFamilies(plan({})), ['ipv4', 'ipv6']);
  });

  it('a full mask is omitted on matches (as iptables-save prints it) and kept on targets', () => {
    const lines = iptablesRuleLines(plan({ markMask: 0xffffffff }), 'ipv4');
    assert.ok(lines.includes('-A TPROXY_HELPER_OUT -m mark --mark 0x539 -j RETURN'), lines.join('\n'));
    assert.ok(lines.includes('-A TPROXY_HELPER_OUT -m connmark --mark 0x2333 -j MARK --set-xmark 0x2333/0xffffffff'), lines.join('\n'));
  });

  it('scope: one mark-new line per uid, each with the cgroup match', () => {
    const lines = iptablesRuleLines(plan({}, IPTABLES_GOLDEN_CASES.scoped?.scope), 'ipv4').filter((l) => l.includes('CONNMARK'));
    assert.deepEqual(lines, [
      '-A TPROXY_HELPER_OUT -p tcp -m set --match-set tproxy_helper_ports dst -m conntrack --ctstate NEW -m owner --uid-owner 0 -m cgroup --path system.slice/demo.service -j CONNMARK --set-xmark 0x2333/0x3fff',
      '-A TPROXY_HELPER_OUT -p tcp -m set --match-set tproxy_helper_ports dst -m conntrack --ctstate NEW -m owner --uid-owner 1000 -m cgroup --path system.slice/demo.service -j CONNMARK --set-xmark 0x2333/0x3fff',
    ]);
  });

  it('refuses a cgroup path iptables-restore cannot carry as one word', () => {
    const scope: SteeringScope = { cgroup: { path: 'user.slice/my app.scope', level: 2, nftPath: 'user.slice/my app.scope' } };
    assert.throws(() => renderIptablesApply(plan({}, scope), 'ipv4'), (err: unknown) => err instanceof FirewallError && err.code === 'invalid-scope' && /blank/.test(err.message));
  });
});

describe('describeIptablesPlan', () => {
  it('names routes, rules, the set and our chains, in apply order', () => {
    const lines = describeIptablesPlan(plan({ ipv6: false }));
    assert.deepEqual(
      lines.map((l) => l.slice(0, l.indexOf(':'))),
      ['ip route', 'ip rule', 'ipset tproxy_helper_ports', 'iptables TPROXY_HELPER_OUT', 'iptables TPROXY_HELPER_OUT', 'iptables TPROXY_HELPER_OUT', 'iptables TPROXY_HELPER_PRE'],
    );
    assert.equal(lines[2], 'ipset tproxy_helper_ports: ports 443, each expiring 8 s after the helper last refreshed it (fail-open)');
  });
});

describe('ipset batches', () => {
  it('creates a bitmap over the plan\'s port range with timed elements', () => {
    assert.equal(
      renderIpsetCreate(plan({ ports: [443, 8443, 80], listenPort: 9443 })),
      'create tproxy_helper_ports bitmap:port range 80-8443 timeout 8\nadd tproxy_helper_ports 80 timeout 8\nadd tproxy_helper_ports 443 timeout 8\nadd tproxy_helper_ports 8443 timeout 8\n',
    );
  });

  it('the heartbeat only adds (never creates the set)', () => {
    const hb = renderIpsetHeartbeat(plan({ ports: [443, 80] }));
    assert.equal(hb, 'add tproxy_helper_ports 80 timeout 8\nadd tproxy_helper_ports 443 timeout 8\n');
    assert.doesNotMatch(hb, /create/);
  });

  it('parses ipset list members', () => {
    const listing = 'Name: tproxy_helper_ports\nType: bitmap:port\nHeader: range 80-443 timeout 8\nNumber of entries: 2\nMembers:\n80 timeout 7\n443 timeout 3\n';
    assert.deepEqual(parseIpsetMembers(listing), [80, 443]);
    assert.deepEqual(parseIpsetMembers('Name: x\nMembers:\n'), []);
    assert.deepEqual(parseIpsetMembers(''), []);
  });
});

const SAVED = `# Generated by iptables-save v1.8.9 on Sun Nov 22 02:30:12 2026
*filter
:INPUT ACCEPT [0:0]
:TPROXY_HELPER_OUT - [0:0]
-A INPUT -j TPROXY_HELPER_OUT
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:OTHER - [0:0]
:TPROXY_HELPER_OUT - [0:0]
:TPROXY_HELPER_PRE - [0:0]
-A PREROUTING -j TPROXY_HELPER_PRE
-A OUTPUT -j TPROXY_HELPER_OUT
-A OUTPUT -j TPROXY_HELPER_OUT
-A OUTPUT -p tcp -j OTHER
-A OTHER -o eth0 -g TPROXY_HELPER_OUT
-A TPROXY_HELPER_OUT -m mark --mark 0x539/0x3fff -j RETURN
COMMIT
`;

describe('renderIptablesRevert', () => {
  it('deletes every jump to our chains (duplicates and foreign chains too), then our chains; mangle only', () => {
    const r = renderIptablesRevert(SAVED);
    assert.deepEqual(r, {
      count: 6,
      input: [
        '*mangle',
        '-D PREROUTING -j TPROXY_HELPER_PRE',
        '-D OUTPUT -j TPROXY_HELPER_OUT',
        '-D OUTPUT -j TPROXY_HELPER_OUT',
        '-D OTHER -o eth0 -g TPROXY_HELPER_OUT',
        '-F TPROXY_HELPER_OUT',
        '-X TPROXY_HELPER_OUT',
        '-F TPROXY_HELPER_PRE',
        '-X TPROXY_HELPER_PRE',
        'COMMIT',
        '',
      ].join('\n'),
    });
  });

  it('returns null when nothing of ours is in mangle (a filter chain of the same name is not ours)', () => {
    assert.equal(renderIptablesRevert('*filter\n:TPROXY_HELPER_OUT - [0:0]\nCOMMIT\n*mangle\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -j MARK --set-xmark 0x1/0x1\nCOMMIT\n'), null);
    assert.equal(renderIptablesRevert(''), null);
  });

  it('parseMangle reads chains and rules of the mangle table only', () => {
    const m = parseMangle(SAVED);
    assert.ok(m.chains.has('TPROXY_HELPER_PRE'));
    assert.ok(!m.rules.includes('-A INPUT -j TPROXY_HELPER_OUT'));
    assert.equal(m.rules.length, 6);
  });
});
