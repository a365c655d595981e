/**
 * Real-kernel tests of IptablesSteering, for BOTH flavours (iptables-legacy and iptables-nft), root
 * only (skipped otherwise with the reason). Each test builds a throwaway network namespace, runs
 * iptables-netns-child.ts inside it with realExec, and deletes the namespace in `finally`. The host
 * namespace is never changed: every command runs under `ip netns exec`, and the child refuses to
 * run unless `ip netns identify` names its namespace.
 *
 *   netns tpn-ipt-<pid>-<n>
 *   ┌──────────────────────────────────────────────────────────────────────────────────────────┐
 *   │ client ─SYN→ 203.0.113.7:443 ─▶ mangle OUTPUT → TPROXY_HELPER_OUT: CONNMARK/MARK 0x2333   │
 *   │   (port in ipset tproxy_helper_ports) ─▶ ip rule → table 233 (local default dev lo) ─▶ lo │
 *   │   ─▶ mangle PREROUTING → TPROXY_HELPER_PRE: TPROXY ─▶ IP_TRANSPARENT 127.0.0.1:8443       │
 *   │ va 10.200.0.1/24, fd99::1/64 ── vb   (default via .2 / ::2, which never answers, so       │
 *   │                                       anything not intercepted times out)                │
 *   └──────────────────────────────────────────────────────────────────────────────────────────┘
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import { IPTABLES_BINARIES } from './iptables-apply.js';
import type { IptablesFlavour } from './iptables-apply.js';
import type { Job, Result, Snapshot } from './iptables-netns-child.js';
import { RULE_PRIORITY } from './plan.js';

const CHILD = fileURLToPath(new URL('./iptables-netns-child.ts', import.meta.url));
const TESTDATA = fileURLToPath(new URL('./testdata/', import.meta.url));
const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url));

function sh(file: string, args: string[], input?: string, timeout = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(file, args, { cwd: REPO_ROOT, timeout, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr: stderr || (err && typeof err.code !== 'number' ? String(err.message) : '') });
    });
    // A command that exits without reading stdin (e.g. --version) must not crash the test with EPIPE.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(input ?? '');
  });
}

async function prerequisite(): Promise<string | false> {
  if (process.platform !== 'linux') return 'skipped: Linux only';
  if (process.getuid?.() !== 0) return 'skipped: needs root to create a network namespace (run as root to exercise the real kernel)';
  for (const [bin, args] of [['ip', ['-V']], ['ipset', ['version']]] as const) {
    const r = await sh(bin, [...args]);
    if (r.code !== 0) return `skipped: ${bin} not usable (${r.stderr.trim() || `exit ${r.code}`}); install iproute2 and ipset`;
  }
  return false;
}

async function flavourMissing(flavour: IptablesFlavour): Promise<string | false> {
  for (const family of ['ipv4', 'ipv6'] as const) {
    const bin = IPTABLES_BINARIES[flavour][family].restore;
    const r = await sh(bin, ['--version']);
    if (r.code !== 0) return `skipped: ${bin} not usable (${r.stderr.trim() || `exit ${r.code}`}); install the iptables package`;
  }
  return false;
}

const skip = await prerequisite();
const FLAVOURS: IptablesFlavour[] = ['iptables-legacy', 'iptables-nft'];
const flavourSkip = Object.fromEntries(await Promise.all(FLAVOURS.map(async (f) => [f, skip || (await flavourMissing(f))] as const))) as Record<IptablesFlavour, string | false>;
let counter = 0;

/** Creates a namespace with lo up and an unanswered next hop, runs fn, always deletes it. */
async function withNetns(t: TestContext, fn: (ns: string) => Promise<void>): Promise<void> {
  const ns = `tpn-ipt-${process.pid}-${++counter}`;
  const added = await sh('ip', ['netns', 'add', ns]);
  if (added.code !== 0) {
    t.skip(`skipped: cannot create a network namespace: ${added.stderr.trim()}`);
    return;
  }
  try {
    const setup = [
      'ip link set lo up',
      'ip link add va type veth peer name vb',
      'ip addr add 10.200.0.1/24 dev va',
      'ip -6 addr add fd99::1/64 dev va nodad',
      'ip link set va up',
      'ip link set vb up',
      'ip route add default via 10.200.0.2',
      'ip -6 route add default via fd99::2',
    ];
    for (const cmd of setup) {
      const r = await sh('ip', ['netns', 'exec', ns, ...cmd.split(' ')]);
      assert.equal(r.code, 0, `netns setup "${cmd}": ${r.stderr}`);
    }
    await fn(ns);
  } finally {
    const del = await sh('ip', ['netns', 'del', ns]);
    assert.equal(del.code, 0, `deleting netns ${ns}: ${del.stderr}`);
  }
}

function inNetns(ns: string, argv: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return sh('ip', ['netns', 'exec', ns, ...argv], input);
}

async function runChild(ns: string, job: Omit<Job, 'netns'>): Promise<Result> {
  const r = await inNetns(ns, [process.execPath, '--import', 'tsx', CHILD, JSON.stringify({ ...job, netns: ns })]);
  assert.equal(r.code, 0, `child failed (exit ${r.code}):\n${r.stderr}`);
  const last = r.stdout.trim().split('\n').at(-1) ?? '';
  return JSON.parse(last) as Result;
}

