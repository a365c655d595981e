/**
 * `tproxyctl env` end to end: the real helper writes the world-readable ca.pem and bundle.pem next
 * to its socket, and the exports `tproxyctl env` prints, eval'd by bash in the client namespace,
 * are enough on their own for a runtime with its own roots. Node without --use-openssl-ca ignores
 * the OS trust store (which holds our CA while capture runs), so it fails without the env and
 * succeeds with it.
 */
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { methods } from '@tproxy/client';
import { cleanEnv } from './lib/env.js';
import { startHelper, tproxyctl, type HelperHandle } from './lib/helper.js';
import { e2ePreflight } from './lib/preflight.js';
import { runInNs } from './lib/proc.js';
import type { Topology } from './lib/topology.js';
import { HELLO_BODY } from './lib/upstream-app.js';
import { world } from './lib/world.js';

const skip = await e2ePreflight(['curl', 'bash', 'systemd-socket-activate', 'update-ca-certificates']);

const NODE_GET = `
  const https = require('node:https');
  const lookup = (h, o, cb) => o && o.all ? cb(null, [{ address: '198.18.0.2', family: 4 }]) : cb(null, '198.18.0.2', 4);
  https.get({ host: 'upstream.test', path: '/hello', lookup }, (res) => {
    const chunks = []; res.on('data', (c) => chunks.push(c));
    res.on('end', () => console.log(JSON.stringify({ status: res.statusCode, body: Buffer.concat(chunks).toString() })));
  }).on('error', (e) => { console.error(e.code || e.message); process.exit(3); });`;

describe('tproxyctl env: trust for runtimes with their own stores', { skip: skip ?? false, timeout: 300_000 }, () => {
  const w = world();
  let topo: Topology;
  let helper: HelperHandle;
  let exports: string;

  before(async () => {
    topo = w.topo;
    helper = await startHelper(topo, w.dir, 'helper', w.certs.caCert);
    assert.equal((await helper.client.call(methods.captureStart, {})).running, true);
    const r = await tproxyctl(helper.socketPath, ['env']);
    assert.equal(r.code, 0, r.stderr);
    exports = r.stdout;
  });
  after(async () => {
    await helper?.client.close().catch(() => undefined);
  });

  /** Runs `argv` in the client namespace after bash eval's `env` (or nothing), with no trust variables inherited. */
  const withEnv = (env: string, argv: string[]) =>
    runInNs(topo.clientNs, ['bash', '-c', 'eval "$1"; shift; exec "$@"', 'bash', env, ...argv], { env: cleanEnv(), timeoutMs: 30_000 });

  it('ca.get names 0644 files next to the socket: our CA alone, and the system roots then our CA', async () => {
    const ca = await helper.client.call(methods.caGet, {});
    const runDir = dirname(helper.socketPath);
    assert.equal(ca.caPath, join(runDir, 'ca.pem'));
    assert.equal(ca.bundlePath, join(runDir, 'bundle.pem'));
    for (const path of [ca.caPath, ca.bundlePath]) assert.equal((await stat(path)).mode & 0o777, 0o644, path);
    assert.equal(await readFile(ca.caPath, 'utf8'), ca.pem);
    const bundle = await readFile(ca.bundlePath, 'utf8');
    assert.ok(bundle.endsWith(ca.pem), 'our CA comes last');
    assert.equal(bundle.indexOf(ca.pem), bundle.length - ca.pem.length, 'our CA appears once although the trust store holds it');
    assert.ok((bundle.match(/-----BEGIN CERTIFICATE-----/g) ?? []).length > 1, 'the system roots are there too');
    assert.deepEqual(ca.env, {
      SSL_CERT_FILE: ca.bundlePath,
      REQUESTS_CA_BUNDLE: ca.bundlePath,
      CURL_CA_BUNDLE: ca.bundlePath,
      GIT_SSL_CAINFO: ca.bundlePath,
      NODE_EXTRA_CA_CERTS: ca.caPath,
    });
    assert.ok(exports.includes(`\nexport NODE_EXTRA_CA_CERTS='${ca.caPath}'\n`), exports);
  });

  it("Node's built-in roots reject the intercepted server without the env, and accept it with NODE_EXTRA_CA_CERTS from env", async () => {
    const without = await withEnv('', [process.execPath, '-e', NODE_GET]);
    assert.equal(without.code, 3, `expected a certificate error, got: ${without.stdout}${without.stderr}`);
    assert.match(without.stderr, /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT|SELF_SIGNED|CERT/);

    const withIt = await withEnv(exports, [process.execPath, '-e', NODE_GET]);
    assert.equal(withIt.code, 0, withIt.stderr);
    assert.deepEqual(JSON.parse(withIt.stdout), { status: 200, body: HELLO_BODY });
  });

  it('curl accepts the intercepted server with --cacert "$CURL_CA_BUNDLE" from env', async () => {
    const r = await withEnv(exports, ['bash', '-c', 'exec curl -q --noproxy "*" -sS --fail --resolve upstream.test:443:198.18.0.2 --cacert "$CURL_CA_BUNDLE" --capath /nonexistent https://upstream.test/hello']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, HELLO_BODY);
  });
});
