/**
 * Process attribution end to end: the real helper (socket-activated, in the client namespace of
 * lib/topology.ts, so /proc/net/tcp there holds the intercepted clients' sockets) records which
 * local program opened each intercepted connection, and tproxyctl get prints it.
 *
 *   client ns: curl / node (uid 0) ──▶ nft TPROXY ──▶ helper :8443 ──▶ upstream ns :443
 *              helper: accepted socket's peer 4-tuple ─▶ /proc/net/tcp{,6} inode ─▶ /proc/<pid>/fd
 */
import assert from 'node:assert/strict';
import { basename } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { methods, type Exchange } from '@tproxy/client';
import { curlInNs } from './lib/curl.js';
import { startHelper, tproxyctl, type HelperHandle } from './lib/helper.js';
import { e2ePreflight } from './lib/preflight.js';
import { runInNs } from './lib/proc.js';
import type { Topology } from './lib/topology.js';
import { HELLO_BODY } from './lib/upstream-app.js';
import { waitForExchange } from './lib/checks.js';
import { world } from './lib/world.js';

const skip = await e2ePreflight(['curl', 'systemd-socket-activate', 'update-ca-certificates']);

const GOOD = ['--resolve', 'upstream.test:443:198.18.0.2'];
/** Attribution may land in an `updated` event just after the exchange was recorded. */
const attributed = (url: string) => (e: Exchange) => e.request.url === url && e.process?.pid !== undefined;

describe('process attribution end to end', { skip: skip ?? false, timeout: 300_000 }, () => {
  const w = world();
  let dir: string;
  let topo: Topology;
  let helper: HelperHandle;

  before(async () => {
    ({ dir, topo } = w);
    helper = await startHelper(topo, dir, 'helper', w.certs.caCert);
    assert.equal((await helper.client.call(methods.captureStart, {})).running, true);
  });

  after(async () => {
    await helper?.client.close().catch(() => undefined);
  });

  it('attributes a curl request to curl, run as root, and tproxyctl get shows it', async () => {
    const url = 'https://upstream.test/hello?attr=curl';
    const r = await curlInNs(topo.clientNs, ['--fail', '--http1.1', ...GOOD, url]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, HELLO_BODY);
    const ex = await waitForExchange(helper.client, (e) => e.request.url === url).then((e) => (e.process?.pid !== undefined ? e : waitForExchange(helper.client, attributed(url), 2_000).catch(() => assert.fail(`not attributed: ${JSON.stringify(e.process)}`))));
    const p = ex.process!;
    assert.ok(p.command?.startsWith('curl'), `command ${p.command}`);
    assert.ok(p.command?.includes(url), `command ${p.command}`);
    assert.equal(p.uid, 0);
    assert.equal(p.user, 'root');
    assert.ok(p.pid! > 1);
    const get = await tproxyctl(helper.socketPath, ['get', String(ex.id)]);
    assert.equal(get.code, 0, get.stderr);
    assert.match(get.stdout, new RegExp(`^process: pid ${p.pid} · root\\(0\\) · curl `, 'm'));
  });

  it('attributes a Node client to node, for every exchange on its kept-alive connection', async () => {
    const script = `
      const https = require('node:https');
      const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
      const lookup = (h, o, cb) => o && o.all ? cb(null, [{ address: '198.18.0.2', family: 4 }]) : cb(null, '198.18.0.2', 4);
      const get = (path) => new Promise((resolve, reject) => {
        https.get({ host: 'upstream.test', path, agent, lookup }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); }).on('error', reject);
      });
      (async () => {
        console.log(JSON.stringify([await get('/hello?attr=node1'), await get('/hello?attr=node2'), process.pid]));
        agent.destroy();
      })().catch((e) => { console.error(e); process.exit(1); });`;
    const r = await runInNs(topo.clientNs, [process.execPath, '--use-openssl-ca', '-e', script], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    const [s1, s2, pid] = JSON.parse(r.stdout) as [number, number, number];
    assert.deepEqual([s1, s2], [200, 200]);
    for (const n of [1, 2]) {
      const ex = await waitForExchange(helper.client, attributed(`https://upstream.test/hello?attr=node${n}`));
      assert.equal(ex.process?.pid, pid);
      assert.equal(ex.process?.uid, 0);
      assert.match(basename(ex.process?.command?.split(' ')[0] ?? ''), /^node/, `command ${ex.process?.command}`);
    }
  });
});
