import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { CaptureStartParamsSchema } from '@tproxy/protocol';
import { createLogger } from '../log.js';
import { clearRecord, readRecord, RECORD_FILE, recordPath, updateRecord, writeRecord } from './record.js';
import type { AppliedRecord } from './record.js';

const firewall = CaptureStartParamsSchema.parse({});
const sample: AppliedRecord = { version: 1, pid: 4242, startedAt: 1_700_000_000_000, firewall, trust: { path: '/usr/local/share/ca-certificates/tproxy-1.crt', refresh: ['update-ca-certificates'] } };

let dir: string;
let warnings: string[];
const log = () => createLogger('test', 'debug', (l) => warnings.push(l));

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tproxy-record-'));
  warnings = [];
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('applied record', () => {
  it('round-trips, is written 0600, and leaves no temp file', async () => {
    await writeRecord(dir, sample);
    assert.deepEqual(await readRecord(dir, log()), sample);
    assert.equal((await stat(recordPath(dir))).mode & 0o777, 0o600);
    assert.deepEqual(await readdir(dir), [RECORD_FILE]);
    assert.deepEqual(JSON.parse(await readFile(recordPath(dir), 'utf8')), sample);
  });

  it('stays 0600 under a permissive umask', async () => {
    const old = process.umask(0);
    try {
      await writeRecord(dir, sample);
    } finally {
      process.umask(old);
    }
    assert.equal((await stat(recordPath(dir))).mode & 0o777, 0o600);
  });

  it('replaces an existing record atomically', async () => {
    await writeRecord(dir, sample);
    await writeRecord(dir, { ...sample, pid: 7 });
    assert.equal((await readRecord(dir, log()))?.pid, 7);
    assert.deepEqual(await readdir(dir), [RECORD_FILE]);
  });

  it('creates a missing state dir', async () => {
    const nested = join(dir, 'a', 'b');
    await writeRecord(nested, sample);
    assert.deepEqual(await readRecord(nested, log()), sample);
  });

  it('returns null without a warning when there is no record', async () => {
    assert.equal(await readRecord(dir, log()), null);
    assert.equal(await readRecord(join(dir, 'missing'), log()), null);
    assert.deepEqual(warnings, []);
  });

  it('returns null and warns on a corrupt record, never throwing', async () => {
    for (const content of ['{"version":1,"pid":', '[]', '{"version":2,"pid":1,"startedAt":0}', JSON.stringify({ ...sample, firewall: { ports: 'x' } })]) {
      await writeFile(recordPath(dir), content);
      warnings = [];
      assert.equal(await readRecord(dir, log()), null, content);
      assert.equal(warnings.length, 1, content);
      assert.match(warnings[0] ?? '', /^warn test: ignoring corrupt .*applied\.json/);
    }
  });

  it('clearRecord removes the record and is idempotent', async () => {
    await writeRecord(dir, sample);
    await clearRecord(dir);
    await clearRecord(dir);
    await clearRecord(join(dir, 'never-created'));
    assert.equal(await readRecord(dir, log()), null);
  });

  it('updateRecord creates a record for this process, merges, and removes parts set to undefined', async () => {
    const created = await updateRecord(dir, { firewall }, log());
    assert.equal(created.pid, process.pid);
    assert.equal(created.version, 1);
    assert.deepEqual(created.firewall, firewall);

    const trust = { path: '/etc/pki/ca-trust/source/anchors/tproxy-1.crt', refresh: ['update-ca-trust', 'extract'] };
    await updateRecord(dir, { trust }, log());
    assert.deepEqual((await readRecord(dir, log()))?.firewall, firewall);
    assert.deepEqual((await readRecord(dir, log()))?.trust, trust);

    const after = await updateRecord(dir, { firewall: undefined, pid: undefined }, log());
    assert.equal(after.firewall, undefined);
    assert.equal(after.pid, process.pid, 'pid cannot be removed');
    assert.deepEqual(await readRecord(dir, log()), { version: 1, pid: process.pid, startedAt: created.startedAt, trust });
  });

  it('serializes concurrent updates so none is lost', async () => {
    const trust = { path: '/x.crt', refresh: ['true'] };
    await Promise.all([updateRecord(dir, { firewall }, log()), updateRecord(dir, { trust }, log()), updateRecord(dir, { startedAt: 5 }, log())]);
    const rec = await readRecord(dir, log());
    assert.deepEqual(rec?.firewall, firewall);
    assert.deepEqual(rec?.trust, trust);
    assert.equal(rec?.startedAt, 5);
  });
});
