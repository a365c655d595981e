/**
 * Real-kernel tests of Steering (root only; skipped otherwise with the reason). Each test builds a
 * throwaway network namespace, runs netns-child.ts inside it with realExec, and deletes the
 * namespace in `finally`. The host namespace is never changed: every command runs under
 * `ip netns exec`, and the child refuses to run unless `ip netns identify` names its namespace.
 *
 *   netns tpn-fw-<pid>-<n>
 *   ┌──────────────────────────────────────────────────────────────────────────────────────┐
 *   │ client ─SYN→ 203.0.113.7:443 ─▶ OUTPUT: ct/meta mark 0x2333 ─▶ ip rule → table 233 │
 *   │   (local default dev lo) ─▶ lo ─▶ PREROUTING tproxy ─▶ IP_TRANSPARENT 127.0.0.1:8443 │
 *   │ va 10.200.0.1/24, fd99::1/64 ── vb   (default via .2 / ::2, which never answers, so │
 *   │                                       anything not intercepted times out)            │
 *   └──────────────────────────────────────────────────────────────────────────────────────┘
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import type { Job, Result } from './netns-child.js';
import { RULE_PRIORITY } from './plan.js';

const CHILD = fileURLToPath(new URL('./netns-child.ts', import.meta.url));
const TESTDATA = fileURLToPath(new URL('./testdata/', import.meta.url));
const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url));

function sh(file: string, args: string[], timeout = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd: REPO_ROOT, timeout, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr: stderr || (err && typeof err.code !== 'number' ? String(err.message) : '') });
    });
  });
}

async function prerequisite(): Promise<string | false> {
  if (process.platform !== 'linux') return 'skipped: Linux only';
  if (process.getuid?.() !== 0) return 'skipped: needs root to create a network namespace (run as root to exercise the real kernel)';
  for (const [bin, args] of [['ip', ['-V']], ['nft', ['--version']]] as const) {
    const r = await sh(bin, [...args]);
    if (r.code !== 0) return `skipped: ${bin} not usable (${r.stderr.trim() || `exit ${r.code}`})`;
  }
  return false;
}

const skip = await prerequisite();
let counter = 0;

/** Creates a namespace with lo up and an unanswered next hop, runs fn, always deletes it. */
async function withNetns(t: TestContext, fn: (ns: string) => Promise<void>): Promise<void> {
  const ns = `tpn-fw-${process.pid}-${++counter}`;
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

async function inNetns(ns: string, ...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return sh('ip', ['netns', 'exec', ns, ...argv]);
}

async function runChild(ns: string, job: Omit<Job, 'netns'>): Promise<Result> {
  const r = await inNetns(ns, process.execPath, '--import', 'tsx', CHILD, JSON.stringify({ ...job, netns: ns }));
  assert.equal(r.code, 0, `child failed (exit ${r.code}):\n${r.stderr}`);
  const last = r.stdout.trim().split('\n').at(-1) ?? '';
  return JSON.parse(last) as Result;
}

const OUR_RULE = new RegExp(`^${RULE_PRIORITY}:\\s+from all fwmark 0x2333 lookup 233\\s*$`, 'm');

function assertClean(label: string, s: Result['afterRevert']): void {
  assert.doesNotMatch(s.ruleset, /tproxy_helper/, `${label}: nft table still present`);
  assert.doesNotMatch(s.rules4, /0x2333|lookup 233/, `${label}: ipv4 rule still present`);
  assert.doesNotMatch(s.rules6, /0x2333|lookup 233/, `${label}: ipv6 rule still present`);
  assert.doesNotMatch(s.routes4, /local/, `${label}: ipv4 route still present`);
  assert.doesNotMatch(s.routes6, /local/, `${label}: ipv6 route still present`);
}

describe('Steering on a real kernel (network namespace)', { skip: skip }, () => {
  it('applies the default plan, verifies it, reverts it, and reverts again harmlessly', async (t) => {
    await withNetns(t, async (ns) => {
      const r = await runChild(ns, { mode: 'lifecycle', params: {} });
      assert.equal(r.applyError, undefined);
      const a = r.afterApply;
      assert.match(a.ruleset, /table inet tproxy_helper \{/);
      assert.match(a.ruleset, /type route hook output priority mangle; policy accept;/);
      assert.match(a.ruleset, /meta mark 0x00000539 return/);
      assert.match(a.ruleset, /tproxy ip to 127\.0\.0\.1:8443 accept/);
      assert.match(a.ruleset, /tproxy ip6 to \[::1\]:8443 accept/);
      assert.match(a.rules4, OUR_RULE);
      assert.match(a.rules6, OUR_RULE);
      assert.match(a.routes4, /^local default dev lo /m);
      assert.match(a.routes6, /^local default dev lo /m);
      assert.deepEqual(r.verify, { ok: true, missing: [] });
      assert.equal(r.leftoversAfterApply.length, 5, r.leftoversAfterApply.join('\n'));

      assert.ok(r.revert.ok, JSON.stringify(r.revert));
      assert.deepEqual(r.revert.steps.map((s) => s.outcome), ['removed', 'removed', 'removed', 'removed', 'removed']);
      assertClean('after revert', r.afterRevert);
      assert.ok(r.revertAgain.ok, JSON.stringify(r.revertAgain));
      assert.deepEqual(r.revertAgain.steps.slice(1).map((s) => s.outcome), ['absent', 'absent', 'absent', 'absent']);
      assert.deepEqual(r.leftoversAfterRevert, []);
      assert.equal(r.cleanAfterRevert, true);
    });
  });

  it('with ipv6 off installs IPv4 steering only', async (t) => {
    await withNetns(t, async (ns) => {
      const r = await runChild(ns, { mode: 'lifecycle', params: { ipv6: false, ports: [443, 80], listenPort: 9443 } });
      assert.equal(r.applyError, undefined);
      assert.match(r.afterApply.ruleset, /flags timeout/);
      assert.match(r.afterApply.ruleset, /elements = \{ 80 timeout 8s expires \S+, 443 timeout 8s expires \S+ \}/);
      assert.match(r.afterApply.ruleset, /meta nfproto ipv4 tcp dport @ports ct state new/);
      assert.doesNotMatch(r.afterApply.ruleset, /ip6/);
      assert.match(r.afterApply.rules4, OUR_RULE);
      assert.doesNotMatch(r.afterApply.rules6, /0x2333/);
      assert.doesNotMatch(r.afterApply.routes6, /local/, 'no IPv6 route (the table does not even exist)');
      assert.deepEqual(r.verify, { ok: true, missing: [] });
      assertClean('after revert', r.afterRevert);
    });
  });

  it('rolls routes and rules back when loading the nft ruleset fails', async (t) => {
    await withNetns(t, async (ns) => {
      const r = await runChild(ns, { mode: 'lifecycle', params: {}, failNftApply: 'Error: injected by kernel.test.ts' });
      assert.deepEqual(r.applyError, {
        name: 'FirewallError',
        code: 'apply-failed',
        message: 'applying nft ruleset (table inet tproxy_helper): Error: injected by kernel.test.ts; rolled back',
      });
      assertClean('after failed apply', r.afterApply);
      assert.deepEqual(r.leftoversAfterApply, []);
    });
  });

  it('changes nothing when nft rejects the script (the "tproxy" keyword as table name)', async (t) => {
    await withNetns(t, async (ns) => {
      const r = await runChild(ns, { mode: 'lifecycle', params: {}, tableName: 'tproxy' });
      assert.equal(r.applyError?.code, 'apply-failed');
      assert.match(r.applyError?.message ?? '', /^checking nft ruleset \(table inet tproxy\): .*syntax error, unexpected tproxy/s);
      assertClean('after rejected script', r.afterApply);
    });
  });

  it('refuses to adopt an identical rule that already exists and leaves it in place', async (t) => {
    await withNetns(t, async (ns) => {
      const pre = await inNetns(ns, 'ip', '-4', 'rule', 'add', 'priority', String(RULE_PRIORITY), 'fwmark', '0x2333', 'lookup', '233');
      assert.equal(pre.code, 0, pre.stderr);
      const r = await runChild(ns, { mode: 'lifecycle', params: {} });
      assert.equal(r.applyError?.code, 'apply-failed');
      assert.match(r.applyError?.message ?? '', /^adding ip -4 rule priority \d+ fwmark 0x2333 lookup 233: RTNETLINK answers: File exists \(already present/);
      assert.equal(r.afterApply.rules4.match(/fwmark 0x2333/g)?.length, 1, 'the pre-existing rule stays, exactly once');
      assert.doesNotMatch(r.afterApply.routes4 + r.afterApply.routes6, /local/, 'routes added before the failure were rolled back');
      assert.doesNotMatch(r.afterApply.ruleset, /tproxy_helper/);
    });
  });

  it('intercepts new connections to the chosen ports, and nothing else', async (t) => {
    await withNetns(t, async (ns) => {
      const r = await runChild(ns, { mode: 'traffic', params: {} });
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

  it('every golden script passes the kernel\'s own check (nft -c)', async (t) => {
    await withNetns(t, async (ns) => {
      const files = readdirSync(TESTDATA).filter((f) => f.endsWith('.nft') && !f.endsWith('.heartbeat.nft'));
      assert.ok(files.length >= 3);
      for (const f of files) {
        const r = await inNetns(ns, 'nft', '-c', '-f', `${TESTDATA}${f}`);
        assert.equal(r.code, 0, `${f}: ${r.stderr}`);
      }
      // A heartbeat needs its table: load the matching apply script for real, then check it.
      const heartbeats = readdirSync(TESTDATA).filter((f) => f.endsWith('.heartbeat.nft'));
      assert.ok(heartbeats.length >= 1);
      for (const f of heartbeats) {
        const base = f.replace(/\.heartbeat\.nft$/, '.nft');
        const loaded = await inNetns(ns, 'nft', '-f', `${TESTDATA}${base}`);
        assert.equal(loaded.code, 0, `${base}: ${loaded.stderr}`);
        const r = await inNetns(ns, 'nft', '-f', `${TESTDATA}${f}`);
        assert.equal(r.code, 0, `${f}: ${r.stderr}`);
        const listed = await inNetns(ns, 'nft', 'list', 'set', 'inet', 'tproxy_helper', 'ports');
        assert.match(listed.stdout, /elements = \{ [^}]*443 timeout 8s expires/, `${f}: ${listed.stdout}`);
        const gone = await inNetns(ns, 'nft', 'delete', 'table', 'inet', 'tproxy_helper');
        assert.equal(gone.code, 0, gone.stderr);
        const orphan = await inNetns(ns, 'nft', '-f', `${TESTDATA}${f}`);
        assert.notEqual(orphan.code, 0, `${f} must not succeed (or re-create anything) without our table`);
        assert.doesNotMatch((await inNetns(ns, 'nft', 'list', 'tables')).stdout, /tproxy_helper/);
      }
    });
  });
});
