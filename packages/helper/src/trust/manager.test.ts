import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, before, beforeEach, describe, it } from 'node:test';
import { generateCa } from '../ca/generate.js';
import { caMaterialFromPem, type CaMaterial } from '../ca/material.js';
import { FakeExec } from '../exec.js';
import { readRecord } from '../firewall/record.js';
import { silentLogger } from '../log.js';
import { LINUX_TRUST_STORES, type TrustStore } from './linux.js';
import { TrustManager } from './manager.js';
import { TRUST_RECORD_FILE } from './record.js';

describe('TrustManager', () => {
  let ca: CaMaterial;
  let next: CaMaterial;
  let dir: string;
  let anchors: string;
  let stateDir: string;
  let store: TrustStore;
  let exec: FakeExec;
  const manager = () => new TrustManager({ exec, stateDir, log: silentLogger, trustStore: store });

  before(async () => {
    for (const target of ['ca', 'next'] as const) {
      const g = await generateCa();
      const m = caMaterialFromPem(g.certPem, g.keyPem);
      if (target === 'ca') ca = m;
      else next = m;
    }
  });
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tproxy-trust-'));
    anchors = join(dir, 'anchors');
    stateDir = join(dir, 'state');
    await mkdir(anchors);
    store = { ...LINUX_TRUST_STORES.find((s) => s.family === 'debian-ubuntu')!, anchorDir: anchors };
    exec = new FakeExec(); // refresh commands succeed
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  const persistentFile = (m: CaMaterial) => `tproxy-persistent-${m.serialHex}.crt`;
  const captureFile = (m: CaMaterial) => `tproxy-${m.serialHex}.crt`;

  it('capture without a persistent install adds a capture-scoped anchor (recorded) and removes it', async () => {
    const trust = manager();
    const path = await trust.acquireForCapture(ca);
    assert.equal(path, join(anchors, captureFile(ca)));
    assert.equal((await readRecord(stateDir))?.trust?.path, path);
    assert.deepEqual(trust.state(ca.serialHex), { installed: true, trustStorePath: path, persistent: false });
    await trust.releaseForCapture();
    assert.deepEqual(await readdir(anchors), []);
    assert.equal(trust.state().installed, false);
  });

  it('a persistent install survives capture start/stop and a restart, and capture adds no second entry', async () => {
    await manager().install(ca);
    assert.deepEqual(await readdir(anchors), [persistentFile(ca)]);
    const record = JSON.parse(await readFile(join(stateDir, TRUST_RECORD_FILE), 'utf8'));
    assert.equal(record.persistent.serialHex, ca.serialHex);

    // A new helper reads the record.
    const trust = manager();
    assert.deepEqual(trust.state(ca.serialHex), { installed: true, trustStorePath: join(anchors, persistentFile(ca)), persistent: true });
    assert.equal(await trust.acquireForCapture(ca), null);
    await trust.releaseForCapture();
    assert.deepEqual(await readdir(anchors), [persistentFile(ca)]);
    const refreshes = exec.commands.filter((c) => c === 'update-ca-certificates').length;
    await trust.install(ca);
    assert.equal(exec.commands.filter((c) => c === 'update-ca-certificates').length, refreshes, 'installing again changes nothing');
  });

  it('installing during a capture retires the capture-scoped anchor; uninstalling during one puts it back', async () => {
    const trust = manager();
    await trust.acquireForCapture(ca);
    await trust.install(ca);
    assert.deepEqual(await readdir(anchors), [persistentFile(ca)]);
    assert.equal((await readRecord(stateDir))?.trust, undefined, 'nothing capture-scoped left for repair');
    await trust.uninstall(ca, true);
    assert.deepEqual(await readdir(anchors), [captureFile(ca)]);
    assert.deepEqual(trust.state(ca.serialHex), { installed: true, trustStorePath: join(anchors, captureFile(ca)), persistent: false });
    await trust.releaseForCapture();
    assert.deepEqual(await readdir(anchors), []);
  });

  it('repair removes capture-scoped leftovers and unrecorded persistent anchors, keeps the recorded one', async () => {
    await manager().install(ca);
    await writeFile(join(anchors, captureFile(next)), next.certPem);
    await writeFile(join(anchors, persistentFile(next)), next.certPem);
    await writeFile(join(anchors, 'someone-else.crt'), next.certPem);
    const removed = await manager().repair(join(anchors, 'tproxy-4abc.crt'));
    assert.deepEqual(removed.sort(), [join(anchors, captureFile(next)), join(anchors, persistentFile(next)), join(anchors, 'tproxy-4abc.crt')].map((p) => `trust-store entry ${p}`).sort());
    assert.deepEqual((await readdir(anchors)).sort(), [persistentFile(ca), 'someone-else.crt'].sort());
  });

  it('rotate moves the persistent anchor to the new CA, the old one removed after commit', async () => {
    const trust = manager();
    await trust.install(ca);
    let committed = false;
    await trust.rotate(next, async () => {
      // At commit time both CAs are trusted: nothing trusted disappears half-way.
      assert.deepEqual((await readdir(anchors)).sort(), [persistentFile(ca), persistentFile(next)].sort());
      committed = true;
    });
    assert.ok(committed);
    assert.deepEqual(await readdir(anchors), [persistentFile(next)]);
    assert.deepEqual(manager().state(next.serialHex).persistent, true);
    assert.equal(manager().state(ca.serialHex).persistent, false);
  });

  it('a rotation that fails at commit removes the new anchor and leaves the old one as it was', async () => {
    const trust = manager();
    await trust.install(ca);
    await assert.rejects(
      trust.rotate(next, async () => {
        assert.deepEqual((await readdir(anchors)).sort(), [persistentFile(ca), persistentFile(next)].sort());
        throw new Error('storing the new CA failed');
      }),
      /storing the new CA failed/,
    );
    assert.deepEqual(await readdir(anchors), [persistentFile(ca)]);
    assert.equal(trust.state(ca.serialHex).persistent, true);
    assert.equal(manager().state(ca.serialHex).persistent, true, 'the record still names the old anchor');
  });

  it('adopt moves entries recorded for a CA that was regenerated', async () => {
    await manager().install(ca);
    const trust = manager();
    await trust.adopt(next);
    assert.deepEqual(await readdir(anchors), [persistentFile(next)]);
    const calls = exec.calls.length;
    await trust.adopt(next);
    assert.equal(exec.calls.length, calls, 'nothing to move: no commands');
  });

  it('a corrupt trust.json reads as nothing persistent (logged), and the next install rewrites it', async () => {
    await mkdir(stateDir, { recursive: true });
    await writeFile(join(stateDir, TRUST_RECORD_FILE), '{"version":1,"persistent":"oops"');
    const warnings: string[] = [];
    const log = { ...silentLogger, warn: (m: string) => warnings.push(m), child: () => log };
    const trust = new TrustManager({ exec, stateDir, log, trustStore: store });
    assert.deepEqual(trust.state(), { installed: false, persistent: false });
    assert.match(warnings.join('\n'), /ignoring corrupt .*trust\.json/);
    await trust.install(ca);
    assert.equal(JSON.parse(await readFile(join(stateDir, TRUST_RECORD_FILE), 'utf8')).persistent.serialHex, ca.serialHex);
  });

  it('ca.install without any OS trust store says what to install', async () => {
    const trust = new TrustManager({ exec, stateDir, log: silentLogger, trustStore: null });
    await assert.rejects(trust.install(ca), /no supported OS trust store .*install ca-certificates/);
  });
});
