/**
 * The iptables backend end to end (the pattern of intercept.test.ts, world fixture of lib/world.ts):
 * the real helper started with `--firewall iptables` (or asked for a flavour in capture.start)
 * steers with iptables chains + an ipset instead of its nft table; real curl in the client
 * namespace is decrypted over IPv4 and IPv6; capture.stop leaves no chain, set, rule or route; a
 * SIGKILLed helper fails open when the ipset elements expire, and --cleanup removes its leftovers.
 *
 *   client ns: curl ──SYN to 198.18.0.2:443──▶ mangle OUTPUT → TPROXY_HELPER_OUT (ipset
 *              tproxy_helper_ports) ▶ ip rule ▶ lo ▶ mangle PREROUTING → TPROXY_HELPER_PRE ▶ helper :8443
 *                                    helper ──(SO_MARK 0x539, TLS verified)──▶ upstream ns :443
 */
import assert from 'node:assert/strict';
import { mkdir, readdir, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { methods } from '@tproxy/client';
import { ourSteering, waitForExchange } from './lib/checks.js';
import { CURL_EXIT, curlInNs } from './lib/curl.js';
import { HELPER_MAIN, startHelper, tproxyctl } from './lib/helper.js';
import { e2ePreflight } from './lib/preflight.js';
import { runInNs } from './lib/proc.js';
import { HELLO_BODY } from './lib/upstream-app.js';
import { world } from './lib/world.js';

const skip = await e2ePreflight(['curl', 'systemd-socket-activate', 'update-ca-certificates', 'ipset', 'iptables-nft-save', 'iptables-legacy-save']);

const GOOD = ['--resolve', 'upstream.test:443:198.18.0.2'];
/** The self-signed upstream: tproxy answers 502 for it, curl itself fails with exit 60. */
const BAD = ['-D', '-', '--resolve', 'upstream.test:443:198.18.0.3', 'https://upstream.test/hello'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Every line of ours in either iptables flavour (both families) and the ipset names, in a namespace. */
async function iptablesState(ns: string): Promise<string> {
  const bins = ['iptables-nft-save', 'ip6tables-nft-save', 'iptables-legacy-save', 'ip6tables-legacy-save'];
  const parts = await Promise.all([...bins.map((b) => runInNs(ns, [b])), runInNs(ns, ['ipset', 'list', '-n'])]);
  return parts
    .map((p, i) => p.stdout.split('\n').map((l) => `${bins[i] ?? 'ipset'}: ${l}`))
    .flat()
    .filter((l) => /TPROXY_HELPER|tproxy_helper_ports/.test(l))
    .join('\n');
}

/**
 * A PATH like the default one on a host where the nftables package is not installed: a directory
 * with a link to every program of /usr/sbin except nft, then /usr/local/bin, /usr/bin and /bin.
 */
async function pathWithoutNft(dir: string): Promise<string> {
  const bin = join(dir, 'sbin-without-nft');
  await mkdir(bin, { recursive: true });
  for (const name of await readdir('/usr/sbin')) {
    if (name !== 'nft') await symlink(join('/usr/sbin', name), join(bin, name));
  }
  return `${bin}:/usr/local/bin:/usr/bin:/bin`;
}

describe('the iptables backend end to end', { skip: skip ?? false, timeout: 600_000 }, () => {
  const w = world();

  it('auto: on a host without nft, the helper picks iptables by itself and decrypts', async (t) => {
    const { topo, dir, certs } = w;
    const h = await startHelper(topo, dir, 'ipt-auto', certs.caCert, { path: await pathWithoutNft(dir) });
    t.after(async () => {
      await h.client.close().catch(() => undefined);
      await h.proc.stop();
    });
    const status = await h.client.call(methods.captureStart, {});
    assert.equal(status.firewall?.backend, 'iptables-nft', JSON.stringify(status.firewall));
    assert.match(status.firewall?.reason ?? '', /nft/, 'the reason names the missing nft');
    const r = await curlInNs(topo.clientNs, ['--fail', ...GOOD, 'https://upstream.test/hello?ipt-auto']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await waitForExchange(h.client, (e) => e.request.url.endsWith('?ipt-auto'))).response?.status, 200);
    await h.client.call(methods.captureStop, {});
    assert.equal(await iptablesState(topo.clientNs), '');
    assert.equal(await ourSteering(topo.clientNs), '');
  });

  it('--firewall iptables: decrypts curl over IPv4 and IPv6 without any nft table, and stop leaves nothing', async (t) => {
    const { topo, dir, certs } = w;
    const h = await startHelper(topo, dir, 'ipt', certs.caCert, { extraArgs: ['--firewall', 'iptables'] });
    t.after(async () => {
      await h.client.close().catch(() => undefined);
      await h.proc.stop();
    });
    const status = await h.client.call(methods.captureStart, {});
    assert.equal(status.running, true);
    // A fresh namespace holds no legacy rules, so the nft flavour of iptables is picked.
    assert.deepEqual(status.firewall, { backend: 'iptables-nft', reason: 'asked for iptables; iptables-nft answers and legacy iptables holds no rules' });
    assert.equal(status.interception?.ok, true, JSON.stringify(status.interception));

    const steering = await iptablesState(topo.clientNs);
    assert.match(steering, /iptables-nft-save: -A OUTPUT -j TPROXY_HELPER_OUT/);
    assert.match(steering, /ip6tables-nft-save: .*-j TPROXY --on-port 8443 --on-ip ::1 /);
    assert.match(steering, /ipset: tproxy_helper_ports/);
    assert.doesNotMatch(steering, /legacy/, 'nothing in legacy iptables');
    const tables = await runInNs(topo.clientNs, ['nft', 'list', 'tables']);
    assert.doesNotMatch(tables.stdout, /tproxy_helper/, 'no nft table of ours');

    const v4 = await curlInNs(topo.clientNs, ['--fail', '--http1.1', ...GOOD, 'https://upstream.test/hello?ipt4']);
    assert.equal(v4.code, 0, v4.stderr);
    assert.equal(v4.stdout, HELLO_BODY);
    const ex4 = await waitForExchange(h.client, (e) => e.request.url === 'https://upstream.test/hello?ipt4');
    assert.equal(ex4.response?.status, 200);
    assert.equal(ex4.server.address, '198.18.0.2');

    const v6 = await curlInNs(topo.clientNs, ['--fail', '--resolve', 'upstream.test:443:[fd00:198:18::2]', 'https://upstream.test/hello?ipt6']);
    assert.equal(v6.code, 0, v6.stderr);
    assert.equal(v6.stdout, HELLO_BODY);
    const ex6 = await waitForExchange(h.client, (e) => e.request.url === 'https://upstream.test/hello?ipt6');
    assert.equal(ex6.server.address, 'fd00:198:18::2');

    // Past one verify interval and several heartbeats: the monitor finds everything in place.
    await sleep(5_500);
    const later = await h.client.call(methods.captureStatus, {});
    assert.equal(later.interception?.ok, true, JSON.stringify(later.interception));
    assert.ok((later.interception?.heartbeatAt ?? 0) > (status.interception?.checkedAt ?? Infinity), 'the ipset was refreshed');

    const human = await tproxyctl(h.socketPath, ['--json', 'status']);
    assert.equal(human.code, 0, human.stderr);
    assert.equal(JSON.parse(human.stdout).firewall?.backend, 'iptables-nft');

    const stopped = await h.client.call(methods.captureStop, {});
    assert.equal(stopped.running, false);
    assert.equal(stopped.firewall, undefined);
    assert.equal(await iptablesState(topo.clientNs), '');
    assert.equal(await ourSteering(topo.clientNs), '', 'no ip rule or route left');
  });

  it('capture.start firewall overrides the helper flag: iptables-legacy steers and cleans up too', async (t) => {
    const { topo, dir, certs } = w;
    const h = await startHelper(topo, dir, 'legacy', certs.caCert);
    t.after(async () => {
      await h.client.close().catch(() => undefined);
      await h.proc.stop();
    });
    const status = await h.client.call(methods.captureStart, { firewall: 'iptables-legacy' });
    assert.deepEqual(status.firewall, { backend: 'iptables-legacy', reason: 'asked for iptables-legacy' });
    assert.ok(status.rules.includes('ipset tproxy_helper_ports: ports 443, each expiring 8 s after the helper last refreshed it (fail-open)'), status.rules.join('\n'));
    assert.ok(status.rules.some((l) => l.startsWith('iptables TPROXY_HELPER_PRE: hand marked IPv6 TCP packets')), status.rules.join('\n'));
    assert.ok(!status.rules.some((l) => l.startsWith('nft ')), 'no nft lines on the iptables backend');
    t.diagnostic(`capture.start result: ${JSON.stringify(status)}`);
    assert.match(await iptablesState(topo.clientNs), /^iptables-legacy-save: -A PREROUTING -j TPROXY_HELPER_PRE$/m);

    const r = await curlInNs(topo.clientNs, ['--fail', ...GOOD, 'https://upstream.test/hello?legacy']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, HELLO_BODY);
    await waitForExchange(h.client, (e) => e.request.url === 'https://upstream.test/hello?legacy');

    await h.client.call(methods.captureStop, {});
    assert.equal(await iptablesState(topo.clientNs), '');
    assert.equal(await ourSteering(topo.clientNs), '');
  });

  it('SIGKILL: the ipset elements expire within 12 s so traffic flows directly; --cleanup then removes the rest', async (t) => {
    const { topo, dir, certs } = w;
    const h = await startHelper(topo, dir, 'ipt-killed', certs.caCert, { extraArgs: ['--firewall', 'iptables'] });
    let cleaned = false;
    t.after(async () => {
      await h.client.close().catch(() => undefined);
      await h.proc.stop();
      if (!cleaned) await runInNs(topo.clientNs, [process.execPath, HELPER_MAIN, '--cleanup', '--state-dir', h.stateDir, '--socket', h.socketPath], { timeoutMs: 30_000 });
    });
    await h.client.call(methods.captureStart, {});
    const intercepted = await curlInNs(topo.clientNs, BAD, { timeoutMs: 10_000 });
    assert.equal(intercepted.code, 0, intercepted.stderr);
    assert.match(intercepted.stdout, /^HTTP\/1\.1 502 /, 'intercepted before the kill');

    h.proc.kill('SIGKILL');
    const killedAt = Date.now();
    await h.proc.waitForExit(10_000);

    const codes: number[] = [];
    let code: number | null = null;
    while (Date.now() - killedAt < 12_000) {
      const r = await curlInNs(topo.clientNs, BAD, { timeoutMs: 4_000 });
      code = r.code;
      codes.push(r.code ?? -1);
      if (code === CURL_EXIT.peerFailedVerification) break;
      await sleep(250);
    }
    const elapsed = Date.now() - killedAt;
    assert.equal(code, CURL_EXIT.peerFailedVerification, `curl exit codes after the kill: ${codes.join(',')} (${elapsed} ms)`);
    t.diagnostic(`direct again ${elapsed} ms after SIGKILL (curl exits: ${codes.join(',')})`);
    // Fail-open, not cleanup: the chains and the set are still there, only the ports expired.
    assert.match(await iptablesState(topo.clientNs), /TPROXY_HELPER_OUT/);
    const set = await runInNs(topo.clientNs, ['ipset', 'list', 'tproxy_helper_ports']);
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /Number of entries: 0/, set.stdout);

    const cleanup = await runInNs(topo.clientNs, [process.execPath, HELPER_MAIN, '--cleanup', '--state-dir', h.stateDir, '--socket', h.socketPath], { timeoutMs: 30_000 });
    cleaned = true;
    assert.equal(cleanup.code, 0, cleanup.stderr);
    assert.match(cleanup.stderr, /cleanup removed: .*iptables-nft ipv4 mangle chains TPROXY_HELPER_OUT, TPROXY_HELPER_PRE.*ipset tproxy_helper_ports/);
    assert.equal(await iptablesState(topo.clientNs), '');
    assert.equal(await ourSteering(topo.clientNs), '');
  });
});
