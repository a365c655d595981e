/**
 * Crash safety, against the real kernel and the (sandboxed) trust store: a helper killed with
 * SIGKILL in the middle of a capture leaves its nft table, ip rules, routes and CA anchor behind,
 * and each of the two ways back removes all of it:
 *   (a) `tproxy-helper --cleanup --keep-socket`, what the unit's ExecStopPost runs;
 *   (b) a new helper's start-up repair, which also reports the killed session in helper.info.
 * Plus helper.repair: nothing to do on a clean host, refused while capture runs.
 *
 *   client ns: helper #1 ── capture ── kill -9 ──▶ leftovers (nft, ip rule/route, CA anchor)
 *              (a) tproxy-helper --cleanup ─────▶ nothing
 *              (b) helper #2 (same state dir) ──▶ nothing + helper.info.previousSession
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ErrorCode, RpcError, methods } from '@tproxy/client';
import { anchors, ourSteering, waitForExchange } from './lib/checks.js';
import { curlInNs } from './lib/curl.js';
import { HELPER_MAIN, startHelper, tproxyctl, type HelperHandle } from './lib/helper.js';
import { e2ePreflight } from './lib/preflight.js';
import { runInNs } from './lib/proc.js';
import { world, type World } from './lib/world.js';

const skip = await e2ePreflight(['curl', 'systemd-socket-activate', 'update-ca-certificates']);

const GOOD = ['--resolve', 'upstream.test:443:198.18.0.2'];
/** The system bundle update-ca-certificates regenerates (inside the sandbox). */
const BUNDLE = '/etc/ssl/certs/ca-certificates.crt';

/** The base64 body of a PEM, for "is this certificate in that bundle" checks. */
function pemBody(pem: string): string {
  return pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '');
}

function bundleHas(pem: string): boolean {
  return readFileSync(BUNDLE, 'utf8').replace(/\s+/g, '').includes(pemBody(pem));
}

/** Starts a helper, starts capture, proves a request is intercepted, then SIGKILLs the helper. */
async function captureThenKill(w: World, name: string): Promise<{ h: HelperHandle; pem: string; startedAt: number }> {
  const h = await startHelper(w.topo, w.dir, name, w.certs.caCert);
  const status = await h.client.call(methods.captureStart, {});
  assert.equal(status.running, true);
  assert.equal(status.caInstalled, true, 'the CA is in the (sandboxed) trust store');
  const { pem } = await h.client.call(methods.caGet, {});
  // The system store trusts our CA: plain curl (no --cacert) is intercepted and verifies.
  const r = await curlInNs(w.topo.clientNs, ['--fail', ...GOOD, `https://upstream.test/hello?${name}`]);
  assert.equal(r.code, 0, r.stderr);
  await waitForExchange(h.client, (e) => e.request.url.endsWith(`?${name}`));
  await h.client.close();
  assert.ok(h.proc.kill('SIGKILL'));
  await h.proc.waitForExit(10_000);
  // Not vacuous: the kill left everything in place.
  assert.match(await ourSteering(w.topo.clientNs), /tproxy_helper/);
  assert.match(await ourSteering(w.topo.clientNs), /lookup 233/);
  assert.equal(anchors().length, 1, `one CA anchor left: ${anchors().join(', ')}`);
  assert.ok(bundleHas(pem), 'our CA is still in the system bundle after the kill');
  assert.ok(existsSync(join(h.stateDir, 'applied.json')), 'the applied-state record survived the kill');
  return { h, pem, startedAt: status.startedAt! };
}

async function assertNothingLeft(w: World, pem: string, stateDir: string): Promise<void> {
  assert.equal(await ourSteering(w.topo.clientNs), '', 'no nft table, ip rule or route of ours');
  assert.deepEqual(anchors(), [], 'no tproxy anchor in the trust store');
  assert.equal(bundleHas(pem), false, 'our CA is gone from the system bundle');
  assert.equal(existsSync(join(stateDir, 'applied.json')), false, 'the record is cleared');
  // And traffic flows directly again: the upstream's own certificate, not ours.
  const direct = await curlInNs(w.topo.clientNs, ['--fail', '--cacert', w.certs.caCert, ...GOOD, 'https://upstream.test/hello']);
  assert.equal(direct.code, 0, direct.stderr);
}

