/**
 * The whole product, end to end: the real tproxy-helper (socket-activated, in the client namespace
 * of lib/topology.ts) applies real nftables TPROXY rules, real curl and Node clients in that
 * namespace make ordinary HTTPS requests to the upstream namespace, and we assert what the clients
 * got and what the helper captured, over the real JSON-RPC socket and the real tproxyctl.
 *
 *   client ns: curl / node ──SYN to 198.18.0.2:443──▶ nft mark ▶ ip rule ▶ lo ▶ TPROXY ▶ helper :8443
 *                                         helper ──(SO_MARK 0x539, TLS verified)──▶ upstream ns :443
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { methods, type Exchange } from '@tproxy/client';
import type { UpstreamCerts } from './lib/certs.js';
import { curlInNs } from './lib/curl.js';
import { HELPER_MAIN, rssBytes, startHelper, tproxyctl, type HelperHandle } from './lib/helper.js';
import { patternBytes, patternSha256 } from './lib/pattern.js';
import { e2ePreflight } from './lib/preflight.js';
import { runInNs } from './lib/proc.js';
import type { Topology } from './lib/topology.js';
import { HELLO_BODY } from './lib/upstream-app.js';
import { anchors, ourSteering, waitForExchange } from './lib/checks.js';
import { world } from './lib/world.js';

const skip = await e2ePreflight(['curl', 'systemd-socket-activate', 'update-ca-certificates']);

const MIB = 1024 * 1024;
const GOOD = ['--resolve', 'upstream.test:443:198.18.0.2'];

describe('decrypting local HTTPS end to end', { skip: skip ?? false, timeout: 600_000 }, () => {
  const w = world();
  let dir: string;
  let certs: UpstreamCerts;
  let topo: Topology;
  let helper: HelperHandle;

  before(async () => {
    ({ dir, certs, topo } = w);
    helper = await startHelper(topo, dir, 'helper', certs.caCert);
    const status = await helper.client.call(methods.captureStart, {});
    assert.equal(status.running, true);
  });

  after(async () => {
    await helper?.client.close().catch(() => undefined);
  });

  it('reports a running capture through tproxyctl --json status', async () => {
    const r = await tproxyctl(helper.socketPath, ['--json', 'status']);
    assert.equal(r.code, 0, r.stderr);
    const status = JSON.parse(r.stdout);
    assert.equal(status.running, true);
    assert.equal(status.available, true);
    assert.deepEqual(status.listeners, [
      { address: '127.0.0.1', port: 8443 },
      { address: '::1', port: 8443 },
    ]);
    assert.equal(status.caInstalled, true);
    assert.ok(status.rules.some((l: string) => /packets marked 0x2333 to route table 233/.test(l)), status.rules.join('\n'));
    assert.deepEqual(anchors().length, 1, 'exactly one CA file of ours in the trust store');
  });

  it('decrypts a GET made by curl that trusts only the system store, masking secrets', async () => {
    const r = await curlInNs(topo.clientNs, ['--fail', '--http1.1', ...GOOD, '-H', 'Authorization: Bearer sk-test-0123456789abcdef', 'https://upstream.test/hello']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, HELLO_BODY);
    const ex = await waitForExchange(helper.client, (e) => e.request.url === 'https://upstream.test/hello');
    assert.equal(ex.state, 'complete');
    assert.equal(ex.response?.status, 200);
    assert.equal(ex.server.address, '198.18.0.2');
    assert.equal(ex.server.port, 443);
    assert.equal(ex.client.address, '198.18.0.1');
    assert.equal(ex.tls.sni, 'upstream.test');
    assert.match(ex.tls.clientVersion ?? '', /^TLSv1\.[23]$/);
    assert.match(ex.tls.upstreamVersion ?? '', /^TLSv1\.[23]$/);
    const auth = ex.request.headers.find(([k]) => k.toLowerCase() === 'authorization')?.[1];
    assert.ok(auth && !auth.includes('0123456789abcdef') && auth.startsWith('Bearer '), `authorization captured as ${auth}`);
    assert.ok(ex.timing.upstreamConnected !== undefined && ex.timing.firstByte !== undefined && ex.timing.end !== undefined);
    assert.ok(ex.timing.upstreamConnected <= ex.timing.firstByte && ex.timing.firstByte <= ex.timing.end);

    const got = await tproxyctl(helper.socketPath, ['--json', 'get', String(ex.id)]);
    assert.equal(got.code, 0, got.stderr);
    const detail = JSON.parse(got.stdout);
    assert.equal(Buffer.from(detail.responseBody, 'base64').toString(), HELLO_BODY);
  });

  it('streams a 1 MiB POST both ways and caps the captured copy', async () => {
    const body = patternBytes(MIB, 'post');
    const file = join(dir, 'post.bin');
    await writeFile(file, body);
    const r = await curlInNs(topo.clientNs, ['--fail', ...GOOD, '-D', '-', '-o', '/dev/null', '--data-binary', `@${file}`, '-H', 'Content-Type: application/octet-stream', 'https://upstream.test/echo']);
    assert.equal(r.code, 0, r.stderr);
    const sha = createHash('sha256').update(body).digest('hex');
    assert.match(r.stdout, new RegExp(`x-request-sha256: ${sha}`, 'i'));
    const ex = await waitForExchange(helper.client, (e) => e.request.method === 'POST' && e.request.url === 'https://upstream.test/echo' && e.request.body.size === MIB);
    assert.deepEqual(ex.request.body, { size: MIB, captured: 64 * 1024, truncated: true });
    assert.deepEqual(ex.response?.body, { size: MIB, captured: 64 * 1024, truncated: true });
  });

  it('relays a chunked upload with Expect: 100-continue', async () => {
    const body = patternBytes(3 * MIB + 17, 'chunked');
    const file = join(dir, 'chunked.bin');
    await writeFile(file, body);
    const r = await curlInNs(topo.clientNs, ['--fail', ...GOOD, '-H', 'Transfer-Encoding: chunked', '-H', 'Expect: 100-continue', '--data-binary', `@${file}`, 'https://upstream.test/upload']);
    assert.equal(r.code, 0, r.stderr);
    const result = JSON.parse(r.stdout);
    assert.equal(result.bytes, body.length);
    assert.equal(result.sha256, createHash('sha256').update(body).digest('hex'));
    const ex = await waitForExchange(helper.client, (e) => e.request.url === 'https://upstream.test/upload' && e.request.body.size === body.length);
    assert.ok(ex.request.headers.some(([k, v]) => k.toLowerCase() === 'transfer-encoding' && v === 'chunked'));
  });

  it('reuses one intercepted connection for keep-alive requests (curl), HEAD, 204 and 304', async () => {
    const before = (await helper.client.call(methods.captureStatus, {})).interceptCount;
    const r = await curlInNs(topo.clientNs, [
      ...GOOD,
      '-w', '%{http_code} %{num_connects}\\n',
      '-o', '/dev/null', 'https://upstream.test/hello',
      '-o', '/dev/null', 'https://upstream.test/status/204',
      '-o', '/dev/null', 'https://upstream.test/status/304',
      '-o', '/dev/null', 'https://upstream.test/chunked?n=100000',
      // --next keeps the connection cache but scopes -I (HEAD) to the last URL only.
      '--next', ...GOOD, '-w', '%{http_code} %{num_connects}\\n', '-o', '/dev/null', '-I', 'https://upstream.test/hello',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n').filter((l) => /^\d{3} \d$/.test(l));
    assert.deepEqual(lines, ['200 1', '204 0', '304 0', '200 0', '200 0'], r.stdout);
    const afterCount = (await helper.client.call(methods.captureStatus, {})).interceptCount;
    assert.equal(afterCount - before, 1, 'five requests over one intercepted connection');
    const head = await waitForExchange(helper.client, (e) => e.request.method === 'HEAD');
    assert.equal(head.response?.status, 200);
    assert.equal(head.response?.body.size, 0);
    const chunked = await waitForExchange(helper.client, (e) => e.request.url === 'https://upstream.test/chunked?n=100000');
    assert.equal(chunked.response?.body.size, 100000);
  });

  it('serves Node https clients (system store via --use-openssl-ca), keep-alive and POST', async () => {
    const script = `
      const https = require('node:https');
      const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
      const lookup = (h, o, cb) => o && o.all ? cb(null, [{ address: '198.18.0.2', family: 4 }]) : cb(null, '198.18.0.2', 4);
      const req = (method, path, body) => new Promise((resolve, reject) => {
        const r = https.request({ host: 'upstream.test', path, method, agent, lookup }, (res) => {
          const chunks = []; res.on('data', (c) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString(), reused: r.reusedSocket }));
        });
        r.on('error', reject); r.end(body);
      });
      (async () => {
        const a = await req('GET', '/hello');
        const b = await req('POST', '/echo', 'node-body');
        console.log(JSON.stringify([a, b]));
        agent.destroy();
      })().catch((e) => { console.error(e); process.exit(1); });`;
    const r = await runInNs(topo.clientNs, [process.execPath, '--use-openssl-ca', '-e', script], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    const [a, b] = JSON.parse(r.stdout);
    assert.deepEqual(a, { status: 200, body: HELLO_BODY, reused: false });
    assert.deepEqual(b, { status: 200, body: 'node-body', reused: true });
  });

  it('intercepts IPv6 destinations the same way', async () => {
    const r = await curlInNs(topo.clientNs, ['--fail', '--resolve', 'upstream.test:443:[fd00:198:18::2]', 'https://upstream.test/hello?v6']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, HELLO_BODY);
    const ex = await waitForExchange(helper.client, (e) => e.request.url === 'https://upstream.test/hello?v6');
    assert.equal(ex.server.address, 'fd00:198:18::2');
  });

  it('answers 502 with the reason when the upstream certificate is untrusted, and records why', async () => {
    const r = await curlInNs(topo.clientNs, ['-D', '-', '--resolve', 'upstream.test:443:198.18.0.3', 'https://upstream.test/hello']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^HTTP\/1\.1 502 /);
    assert.match(r.stdout, /tproxy: upstream certificate rejected for upstream\.test \(198\.18\.0\.3:443\): self-signed certificate/);
    const ex = await waitForExchange(helper.client, (e) => e.server.address === '198.18.0.3');
    assert.equal(ex.state, 'error');
    assert.equal(ex.error?.kind, 'upstream-tls');
    assert.equal(ex.error?.code, 'DEPTH_ZERO_SELF_SIGNED_CERT');
    assert.equal(ex.response?.status, 502);
  });

  it('answers 502 when the upstream is down, and records the refused connect', async () => {
    const r = await curlInNs(topo.clientNs, ['-D', '-', '--resolve', 'upstream.test:443:198.18.0.4', 'https://upstream.test/hello']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^HTTP\/1\.1 502 /);
    assert.match(r.stdout, /connection refused \(ECONNREFUSED\)/);
    const ex = await waitForExchange(helper.client, (e) => e.server.address === '198.18.0.4');
    assert.equal(ex.error?.kind, 'upstream-connect');
    assert.equal(ex.error?.code, 'ECONNREFUSED');
  });

  it('tails completed exchanges as JSON lines with tproxyctl', async () => {
    const tail = tproxyctl(helper.socketPath, ['--json', 'tail', '--count', '1', '--timeout', '20']);
    // The subscription must exist before the request; poll a request until tail has printed it.
    let tailed: Awaited<typeof tail> | undefined;
    const done = tail.then((r) => (tailed = r));
    for (let i = 0; i < 40 && tailed === undefined; i++) {
      await curlInNs(topo.clientNs, ['--fail', ...GOOD, '-o', '/dev/null', `https://upstream.test/hello?tail=${i}`]);
      await Promise.race([done, new Promise((r) => setTimeout(r, 250))]);
    }
    await done;
    assert.equal(tailed!.code, 0, tailed!.stderr);
    const ex = JSON.parse(tailed!.stdout.trim().split('\n')[0]!) as Exchange;
    assert.match(ex.request.url, /^https:\/\/upstream\.test\/hello\?tail=\d+$/);
    assert.equal(ex.state, 'complete');
  });

  it('rejects invalid start parameters and a second start with clear errors', async () => {
    await assert.rejects(helper.client.call(methods.captureStart, { mark: 0 }), (err: Error & { code?: number }) => {
      assert.equal(err.code, -32602);
      assert.match(err.message, /mark: mark must be greater than 0/);
      return true;
    });
    await assert.rejects(helper.client.call(methods.captureStart, { routeTable: 70_000_000_000 }), /routeTable: routeTable must be between 1 and 2147483647/);
    const again = await tproxyctl(helper.socketPath, ['start']);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already running/);
  });

  it('passes a 1 GiB download byte-identical while the helper RSS grows by less than 64 MiB', async () => {
    const n = 1024 * MIB;
    const base = rssBytes(helper.proc.pid);
    let peak = base;
    const sampler = setInterval(() => {
      try {
        peak = Math.max(peak, rssBytes(helper.proc.pid));
      } catch {
        // the helper exited: the assertions below fail on their own
      }
    }, 50);
    try {
      const r = await curlInNs(topo.clientNs, ['--fail', ...GOOD, `https://upstream.test/bytes?n=${n}&seed=big`], { timeoutMs: 240_000, maxOutputBytes: 4096 });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.sha256, patternSha256(n, 'big'));
    } finally {
      clearInterval(sampler);
    }
    const grown = peak - base;
    assert.ok(grown < 64 * MIB, `helper RSS grew by ${(grown / MIB).toFixed(1)} MiB (base ${(base / MIB).toFixed(1)} MiB)`);
    const ex = await waitForExchange(helper.client, (e) => e.request.url.includes('seed=big'));
    assert.deepEqual(ex.response?.body, { size: n, captured: 64 * 1024, truncated: true });
  });

  it('stops: no table, rule or route of ours remains, and the CA leaves the trust store', async () => {
    const r = await tproxyctl(helper.socketPath, ['--json', 'stop']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).running, false);
    assert.equal(await ourSteering(topo.clientNs), '');
    assert.deepEqual(anchors(), []);
    // Traffic flows directly again: the self-signed upstream now fails in curl itself.
    const direct = await curlInNs(topo.clientNs, ['--resolve', 'upstream.test:443:198.18.0.3', 'https://upstream.test/hello']);
    assert.equal(direct.code, 60, 'curl sees the real (untrusted) certificate, not our 502');
    // Stop is idempotent.
    const again = await tproxyctl(helper.socketPath, ['stop']);
    assert.equal(again.code, 0, again.stderr);
  });
});

describe('crash safety', { skip: skip ?? false, timeout: 300_000 }, () => {
  const w = world();
  let dir: string;
  let certs: UpstreamCerts;
  let topo: Topology;

  before(() => {
    ({ dir, certs, topo } = w);
  });

  it('a new helper removes what a kill -9 left behind, before anything else', async () => {
    const first = await startHelper(topo, dir, 'killed', certs.caCert);
    await first.client.call(methods.captureStart, {});
    assert.notEqual(await ourSteering(topo.clientNs), '');
    assert.equal(anchors().length, 1);
    first.proc.kill('SIGKILL');
    await first.proc.waitForExit(10_000);
    await first.client.close().catch(() => undefined);
    assert.notEqual(await ourSteering(topo.clientNs), '', 'SIGKILL left the rules in place');

    // Same state dir, new socket: the record tells the new helper what to undo.
    const second = await startHelper(topo, dir, 'successor', certs.caCert, { stateName: 'killed' });
    try {
      const status = await second.client.call(methods.captureStatus, {});
      assert.equal(status.running, false);
      assert.equal(await ourSteering(topo.clientNs), '');
      assert.deepEqual(anchors(), []);
      // And it can capture again afterwards.
      await second.client.call(methods.captureStart, {});
      const r = await curlInNs(topo.clientNs, ['--fail', ...GOOD, 'https://upstream.test/hello']);
      assert.equal(r.code, 0, r.stderr);
      await second.client.call(methods.captureStop, {});
    } finally {
      await second.client.close().catch(() => undefined);
      await second.proc.stop();
    }
  });

  it('tproxy-helper --cleanup removes what a kill -9 left, and exits 0 when nothing is left', async () => {
    const h = await startHelper(topo, dir, 'cleanup', certs.caCert);
    await h.client.call(methods.captureStart, {});
    h.proc.kill('SIGKILL');
    await h.proc.waitForExit(10_000);
    await h.client.close().catch(() => undefined);
    const run = () => runInNs(topo.clientNs, [process.execPath, HELPER_MAIN, '--cleanup', '--state-dir', h.stateDir, '--socket', h.socketPath], { timeoutMs: 30_000 });
    const first = await run();
    assert.equal(first.code, 0, first.stderr);
    assert.equal(await ourSteering(topo.clientNs), '');
    assert.deepEqual(anchors(), []);
    assert.equal(existsSync(h.socketPath), false);
    const second = await run();
    assert.equal(second.code, 0, second.stderr);
  });

  it('SIGTERM during capture reverts everything and exits 0', async () => {
    const h = await startHelper(topo, dir, 'term', certs.caCert);
    await h.client.call(methods.captureStart, {});
    h.proc.kill('SIGTERM');
    const status = await h.proc.waitForExit(20_000);
    await h.client.close().catch(() => undefined);
    assert.equal(status.code, 0, h.proc.output().stderr);
    assert.equal(await ourSteering(topo.clientNs), '');
    assert.deepEqual(anchors(), []);
  });
});