/** `-A` lines of a golden input (our chains' rules), which iptables-save must print verbatim. */
function ruleLinesOf(input: string): string[] {
  return input.split('\n').filter((l) => l.startsWith('-A '));
}

function assertClean(label: string, s: Snapshot): void {
  assert.doesNotMatch(s.save4, /TPROXY_HELPER/, `${label}: IPv4 chains or jumps still present`);
  assert.doesNotMatch(s.save6, /TPROXY_HELPER/, `${label}: IPv6 chains or jumps still present`);
  assert.doesNotMatch(s.ipset, /tproxy_helper_ports/, `${label}: ipset still present`);
  assert.doesNotMatch(s.rules4, /0x2333|lookup 233/, `${label}: ipv4 rule still present`);
  assert.doesNotMatch(s.rules6, /0x2333|lookup 233/, `${label}: ipv6 rule still present`);
  assert.doesNotMatch(s.routes4, /local/, `${label}: ipv4 route still present`);
  assert.doesNotMatch(s.routes6, /local/, `${label}: ipv6 route still present`);
}

const OUR_RULE = new RegExp(`^${RULE_PRIORITY}:\\s+from all fwmark 0x2333/0x3fff lookup 233\\s*$`, 'm');

for (const flavour of FLAVOURS) {
  describe(`IptablesSteering (${flavour}) on a real kernel (network namespace)`, { skip: flavourSkip[flavour] }, () => {
    it('applies the default plan exactly as rendered, verifies it, reverts it, and reverts again harmlessly', async (t) => {
      await withNetns(t, async (ns) => {
        const r = await runChild(ns, { flavour, mode: 'lifecycle', params: {} });
        assert.equal(r.applyError, undefined);
        const a = r.afterApply;
        const golden4 = readFileSync(`${TESTDATA}default.ipv4.iptables`, 'utf8');
        const golden6 = readFileSync(`${TESTDATA}default.ipv6.iptables`, 'utf8');
        for (const line of [...ruleLinesOf(golden4), '-A OUTPUT -j TPROXY_HELPER_OUT', '-A PREROUTING -j TPROXY_HELPER_PRE']) {
          assert.ok(a.save4.split('\n').includes(line), `iptables-save lacks "${line}":\n${a.save4}`);
        }
        for (const line of ruleLinesOf(golden6)) assert.ok(a.save6.split('\n').includes(line), `ip6tables-save lacks "${line}":\n${a.save6}`);
        assert.match(a.ipset, /^tproxy_helper_ports$/m);
        assert.match(a.rules4, OUR_RULE);
        assert.match(a.rules6, OUR_RULE);
        assert.match(a.routes4, /^local default dev lo /m);
        assert.match(a.routes6, /^local default dev lo /m);
        assert.deepEqual(r.verify, { ok: true, missing: [] });

        assert.ok(r.revert.ok, JSON.stringify(r.revert));
        assert.deepEqual(
          r.revert.steps.map((s) => [s.step, s.outcome]),
          [
            [`${flavour} ipv4 mangle chains TPROXY_HELPER_OUT, TPROXY_HELPER_PRE`, 'removed'],
            [`${flavour} ipv6 mangle chains TPROXY_HELPER_OUT, TPROXY_HELPER_PRE`, 'removed'],
            ['ipset tproxy_helper_ports', 'removed'],
            [`ip -6 rule priority ${RULE_PRIORITY} fwmark 0x2333/0x3fff lookup 233`, 'removed'],
            [`ip -4 rule priority ${RULE_PRIORITY} fwmark 0x2333/0x3fff lookup 233`, 'removed'],
            ['ip -6 route local ::/0 dev lo table 233', 'removed'],
            ['ip -4 route local 0.0.0.0/0 dev lo table 233', 'removed'],
          ],
        );
        assertClean('after revert', r.afterRevert);
        assert.ok(r.revertAgain.ok, JSON.stringify(r.revertAgain));
        assert.deepEqual(r.revertAgain.steps.map((s) => s.outcome), ['absent', 'absent', 'absent', 'absent', 'absent', 'absent', 'absent']);
      });
    });

    it('delivers marked IPv4 and IPv6 connections to the transparent listener, and nothing else', async (t) => {
      await withNetns(t, async (ns) => {
        const r = await runChild(ns, { flavour, mode: 'traffic', params: {} });
        assert.equal(r.applyError, undefined);
        const tr = r.traffic ?? {};
        if (typeof tr.skipped === 'string') {
          t.skip(`traffic check skipped: ${tr.skipped}`);
          return;
        }
        assert.equal(tr.intercepted4, 'connected', 'IPv4 connection to port 443 reaches the transparent listener');
        assert.equal(tr.intercepted6, 'connected', 'IPv6 connection to port 443 reaches the transparent listener');
        assert.deepEqual(tr.seen, ['203.0.113.7:443', '2001:db8::7:443'], 'the listener sees the original destinations');
        assert.equal(tr.otherPort, 'timeout', 'port 80 is not intercepted');
        assert.notEqual(tr.bypass, 'connected', 'a socket carrying the bypass mark is not intercepted');
        assert.equal(tr.afterRevert, 'timeout', 'nothing is intercepted after revert');
        assertClean('after revert', r.afterRevert);
      });
    });

    it('fails open: without heartbeats the ipset elements expire and new connections flow directly', async (t) => {
      await withNetns(t, async (ns) => {
        const r = await runChild(ns, { flavour, mode: 'expiry', params: { ipv6: false }, portsTimeoutSeconds: 2 });
        assert.equal(r.applyError, undefined);
        const e = r.expiry ?? {};
        if (typeof e.skipped === 'string') {
          t.skip(`expiry check skipped: ${e.skipped}`);
          return;
        }
        assert.equal(e.afterHeartbeats, 'connected', 'heartbeats keep interception alive past the element lifetime');
        assert.equal(e.members, '', 'the port expired from the set');
        assert.equal(e.afterExpiry, 'timeout', 'a new connection is no longer intercepted');
        assert.deepEqual(e.verifyMissing, ['ipset tproxy_helper_ports element(s) 443'], 'verify reports the expiry');
        assert.deepEqual(e.seen, ['203.0.113.7:443'], 'only the connection made while heartbeats ran was intercepted');
        assertClean('after revert', r.afterRevert);
      });
    });

    it('scope: takes only the connections of the uid in scope (-m owner)', async (t) => {
      await withNetns(t, async (ns) => {
        const r = await runChild(ns, { flavour, mode: 'scope', params: { ipv6: false }, scopeUid: 65534 });
        assert.equal(r.applyError, undefined);
        const tr = r.traffic ?? {};
        if (typeof tr.skipped === 'string') {
          t.skip(`scope check skipped: ${tr.skipped}`);
          return;
        }
        assert.match(r.afterApply.save4, /-m owner --uid-owner 65534 -j CONNMARK/);
        assert.equal(tr.root, 'timeout', 'root is not in scope: its connection goes to the unanswered next hop');
        assert.equal(tr.other, 'connected', 'uid 65534 is in scope: its connection reaches the listener');
        assert.deepEqual(tr.seen, ['203.0.113.7:443']);
        assertClean('after revert', r.afterRevert);
      });
    });

    it('rolls the IPv4 chains, rules, routes and ipset back when loading the IPv6 rules fails', async (t) => {
      await withNetns(t, async (ns) => {
        const r = await runChild(ns, { flavour, mode: 'lifecycle', params: {}, failIpv6Load: 'injected by iptables-kernel.test.ts' });
        assert.deepEqual(r.applyError, {
          name: 'FirewallError',
          code: 'apply-failed',
          message: `applying ${flavour} ipv6 mangle chains TPROXY_HELPER_OUT, TPROXY_HELPER_PRE: injected by iptables-kernel.test.ts; rolled back`,
        });
        assertClean('after failed apply', r.afterApply);
      });
    });

    it('every golden input passes the real restore --test, and loads as iptables-save prints it', async (t) => {
      await withNetns(t, async (ns) => {
        const created = await inNetns(ns, ['ipset', 'create', 'tproxy_helper_ports', 'bitmap:port', 'range', '1-65535', 'timeout', '8']);
        assert.equal(created.code, 0, created.stderr);
        const files = readdirSync(TESTDATA).filter((f) => f.endsWith('.iptables'));
        assert.ok(files.length >= 8, files.join(' '));
        for (const f of files) {
          const family = f.includes('.ipv6.') ? 'ipv6' : 'ipv4';
          const { restore, save } = IPTABLES_BINARIES[flavour][family];
          const input = readFileSync(`${TESTDATA}${f}`, 'utf8');
          const checked = await inNetns(ns, [restore, '--test', '--noflush'], input);
          assert.equal(checked.code, 0, `${f}: ${checked.stderr}`);
          // The scoped inputs name a cgroup that does not exist here; the kernel checks it on load.
          if (f.startsWith('scoped.')) continue;
          const loaded = await inNetns(ns, [restore, '--noflush'], input);
          assert.equal(loaded.code, 0, `${f}: ${loaded.stderr}`);
          const saved = (await inNetns(ns, [save, '-t', 'mangle'])).stdout.split('\n');
          for (const line of ruleLinesOf(input)) assert.ok(saved.includes(line), `${f}: iptables-save prints "${line}" differently:\n${saved.join('\n')}`);
          const cleanup = '*mangle\n-D PREROUTING -j TPROXY_HELPER_PRE\n-D OUTPUT -j TPROXY_HELPER_OUT\n-F TPROXY_HELPER_OUT\n-X TPROXY_HELPER_OUT\n-F TPROXY_HELPER_PRE\n-X TPROXY_HELPER_PRE\nCOMMIT\n';
          const removed = await inNetns(ns, [restore, '--noflush'], cleanup);
          assert.equal(removed.code, 0, `${f} cleanup: ${removed.stderr}`);
        }
      });
    });
  });
}