describe('crash safety: kill -9 during capture', { skip: skip ?? false, timeout: 300_000 }, () => {
  const w = world();

  it('(a) the ExecStopPost cleanup leaves no rule, route or trust anchor', async () => {
    const { h, pem } = await captureThenKill(w, 'crash-a');
    const cleanup = await runInNs(
      w.topo.clientNs,
      [process.execPath, HELPER_MAIN, '--cleanup', '--keep-socket', '--state-dir', h.stateDir, '--socket', h.socketPath],
      { timeoutMs: 60_000 },
    );
    assert.equal(cleanup.code, 0, cleanup.stderr);
    assert.match(cleanup.stderr, new RegExp(`repaired state left by helper pid ${h.proc.pid}`));
    assert.match(cleanup.stderr, /cleanup removed: .*nft table inet tproxy_helper.*trust-store entry /);
    await assertNothingLeft(w, pem, h.stateDir);
    // --keep-socket: the socket file is systemd's and stays.
    assert.ok(existsSync(h.socketPath), 'the socket file is kept');

    // Running it again finds nothing.
    const again = await runInNs(w.topo.clientNs, [process.execPath, HELPER_MAIN, '--cleanup', '--keep-socket', '--state-dir', h.stateDir, '--socket', h.socketPath], { timeoutMs: 60_000 });
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /cleanup: nothing of ours was left/);
  });

  it('(b) a new helper repairs at start-up and reports the killed session; helper.repair then finds nothing', async (t) => {
    const { h: killed, pem, startedAt } = await captureThenKill(w, 'crash-b');
    const h = await startHelper(w.topo, w.dir, 'crash-b2', w.certs.caCert, { stateName: 'crash-b' });
    t.after(async () => {
      await h.client.close().catch(() => undefined);
      await h.proc.stop();
    });
    const info = await h.client.call(methods.helperInfo, {});
    await assertNothingLeft(w, pem, h.stateDir);
    const prev = info.previousSession;
    assert.ok(prev, `helper.info reports the previous session: ${JSON.stringify(info)}`);
    assert.equal(prev.pid, killed.proc.pid);
    assert.ok(Math.abs((prev.startedAt ?? 0) - startedAt) < 5000, `recorded start ${prev.startedAt} vs ${startedAt}`);
    assert.deepEqual(prev.ports, [443]);
    assert.equal(prev.exchangesLost, true);
    assert.ok(prev.removed.includes('nft table inet tproxy_helper'), prev.removed.join('\n'));
    assert.ok(prev.removed.some((r) => /^trust-store entry \/usr\/local\/share\/ca-certificates\/tproxy-.*\.crt$/.test(r)), prev.removed.join('\n'));
    assert.ok(prev.removed.some((r) => /rule/.test(r)) && prev.removed.some((r) => /route/.test(r)), prev.removed.join('\n'));
    assert.match(prev.note, /not resumed/);
    // The killed session's exchanges are not claimed by the new helper.
    assert.deepEqual((await h.client.call(methods.exchangesList, {})).exchanges, []);

    const human = await tproxyctl(h.socketPath, ['status']);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, new RegExp(`^previous session: helper pid ${killed.proc.pid} \\(capturing ports 443 since .*\\) stopped without cleaning up`, 'm'));
    assert.match(human.stdout, /^ {2}removed: nft table inet tproxy_helper$/m);

    // helper.repair on the now clean host: nothing removed, nothing previous.
    assert.deepEqual(await h.client.call(methods.helperRepair, {}), { removed: [] });
    const cli = await tproxyctl(h.socketPath, ['repair']);
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /^nothing to repair/);

    // While capture runs, the rules are the running session's: helper.repair refuses.
    await h.client.call(methods.captureStart, {});
    await assert.rejects(h.client.call(methods.helperRepair, {}), (err: unknown) => {
      assert.ok(err instanceof RpcError);
      assert.equal(err.code, ErrorCode.CaptureRunning);
      assert.match(err.message, /stop capture first/);
      return true;
    });
    assert.match(await ourSteering(w.topo.clientNs), /tproxy_helper/, 'the refused repair touched nothing');
    assert.equal(anchors().length, 1);
    const refused = await tproxyctl(h.socketPath, ['repair']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /capture is running/);
    await h.client.call(methods.captureStop, {});
    assert.equal(await ourSteering(w.topo.clientNs), '');
    assert.deepEqual(anchors(), []);
  });
});
