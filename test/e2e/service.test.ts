/**
 * The helper as an installed, socket-activated service: started by the first connection, it exits
 * 0 on its own after `--idle-exit` seconds with no client and no capture, and never while capture
 * runs. systemd-socket-activate stands in for systemd.
 *
 * Not covered here: systemd starting a *new* helper on the next connection. systemd-socket-activate
 * (without --accept) execs the daemon in place on the first connection, so when the helper exits
 * the activator is gone too and nothing holds the socket; the last test pins that limitation down
 * so nobody mistakes it for a restart test. Real restart needs systemd as PID 1.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { TproxyClient, methods } from '@tproxy/client';
import { ourSteering } from './lib/checks.js';
import { startHelper, type HelperHandle } from './lib/helper.js';
import { e2ePreflight } from './lib/preflight.js';
import { world } from './lib/world.js';

const skip = await e2ePreflight(['systemd-socket-activate', 'update-ca-certificates']);

const IDLE_S = 2;
/** Idle period plus start-up and shutdown slack; still a bounded wait. */
const EXIT_WITHIN_MS = IDLE_S * 1000 + 3000;

function connectRaw(path: string): Promise<'connected' | string> {
  return new Promise((resolve) => {
    const s = net.connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

describe('socket-activated helper idle exit', { skip: skip ?? false, timeout: 120_000 }, () => {
  const w = world();
  const helpers: HelperHandle[] = [];
  const start = async (name: string) => {
    const h = await startHelper(w.topo, w.dir, name, w.certs.caCert, { extraArgs: ['--idle-exit', String(IDLE_S)] });
    helpers.push(h);
    return h;
  };

  after(async () => {
    for (const h of helpers) await h.client.close().catch(() => undefined);
  });

  it('starts on the first connection and exits 0 after the client leaves and the idle period passes', async () => {
    const h = await start('idle');
    const info = await h.client.call(methods.helperInfo, {});
    // systemd-socket-activate execs the helper in place: same pid as the activator.
    assert.equal(info.pid, h.proc.pid);
    // Connected: no idle exit, however long we wait.
    await delay(IDLE_S * 1000 + 1000);
    assert.equal(h.proc.exitStatus, undefined, 'the helper exited while a client was connected');
    assert.equal((await h.client.call(methods.helperInfo, {})).pid, info.pid);

    const closedAt = performance.now();
    await h.client.close();
    const status = await h.proc.waitForExit(EXIT_WITHIN_MS);
    const tookMs = performance.now() - closedAt;
    assert.equal(status.code, 0, h.proc.output().stderr);
    assert.ok(tookMs >= IDLE_S * 1000 - 100, `exited after ${Math.round(tookMs)} ms, before the idle period`);
    assert.match(h.proc.output().stderr + h.proc.output().stdout, /exiting: idle for 2 s \(no capture running, no RPC client connected\)/);
  });

  it('does not exit while capture runs, even with no client; exits once capture is stopped', async () => {
    const h = await start('busy');
    assert.equal((await h.client.call(methods.captureStart, {})).running, true);
    await h.client.close();
    await delay(IDLE_S * 1000 + 2000);
    assert.equal(h.proc.exitStatus, undefined, `the helper exited while capturing:\n${h.proc.output().stderr}`);
    assert.notEqual(await ourSteering(w.topo.clientNs), '', 'steering rules are in place');

    const again = await TproxyClient.connect({ socketPath: h.socketPath, timeoutMs: 30_000 });
    try {
      assert.equal((await again.call(methods.captureStatus, {})).running, true);
      assert.equal((await again.call(methods.captureStop, {})).running, false);
    } finally {
      await again.close();
    }
    const status = await h.proc.waitForExit(EXIT_WITHIN_MS);
    assert.equal(status.code, 0, h.proc.output().stderr);
    assert.equal(await ourSteering(w.topo.clientNs), '', 'an idle exit leaves nothing behind');
  });

  it('limitation of the stand-in: after the exit nothing listens, so it cannot start a second helper', async () => {
    const h = helpers[0]!;
    assert.ok(h.proc.exitStatus, 'the first helper has exited');
    // Under systemd the socket unit keeps listening and this connection would start a new helper.
    assert.equal(await connectRaw(h.socketPath), 'ECONNREFUSED');
  });
});
