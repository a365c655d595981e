/**
 * CaptureService's CA and trust side without root or a kernel: ca.install/uninstall/rotate and
 * repair against a trust-store table row pointed at a temp directory, commands through FakeExec.
 * (The steering side of repair is in service.test.ts.)
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { X509Certificate } from 'node:crypto';
import { FakeExec } from '../exec.js';
import { writeRecord } from '../firewall/record.js';
import { silentLogger } from '../log.js';
import { LINUX_TRUST_STORES, type TrustStore } from '../trust/linux.js';
import { CaptureService } from './service.js';
import { ExchangeStore } from './store.js';

describe('CaptureService: CA and trust', () => {
  let dir: string;
  let anchors: string;
  let stateDir: string;
  let store: TrustStore;
  let exec: FakeExec;
  const service = () =>
    new CaptureService({
      native: { native: null, captureAvailable: false, reason: 'test' },
      exec,
      stateDir,
      publicDir: join(dir, 'public'),
      systemBundles: [],
      upstreamCaFiles: [],
      store: new ExchangeStore(),
      log: silentLogger,
      trustStore: store,
    });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tproxy-svc-trust-'));
    anchors = join(dir, 'anchors');
    stateDir = join(dir, 'state');
    await mkdir(anchors);
    store = { ...LINUX_TRUST_STORES.find((s) => s.family === 'debian-ubuntu')!, anchorDir: anchors };
    exec = new FakeExec();
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('repair removes a killed capture\'s anchor but keeps the persistent install', async () => {
    const before = await service().caInstall({});
    assert.equal(before.persistent, true);
    const leftover = join(anchors, 'tproxy-4abc.crt');
    await writeFile(leftover, before.pem);
    await writeRecord(stateDir, { version: 1, pid: 1, startedAt: 0, trust: { path: leftover, refresh: ['update-ca-certificates'] } });

    const restarted = service();
    const removed = await restarted.repair();
    // The steering side (FakeExec "removes" every rule) is service.test.ts's concern.
    assert.deepEqual(removed.filter((r) => r.startsWith('trust-store')), [`trust-store entry ${leftover}`]);
    assert.deepEqual(await readdir(anchors), [`tproxy-persistent-${new X509Certificate(before.pem).serialNumber.toLowerCase()}.crt`]);
    const after = await restarted.ca();
    assert.equal(after.installed, true);
    assert.equal(after.persistent, true);
    assert.equal(restarted.status().caInstalled, true, 'capture.status reports the persistent entry too');
  });

  it('rotate replaces the CA (key 0600), the public files and the persistent anchor', async () => {
    const svc = service();
    const old = await svc.caInstall({});
    const rotated = await svc.caRotate();
    assert.equal(rotated.previousFingerprintSha256, old.fingerprintSha256);
    assert.notEqual(rotated.fingerprintSha256, old.fingerprintSha256);
    assert.equal(rotated.persistent, true);
    const serial = new X509Certificate(rotated.pem).serialNumber.toLowerCase();
    assert.deepEqual(await readdir(anchors), [`tproxy-persistent-${serial}.crt`]);
    assert.equal(await readFile(join(stateDir, 'ca-cert.pem'), 'utf8'), rotated.pem);
    assert.equal(await readFile(rotated.caPath, 'utf8'), rotated.pem);
    // A new helper loads the rotated CA from disk.
    assert.equal((await service().ca()).fingerprintSha256, rotated.fingerprintSha256);

    await svc.caUninstall({});
    const gone = await svc.ca();
    assert.equal(gone.installed, false);
    assert.equal(gone.persistent, false);
    assert.deepEqual(await readdir(anchors), []);
  });
});
