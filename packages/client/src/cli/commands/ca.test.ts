import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { ErrorCode, RpcError } from '@tproxy/protocol';
import { FakeHelper } from '../../test/fake-helper.js';
import { sampleCa } from '../../test/fixtures.js';
import { nssNickname, parseNicknames } from '../../trust/nss.js';
import type { Io } from '../command.js';
import { main } from '../main.js';

/** Runs tproxyctl in-process with `env` (HOME) against `socket`. */
async function tproxyctl(socket: string, env: Record<string, string | undefined>, ...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const io: Io = { stdout: { write: (c) => out.push(Buffer.from(c).toString('utf8')) }, stderr: { write: (c) => err.push(c) }, env };
  const code = await main([...argv, '--socket', socket], io);
  return { code, stdout: out.join(''), stderr: err.join('') };
}

describe('tproxyctl ca install | uninstall | rotate', () => {
  let fake: FakeHelper;
  const run = (...argv: string[]) => tproxyctl(fake.socketPath, {}, ...argv);

  beforeEach(async () => {
    fake = await FakeHelper.start();
    fake
      .on('ca.get', () => sampleCa({ persistent: false }))
      .on('ca.install', () => sampleCa({ persistent: true }))
      .on('ca.uninstall', () => sampleCa({ installed: false, trustStorePath: undefined, persistent: false }))
      .on('ca.rotate', () => ({ ...sampleCa({ fingerprintSha256: '11:22', persistent: true }), previousFingerprintSha256: 'AB:CD:EF:01' }));
  });
  afterEach(() => fake.close());

  test('install sends empty params and shows the persistent entry', async () => {
    const r = await run('ca', 'install');
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(fake.received.find((m) => m.method === 'ca.install')?.params, {});
    assert.match(r.stdout, /^CA installed persistently\n/);
    assert.match(r.stdout, /\npersistent: yes /);
  });

  test('uninstall sends empty params', async () => {
    const r = await run('ca', 'uninstall');
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(fake.received.find((m) => m.method === 'ca.uninstall')?.params, {});
    assert.match(r.stdout, /\ninstalled: {2}no\n/);
  });

  test('rotate prints the replaced fingerprint and the NSS hint; --json the raw result, the hint on stderr', async () => {
    const r = await run('ca', 'rotate');
    assert.match(r.stdout, /^CA rotated; replaced AB:CD:EF:01\n/);
    assert.match(r.stdout, /\nNSS databases .* still trust the old CA: run `tproxyctl ca install --nss`/);
    const j = await run('ca', 'rotate', '--json');
    assert.equal(JSON.parse(j.stdout).previousFingerprintSha256, 'AB:CD:EF:01');
    assert.match(j.stderr, /tproxyctl ca install --nss/);
  });

  test('a refused rotation (capture running) exits 1 with the helper\'s message', async () => {
    fake.on('ca.rotate', () => {
      throw new RpcError(ErrorCode.CaptureRunning, 'capture is running; stop capture, then rotate');
    });
    const r = await run('ca', 'rotate');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /capture is running/);
  });

  test('usage errors exit 2 without calling the helper', async () => {
    for (const argv of [['ca', 'bogus'], ['ca', '--nss'], ['ca', '--nss-db', '/x'], ['ca', 'rotate', '--nss'], ['ca', 'install', '--pem'], ['ca', 'install', 'x'], ['ca', 'install', '--nss-user', 'a']]) {
      const r = await run(...argv);
      assert.equal(r.code, 2, argv.join(' '));
    }
    assert.ok(!fake.received.some((m) => m.method.startsWith('ca.')));
  });

  test('--nss without HOME says so and changes nothing', async () => {
    const r = await run('ca', 'install', '--nss');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /HOME is not set.*--nss-db DIR/);
    assert.ok(!fake.received.some((m) => m.method === 'ca.install'), 'never the OS install');
  });
});

const hasCertutil = (() => {
  try {
    execFileSync('certutil', ['-H'], { stdio: 'ignore' });
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ENOENT';
  }
})();

describe('tproxyctl ca install --nss / uninstall --nss (real certutil, this user)', { skip: hasCertutil ? false : 'certutil is not installed (apt-get install libnss3-tools)' }, () => {
  let fake: FakeHelper;
  let dir: string;
  let home: string;
  const cas: { pem: string; fp: string }[] = [];
  let current = 0;
  const env = () => ({ HOME: home });
  const db = () => join(home, '.pki', 'nssdb');
  const listed = () => parseNicknames(execFileSync('certutil', ['-L', '-d', `sql:${db()}`], { encoding: 'utf8' }));

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tproxy-ca-cli-'));
    home = join(dir, 'home');
    for (const n of [0, 1]) {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, `k${n}.pem`), '-out', join(dir, `ca${n}.pem`), '-subj', `/CN=tproxy test CA ${n}`, '-days', '1'], { stdio: 'ignore' });
      const pem = await readFile(join(dir, `ca${n}.pem`), 'utf8');
      cas.push({ pem, fp: new X509Certificate(pem).fingerprint256 });
    }
    fake = await FakeHelper.start();
    fake.on('ca.get', () => sampleCa({ pem: cas[current]!.pem, fingerprintSha256: cas[current]!.fp }));
  });
  after(async () => {
    await fake.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('install --nss asks only ca.get, creates ~/.pki/nssdb (0700) and adds the nickname', async () => {
    await rm(home, { recursive: true, force: true });
    execFileSync('mkdir', ['-m', '0700', home]);
    const r = await tproxyctl(fake.socketPath, env(), 'ca', 'install', '--nss');
    assert.equal(r.code, 0, r.stderr);
    const nick = nssNickname(cas[0]!.fp);
    assert.match(r.stdout, new RegExp(`^CA added to the NSS database ${db()} \\(created\\) as "${nick}"\\n`));
    assert.deepEqual(fake.received.map((m) => m.method), ['ca.get'], 'never ca.install: the OS store is untouched');
    assert.deepEqual(listed(), [nick]);
    assert.equal((await stat(db())).mode & 0o777, 0o700);
  });

  test('after a rotation, install --nss replaces the old nickname; --json reports it', async () => {
    current = 1;
    const r = await tproxyctl(fake.socketPath, env(), 'ca', 'install', '--nss', '--json');
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { db: db(), nickname: nssNickname(cas[1]!.fp), created: false, removed: [nssNickname(cas[0]!.fp)] });
    assert.deepEqual(listed(), [nssNickname(cas[1]!.fp)]);
  });

  test('uninstall --nss removes every tproxy CA entry without any helper', async () => {
    const r = await tproxyctl(join(dir, 'no-helper.sock'), env(), 'ca', 'uninstall', '--nss');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `removed ${nssNickname(cas[1]!.fp)} from the NSS database ${db()}\n`);
    assert.deepEqual(listed(), []);
    const again = await tproxyctl(join(dir, 'no-helper.sock'), env(), 'ca', 'uninstall', '--nss');
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /^no tproxy CA in the NSS database .*; nothing to remove\n$/);
  });

  test('--nss-db names another database (a Firefox profile); a missing one is an error', async () => {
    const profile = join(dir, 'profile');
    execFileSync('mkdir', ['-p', profile]);
    const r = await tproxyctl(fake.socketPath, {}, 'ca', 'install', '--nss-db', profile);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`NSS database ${profile} \\(created\\)`));
    const missing = await tproxyctl(fake.socketPath, {}, 'ca', 'install', '--nss-db', join(dir, 'nope'));
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /--nss-db .*nope: no such directory/);
  });
});
