import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CAPTURE_DEFAULTS } from '@tproxy/protocol';
import { FakeExec } from '../exec.js';
import { readRecord, writeRecord } from '../firewall/record.js';
import { silentLogger } from '../log.js';
import { CaptureService } from './service.js';
import { ExchangeStore } from './store.js';

function service(stateDir: string, exec: FakeExec): CaptureService {
  return new CaptureService({
    native: { native: null, captureAvailable: false, reason: 'test' },
    exec,
    stateDir,
    publicDir: join(stateDir, 'public'),
    upstreamCaFiles: [],
    store: new ExchangeStore(),
    log: silentLogger,
    trustStore: null,
  });
}

/** The nft transactions that delete our table: one per distinct plan reverted. */
const nftReverts = (exec: FakeExec) => exec.calls.filter((c) => c.argv.join(' ') === 'nft -f -' && /delete table/.test(c.input ?? '')).length;

describe('CaptureService.repair', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tproxy-repair-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('reverts once when the record names the default rules, and clears the record', async () => {
    const stateDir = join(dir, 'same');
    await writeRecord(stateDir, { version: 1, pid: 1, startedAt: 0, firewall: { ...CAPTURE_DEFAULTS, ports: [443] } });
    const exec = new FakeExec();
    await service(stateDir, exec).repair();
    assert.equal(nftReverts(exec), 1);
    assert.equal(await readRecord(stateDir), null);
  });

  it('reverts the recorded rules and the defaults when they differ', async () => {
    const stateDir = join(dir, 'other');
    await writeRecord(stateDir, { version: 1, pid: 1, startedAt: 0, firewall: { ...CAPTURE_DEFAULTS, ports: [443], mark: 0x77, routeTable: 77 } });
    const exec = new FakeExec();
    await service(stateDir, exec).repair();
    assert.equal(nftReverts(exec), 2);
    assert.ok(exec.commands.some((c) => /rule del .*fwmark 0x77 .*lookup 77/.test(c)), exec.commands.join('\n'));
    assert.ok(exec.commands.some((c) => /rule del .*fwmark 0x2333 .*lookup 233/.test(c)), exec.commands.join('\n'));
  });

  it('still reverts the defaults without any record (a lost record)', async () => {
    const exec = new FakeExec();
    await service(join(dir, 'none'), exec).repair();
    assert.equal(nftReverts(exec), 1);
  });
});
