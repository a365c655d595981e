/**
 * Smoke test of the e2e harness itself, without tproxy-helper: the two namespaces (diagram in
 * lib/topology.ts) route to each other over the veth, the good/bad/down upstreams behave as the
 * helper tests will assume, large bodies hash to lib/pattern.ts, the trust-store sandbox is
 * shared with namespace children and invisible to the host, and destroy() leaves nothing behind.
 * If this file fails, helper e2e failures say nothing about the helper.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { makeUpstreamCa } from './lib/certs.js';
import { CURL_EXIT, curlInNs } from './lib/curl.js';
import { patternSha256 } from './lib/pattern.js';
import { e2ePreflight, which } from './lib/preflight.js';
import { runCommand, runInNs } from './lib/proc.js';
import { hostViewPath, inTrustSandbox } from './lib/sandbox.js';
import { socketActivateArgv, waitForSocket } from './lib/socket-activate.js';
import { listNetns, createTopology, UPSTREAM_NAME } from './lib/topology.js';
import { HELLO_BODY } from './lib/upstream-app.js';
import { startUpstreams } from './lib/upstream.js';

const skipReason = await e2ePreflight(['curl']);

const MIB = 1024 * 1024;

/** The host namespace's nftables ruleset (read-only), to prove the test never changed it. */
async function hostRuleset(): Promise<string> {
  const r = await runCommand(['nft', 'list', 'ruleset'], { timeoutMs: 10_000 });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

async function hostLinks(): Promise<string> {
  const r = await runCommand(['ip', '-o', 'link', 'show'], { timeoutMs: 10_000 });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

test('e2e topology works without the helper', { timeout: 180_000 }, async (t) => {
  if (skipReason !== undefined) {
    t.skip(skipReason);
    return;
  }
  const rulesetBefore = await hostRuleset();
  const dir = await mkdtemp(join(tmpdir(), 'tproxy-e2e-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const certs = await makeUpstreamCa(dir);

  const topo = await createTopology();
  t.after(() => topo.destroy());
  const upstreams = await startUpstreams(topo, certs);
  const c = topo.clientNs;
  const A = topo.addrs;
  const viaGood4 = ['--resolve', `${UPSTREAM_NAME}:443:${A.good4}`];

  await t.test('good upstream answers over IPv4 with the test CA', async () => {
    const r = await curlInNs(c, ['--fail', '--cacert', certs.caCert, ...viaGood4, `https://${UPSTREAM_NAME}/hello`]);
    assert.equal(r.code, CURL_EXIT.ok, r.stderr);
    assert.equal(r.stdout, HELLO_BODY);
  });

  await t.test('good upstream answers over IPv6, by name and by IP SAN', async () => {
    const byName = await curlInNs(c, [
      '--fail',
      '--cacert',
      certs.caCert,
      '--resolve',
      `${UPSTREAM_NAME}:443:[${A.good6}]`,
      `https://${UPSTREAM_NAME}/hello`,
    ]);
    assert.equal(byName.code, CURL_EXIT.ok, byName.stderr);
    assert.equal(byName.stdout, HELLO_BODY);
    const byIp = await curlInNs(c, ['--fail', '--cacert', certs.caCert, `https://[${A.good6}]/hello`]);
    assert.equal(byIp.code, CURL_EXIT.ok, byIp.stderr);
    assert.equal(byIp.stdout, HELLO_BODY);
  });

  await t.test('bad upstream fails certificate verification (and only that)', async () => {
    for (const addr of [A.bad4, `[${A.bad6}]`]) {
      const url = `https://${UPSTREAM_NAME}/hello`;
      const resolve = ['--resolve', `${UPSTREAM_NAME}:443:${addr}`];
      const r = await curlInNs(c, ['--cacert', certs.caCert, ...resolve, url]);
      assert.equal(r.code, CURL_EXIT.peerFailedVerification, `${addr}: ${r.stderr}`);
      assert.match(r.stderr, /self[- ]signed/i);
      const insecure = await curlInNs(c, ['--fail', '--insecure', ...resolve, url]);
      assert.equal(insecure.code, CURL_EXIT.ok, `${addr} with --insecure: ${insecure.stderr}`);
      assert.equal(insecure.stdout, HELLO_BODY);
    }
  });

  await t.test('down upstream refuses connections at once', async () => {
    for (const addr of [A.down4, `[${A.down6}]`]) {
      const r = await curlInNs(c, ['--cacert', certs.caCert, `https://${addr}/hello`], { timeoutMs: 20_000 });
      assert.equal(r.code, CURL_EXIT.couldNotConnect, `${addr}: ${r.stderr}`);
      assert.match(r.stderr, /refused|couldn't connect/i);
      // A refusal (RST from a local address), not a timeout: well under curl's connect timeout.
      assert.ok(r.durationMs < 5000, `${addr} took ${r.durationMs} ms`);
    }
  });

  await t.test('64 MiB streamed download matches lib/pattern.ts', async () => {
    const n = 64 * MIB;
    const seed = `smoke-${process.pid}`;
    const r = await curlInNs(c, ['--fail', '--cacert', certs.caCert, ...viaGood4, `https://${UPSTREAM_NAME}/bytes?n=${n}&seed=${seed}`], {
      timeoutMs: 60_000,
    });
    assert.equal(r.code, CURL_EXIT.ok, r.stderr);
    assert.equal(r.stdoutBytes, n);
    assert.equal(r.sha256, patternSha256(n, seed));
  });

  await t.test('upstream logs one line per request', () => {
    const log = upstreams.good.output().stdout;
    assert.match(log, /sni=upstream\.test GET \/hello HTTP\/1\.1 200/);
    assert.match(log, /GET \/bytes\?n=67108864&seed=smoke-\d+ HTTP\/1\.1 200/);
  });

  await t.test('nft works inside the client namespace', async () => {
    const table = 'tproxy_e2e_probe';
    const add = await runInNs(c, ['nft', '-f', '-'], { input: `add table inet ${table}\n` });
    assert.equal(add.code, 0, add.stderr);
    const list = await runInNs(c, ['nft', 'list', 'tables']);
    assert.match(list.stdout, new RegExp(`table inet ${table}`));
    const del = await runInNs(c, ['nft', 'delete', 'table', 'inet', table]);
    assert.equal(del.code, 0, del.stderr);
  });

  await t.test('trust sandbox: shared with namespace children, invisible to the host', async (st) => {
    assert.ok(inTrustSandbox());
    const name = `tproxy-e2e-probe-${process.pid}.crt`;
    const anchor = join('/usr/local/share/ca-certificates', name);
    const hostDirBefore = readdirSync(hostViewPath('/usr/local/share/ca-certificates')).sort();
    await writeFile(anchor, certs.caPem);
    const seen = await runInNs(c, ['cat', anchor]);
    assert.equal(seen.stdout, certs.caPem, 'an ip netns exec child sees the sandboxed file');
    assert.equal(existsSync(hostViewPath(anchor)), false, 'the host does not see it');
    assert.deepEqual(readdirSync(hostViewPath('/usr/local/share/ca-certificates')).sort(), hostDirBefore);
    // Namespace names are sandboxed too: the host's /run/netns never lists ours.
    assert.ok(readdirSync('/run/netns').includes(topo.clientNs));
    assert.ok(!readdirSync(hostViewPath('/run/netns')).includes(topo.clientNs), 'netns name not visible on the host');

    if (which('update-ca-certificates') === undefined) {
      st.diagnostic('update-ca-certificates not found; skipping the system-store round trip');
      return;
    }
    // What the helper's Debian trust branch will do, from the client namespace.
    const bundle = '/etc/ssl/certs/ca-certificates.crt';
    const hostBundleBefore = sha256File(hostViewPath(bundle));
    const refresh = await runInNs(c, ['update-ca-certificates'], { timeoutMs: 120_000 });
    assert.equal(refresh.code, 0, refresh.stderr);
    assert.ok(readFileSync(bundle, 'utf8').includes(certs.caPem.trim().split('\n')[1] ?? '<none>'), 'sandbox bundle has the CA');
    // No --cacert: curl (with cleanEnv, so no CURL_CA_BUNDLE) now trusts the test CA via the store.
    const r = await curlInNs(c, ['--fail', ...viaGood4, `https://${UPSTREAM_NAME}/hello`]);
    assert.equal(r.code, CURL_EXIT.ok, r.stderr);
    assert.equal(r.stdout, HELLO_BODY);
    assert.equal(sha256File(hostViewPath(bundle)), hostBundleBefore, 'host bundle unchanged');
  });

  await t.test('a daemon starts under systemd-socket-activate in the client namespace', async (st) => {
    if (which('systemd-socket-activate') === undefined) {
      st.skip('needs systemd-socket-activate on PATH');
      return;
    }
    // Stand-in for tproxy-helper: reports what activation handed it over the activated socket.
    const daemon = [
      'const net = require("node:net");',
      'net.createServer((s) => s.end(JSON.stringify({ pid: process.pid, env: process.env }))).listen({ fd: 3 });',
    ].join('\n');
    const sock = join(dir, 'helper.sock');
    const proc = topo.spawn(c, socketActivateArgv(sock, [process.execPath, '-e', daemon], { fdName: 'rpc', env: { E2E_MARK: '1' } }));
    await waitForSocket(sock);
    const reply = await new Promise<string>((resolve, reject) => {
      let text = '';
      connect(sock)
        .on('data', (d: Buffer) => (text += d.toString()))
        .on('end', () => resolve(text))
        .on('error', reject);
    });
    const seen = JSON.parse(reply) as { pid: number; env: Record<string, string> };
    assert.equal(seen.pid, proc.pid, 'exec in place: the handle pid is the daemon');
    assert.equal(seen.env.LISTEN_PID, String(proc.pid));
    assert.equal(seen.env.LISTEN_FDS, '1');
    assert.equal(seen.env.LISTEN_FDNAMES, 'rpc');
    assert.equal(seen.env.E2E_MARK, '1');
    assert.equal(seen.env.SSL_CERT_FILE, undefined);
    const status = await proc.stop();
    assert.equal(status.signal, 'SIGTERM');
  });

  await t.test('destroy leaves no namespace, link or rule behind', async () => {
    await topo.destroy();
    await topo.destroy(); // idempotent
    const names = await listNetns();
    assert.ok(!names.includes(topo.clientNs) && !names.includes(topo.upstreamNs), `ip netns list: ${names.join(' ')}`);
    assert.ok(upstreams.good.exitStatus && upstreams.bad.exitStatus, 'upstream servers stopped');
    const links = await hostLinks();
    assert.ok(!links.includes(topo.clientVeth) && !links.includes(topo.upstreamVeth), 'no veth in the host namespace');
    assert.equal(await hostRuleset(), rulesetBefore, 'host nftables ruleset unchanged');
  });
});
