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
    assert.ok(exec.commands.some((c) => /rule del .*fwmark 0x77\/0x3fff lookup 77/.test(c)), exec.commands.join('\n'));
    assert.ok(exec.commands.some((c) => /rule del .*fwmark 0x2333\/0x3fff lookup 233/.test(c)), exec.commands.join('\n'));
  });

  it('still reverts the defaults without any record (a lost record)', async () => {
    const exec = new FakeExec();
    await service(join(dir, 'none'), exec).repair();
    assert.equal(nftReverts(exec), 1);
  });
});

describe('CaptureService.repairReport', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tproxy-repair-report-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  /** A kernel with nothing of ours, or with only our nft table: every `del` says "gone". */
  function kernel(withTable: boolean): FakeExec {
    const exec = new FakeExec();
    exec.respond = (c) => (withTable && c.argv.join(' ') === 'nft list tables' ? 'table inet tproxy_helper\n' : c.argv.includes('-j') ? '[]' : '');
    exec.failWhen = (c) => (c.argv.includes('del') ? 'RTNETLINK answers: No such file or directory' : null);
    return exec;
  }

  it('reports the killed session and names the table once, though two plans delete it', async () => {
    const stateDir = join(dir, 'killed');
    await writeRecord(stateDir, { version: 1, pid: 4242, startedAt: 1234, firewall: { ...CAPTURE_DEFAULTS, ports: [443, 8443], mark: 0x77, routeTable: 77 } });
    const report = await service(stateDir, kernel(true)).repairReport();
    // Only the nft lines are asserted: the other backends' steps are theirs to test.
    assert.deepEqual(report.removed.filter((r) => r.startsWith('nft ')), ['nft table inet tproxy_helper']);
    assert.ok(report.previous);
    assert.deepEqual({ ...report.previous, repairedAt: 0, note: '' }, {
      pid: 4242,
      startedAt: 1234,
      ports: [443, 8443],
      repairedAt: 0,
      removed: report.removed,
      exchangesLost: true,
      note: '',
    });
    assert.match(report.previous.note, /^helper pid 4242 stopped without cleaning up .*what it left was removed.*not resumed/);
    assert.equal(await readRecord(stateDir), null);
  });

  it('reports nothing removed on a clean host, even though the nft revert always succeeds', async () => {
    const report = await service(join(dir, 'clean'), kernel(false)).repairReport();
    assert.deepEqual(report.removed.filter((r) => r.startsWith('nft ')), []);
    assert.equal(report.previous, undefined);
  });
});
