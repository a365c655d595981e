/**
 * The helper as a system service that fails safe, against the real kernel (lib/topology.ts):
 * - fail-open: a helper killed with SIGKILL (no cleanup at all) stops intercepting by itself once
 *   the `ports` set elements it no longer refreshes expire (PORTS_TIMEOUT_SECONDS, 8 s), so new
 *   connections flow directly again even though its table is still there;
 * - interception lost: when someone else deletes our nft table, capture.status reports it.
 *
 *   client ns: curl ──SYN to 198.18.0.3:443──▶ nft (tcp dport @ports) ▶ ip rule ▶ lo ▶ helper :8443
 *   after the elements expire:  curl ──────────────────────────────────▶ upstream ns :443 (self-signed)
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { methods, type CaptureStatus } from '@tproxy/client';
import { ourSteering } from './lib/checks.js';
import { CURL_EXIT, curlInNs } from './lib/curl.js';
import { HELPER_MAIN, startHelper, tproxyctl } from './lib/helper.js';
import { e2ePreflight } from './lib/preflight.js';
import { runInNs } from './lib/proc.js';
import { world } from './lib/world.js';

const skip = await e2ePreflight(['curl', 'systemd-socket-activate', 'update-ca-certificates']);

/** The self-signed upstream: tproxy answers 502 for it, curl itself fails with exit 60. */
const BAD = ['-D', '-', '--resolve', 'upstream.test:443:198.18.0.3', 'https://upstream.test/hello'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('failing safe', { skip: skip ?? false, timeout: 300_000 }, () => {
  const w = world();

  it('SIGKILL: interception stops by itself within 12 s, and traffic flows directly again', async (t) => {
    const { topo, dir, certs } = w;
    const h = await startHelper(topo, dir, 'killed', certs.caCert);
    t.after(async () => {
      await h.client.close().catch(() => undefined);
      await h.proc.stop();
      // Remove the table the killed helper left (the namespace goes with world() anyway).
      await runInNs(topo.clientNs, [process.execPath, HELPER_MAIN, '--cleanup', '--state-dir', h.stateDir, '--socket', h.socketPath], { timeoutMs: 30_000 });
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
    assert.ok(elapsed <= 12_000, `direct again after ${elapsed} ms`);
    // Fail-open, not cleanup: the table is still there, only its port elements expired.
    assert.match(await ourSteering(topo.clientNs), /tproxy_helper/);
    const set = await runInNs(topo.clientNs, ['nft', 'list', 'set', 'inet', 'tproxy_helper', 'ports']);
    assert.equal(set.code, 0, set.stderr);
    assert.doesNotMatch(set.stdout, /elements/, set.stdout);
  });

  it('reports lost interception in capture.status and to subscribers when someone deletes our table', async (t) => {
    const { topo, dir, certs } = w;
    const h = await startHelper(topo, dir, 'watched', certs.caCert);
    t.after(async () => {
      await h.client.close().catch(() => undefined);
      await h.proc.stop();
    });
    const started = await h.client.call(methods.captureStart, {});
    assert.equal(started.interception?.ok, true, JSON.stringify(started.interception));
    // A subscriber learns it without polling (capture.statusChanged), and so does a real tail.
    const pushed: CaptureStatus[] = [];
    h.client.onCaptureStatus((s) => pushed.push(s));
    await h.client.call(methods.exchangesSubscribe, {});
    const tail = tproxyctl(h.socketPath, ['tail', '--timeout', '10'], 30_000);
    await sleep(1_500);

    const del = await runInNs(topo.clientNs, ['nft', 'delete', 'table', 'inet', 'tproxy_helper']);
    assert.equal(del.code, 0, del.stderr);
    const deletedAt = Date.now();

    let status = await h.client.call(methods.captureStatus, {});
    while (status.interception?.ok !== false && Date.now() - deletedAt < 6_500) {
      await sleep(200);
      status = await h.client.call(methods.captureStatus, {});
    }
    assert.equal(status.interception?.ok, false, `not reported within ${Date.now() - deletedAt} ms: ${JSON.stringify(status.interception)}`);
    assert.ok(status.running, 'capture still counts as running: its listeners and state are intact');
    assert.ok(
      status.interception.problems.some((p) => /missing: nft table inet tproxy_helper|heartbeat failed.*No such file or directory/.test(p)),
      status.interception.problems.join('\n'),
    );
    const human = await tproxyctl(h.socketPath, ['status']);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /^interception lost: /m);
    assert.ok(pushed.some((s) => s.running && s.interception?.ok === false), `no capture.statusChanged with interception lost: ${JSON.stringify(pushed)}`);
    const tailed = await tail;
    assert.equal(tailed.code, 0, tailed.stderr);
    assert.match(tailed.stderr, /^tproxyctl: interception lost: .*tproxy_helper/m);

    // The helper never re-creates the table behind the user's back...
    await sleep(2_500);
    assert.doesNotMatch(await ourSteering(topo.clientNs), /tproxy_helper/);
    // ...and stop still removes the rest (rules and routes) cleanly.
    const stopped = await h.client.call(methods.captureStop, {});
    assert.equal(stopped.running, false);
    assert.equal(pushed.at(-1)?.running, false, 'the stop is pushed too');
    assert.equal(stopped.interception, undefined);
    assert.equal(await ourSteering(topo.clientNs), '');
  });
});
