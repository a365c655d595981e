/**
 * The stdlib-only Python client (examples/tproxy_client.py) against the real tproxy-helper, as a
 * check that docs/protocol.md describes enough of the protocol to write a client from it: start,
 * a curl intercepted through the proxy, a bounded tail, get, stop, and the error paths (a second
 * start, an unknown id, no socket) with their exit codes and the JSON-RPC code shown.
 * Root only (namespaces, nft, trust-store sandbox); skipped with the reason otherwise.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { curlInNs } from './lib/curl.js';
import { startHelper, type HelperHandle } from './lib/helper.js';
import { e2ePreflight, which } from './lib/preflight.js';
import { runCommand, type RunResult } from './lib/proc.js';
import { ourSteering } from './lib/checks.js';
import type { Topology } from './lib/topology.js';
import { HELLO_BODY } from './lib/upstream-app.js';
import { world } from './lib/world.js';

const CLIENT = fileURLToPath(new URL('../../examples/tproxy_client.py', import.meta.url));
const GOOD = ['--resolve', 'upstream.test:443:198.18.0.2'];

async function pythonSkip(): Promise<string | undefined> {
  const py = which('python3');
  if (py === undefined) return 'needs python3 on PATH';
  const r = await runCommand([py, '-c', 'import sys; sys.exit(0 if sys.version_info >= (3, 8) else 1)']).catch(() => undefined);
  return r?.code === 0 ? undefined : 'needs a working python3 (>= 3.8)';
}

const skip = (await e2ePreflight(['curl', 'systemd-socket-activate', 'update-ca-certificates'])) ?? (await pythonSkip());

describe('examples/tproxy_client.py against the real helper', { skip: skip ?? false, timeout: 300_000 }, () => {
  const w = world();
  let topo: Topology;
  let helper: HelperHandle;
  let socketPath: string;

  const py = (args: readonly string[], timeoutMs = 30_000): Promise<RunResult> =>
    runCommand([which('python3')!, CLIENT, '--socket', socketPath, ...args], { timeoutMs });

  before(async () => {
    topo = w.topo;
    helper = await startHelper(topo, w.dir, 'pyhelper', w.certs.caCert);
    socketPath = helper.socketPath;
  });

  after(async () => {
    await helper?.client.close().catch(() => undefined);
  });

  it('starts a capture', async () => {
    const r = await py(['start', '--port', '443']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^capture: running$/m);
    assert.match(r.stdout, /^listener: 127\.0\.0\.1:8443$/m);
    assert.match(r.stdout, /^listener: \[::1\]:8443$/m);
    assert.match(r.stdout, /^ports: 443$/m);
    assert.match(r.stdout, /^CA: installed \(/m);
  });

  it('refuses a second start with exit 1 and the capture-already-running code', async () => {
    const r = await py(['start']);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, /error -32011 \(capture-already-running\): capture is already running/);
  });

  let tailedId = 0;
  let tailedUrl = '';

  it('tails an intercepted curl request, bounded by --count and --timeout', async () => {
    const tail = py(['tail', '--count', '1', '--timeout', '20'], 40_000);
    // The subscription must exist before the request; repeat requests until tail has printed one.
    let tailed: RunResult | undefined;
    const done = tail.then((r) => (tailed = r));
    for (let i = 0; i < 40 && tailed === undefined; i++) {
      const c = await curlInNs(topo.clientNs, ['--fail', '--http1.1', ...GOOD, `https://upstream.test/hello?py=${i}`]);
      assert.equal(c.code, 0, c.stderr);
      assert.equal(c.stdout, HELLO_BODY);
      await Promise.race([done, new Promise((r) => setTimeout(r, 250))]);
    }
    await done;
    assert.equal(tailed!.code, 0, tailed!.stderr);
    const lines = tailed!.stdout.trim().split('\n');
    assert.equal(lines.length, 1, tailed!.stdout);
    const m = /^(\d+) GET (https:\/\/upstream\.test\/hello\?py=\d+) 200 (\d+)$/.exec(lines[0]!);
    assert.ok(m, `unexpected tail line: ${lines[0]}`);
    assert.equal(Number(m[3]), Buffer.byteLength(HELLO_BODY));
    tailedId = Number(m[1]);
    tailedUrl = m[2]!;
  });

  it('gets that exchange: both heads and the decoded body size', async () => {
    assert.ok(tailedId > 0, 'the tail test must have run');
    const r = await py(['get', String(tailedId)]);
    assert.equal(r.code, 0, r.stderr);
    const size = Buffer.byteLength(HELLO_BODY);
    assert.ok(r.stdout.includes(`GET ${tailedUrl} HTTP/1.1\n`), r.stdout);
    assert.match(r.stdout, /^Host: upstream\.test$/m);
    assert.match(r.stdout, /^HTTP\/1\.1 200 OK$/m);
    assert.match(r.stdout, new RegExp(`^content-length: ${size}$`, 'im'));
    assert.match(r.stdout, /^request body: 0 bytes captured of 0$/m);
    assert.match(r.stdout, new RegExp(`^response body: ${size} bytes captured of ${size}$`, 'm'));
  });

  it('reports an unknown id with exit 1 and exchange-not-found', async () => {
    const r = await py(['get', '999999']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /error -32020 \(exchange-not-found\): no exchange 999999/);
  });

  it('stops the capture and leaves no rule behind', async () => {
    const r = await py(['stop']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^capture: stopped$/m);
    assert.match(r.stdout, /^CA: not installed$/m);
    assert.equal(await ourSteering(topo.clientNs), '');
    const status = await py(['--json', 'status']);
    assert.equal(status.code, 0, status.stderr);
    assert.equal(JSON.parse(status.stdout).running, false);
  });

  it('tail exits 3 when --timeout passes before --count exchanges', async () => {
    const r = await py(['tail', '--count', '1', '--timeout', '1']);
    assert.equal(r.code, 3, r.stdout);
    assert.match(r.stderr, /timed out after 1 s with 0 of 1 exchanges/);
  });

  it('explains a missing socket (ENOENT) with exit 2', async () => {
    const r = await runCommand([which('python3')!, CLIENT, '--socket', join(w.dir, 'nope.sock'), 'status']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /no tproxy-helper socket at .*nope\.sock \(ENOENT\)/);
  });
});
