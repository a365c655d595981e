import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateCa } from './generate.js';
import { CA_CERT_FILE, CA_KEY_FILE, loadOrCreateCa } from './store.js';

const HOUR = 3600 * 1000;
const mode = async (path: string): Promise<number> => (await stat(path)).mode & 0o777;

describe('loadOrCreateCa', () => {
  let root: string;
  let n = 0;
  const freshDir = (): string => join(root, `state-${n++}`);

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'tproxy-ca-store-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('creates the CA with a 0700 directory, 0600 key and 0644 certificate', async () => {
    const dir = freshDir();
    const ca = await loadOrCreateCa(dir);
    assert.equal(ca.origin, 'created');
    assert.equal(await mode(dir), 0o700);
    assert.equal(await mode(join(dir, CA_KEY_FILE)), 0o600);
    assert.equal(await mode(join(dir, CA_CERT_FILE)), 0o644);
    assert.equal(await readFile(ca.certPath, 'utf8'), ca.certPem);
    assert.equal(await readFile(ca.keyPath, 'utf8'), ca.keyPem);
    assert.deepEqual((await readdir(dir)).sort(), [CA_CERT_FILE, CA_KEY_FILE], 'no temp files left behind');
  });

  it('reuses the stored CA across loads', async () => {
    const dir = freshDir();
    const first = await loadOrCreateCa(dir);
    const second = await loadOrCreateCa(dir);
    assert.equal(second.origin, 'loaded');
    assert.equal(second.fingerprintSha256, first.fingerprintSha256);
    assert.equal(second.serialHex, first.serialHex);
  });

  it('tightens an existing 0755 directory and a 0644 key', async () => {
    const dir = freshDir();
    await mkdir(dir, { mode: 0o755 });
    await chmod(dir, 0o755);
    await loadOrCreateCa(dir);
    assert.equal(await mode(dir), 0o700);
    await chmod(join(dir, CA_KEY_FILE), 0o644);
    const again = await loadOrCreateCa(dir);
    assert.equal(again.origin, 'loaded');
    assert.equal(await mode(join(dir, CA_KEY_FILE)), 0o600);
  });

  it('regenerates within 48 h of expiry, and not before', async () => {
    const dir = freshDir();
    const first = await loadOrCreateCa(dir);
    const at49h = new Date(first.notAfter.getTime() - 49 * HOUR);
    assert.equal((await loadOrCreateCa(dir, { now: at49h })).fingerprintSha256, first.fingerprintSha256);
    const at47h = new Date(first.notAfter.getTime() - 47 * HOUR);
    const renewed = await loadOrCreateCa(dir, { now: at47h });
    assert.equal(renewed.origin, 'created');
    assert.notEqual(renewed.fingerprintSha256, first.fingerprintSha256);
    assert.ok(renewed.notAfter.getTime() > at47h.getTime() + 9 * 365 * 24 * HOUR);
  });

  it('regenerates when the certificate is unparseable', async () => {
    const dir = freshDir();
    const first = await loadOrCreateCa(dir);
    await writeFile(join(dir, CA_CERT_FILE), '-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n');
    const second = await loadOrCreateCa(dir);
    assert.equal(second.origin, 'created');
    assert.notEqual(second.fingerprintSha256, first.fingerprintSha256);
    assert.equal(await mode(join(dir, CA_KEY_FILE)), 0o600);
  });

  it('regenerates when the key does not belong to the certificate', async () => {
    const dir = freshDir();
    const first = await loadOrCreateCa(dir);
    await writeFile(join(dir, CA_KEY_FILE), (await generateCa()).keyPem);
    const second = await loadOrCreateCa(dir);
    assert.equal(second.origin, 'created');
    assert.notEqual(second.fingerprintSha256, first.fingerprintSha256);
  });

  it('regenerates when one of the files is missing', async () => {
    const dir = freshDir();
    const first = await loadOrCreateCa(dir);
    await rm(join(dir, CA_KEY_FILE));
    const second = await loadOrCreateCa(dir);
    assert.equal(second.origin, 'created');
    assert.notEqual(second.fingerprintSha256, first.fingerprintSha256);
  });

  it('logs why it replaced a CA', async () => {
    const dir = freshDir();
    await loadOrCreateCa(dir);
    await writeFile(join(dir, CA_CERT_FILE), 'junk');
    const lines: string[] = [];
    const log = { debug() {}, info() {}, warn: (m: string) => lines.push(m), error() {}, child: () => log };
    await loadOrCreateCa(dir, { log });
    assert.match(lines.join('\n'), /replacing the CA in .*certificate does not parse/);
  });
});
