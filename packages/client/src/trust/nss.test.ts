import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { realNssHost } from './nss-host.js';
import {
  addArgv,
  createArgv,
  deleteArgv,
  installNss,
  listArgv,
  NssCommandError,
  nssNickname,
  nssTarget,
  parseNicknames,
  uninstallNss,
  type NssHost,
} from './nss.js';

const FP = 'AB:12:CD:34:EF:56:00:11';
const NICK = 'tproxy CA AB12CD34';
const DB = '/home/alice/.pki/nssdb';
const target = { db: DB, isDefault: true };

/**
 * An NssHost that answers like certutil for one database: `-N` creates it (cert9.db appears),
 * `-A`/`-D` add and remove one certificate per call (a nickname may be listed twice), and records
 * every argv with its stdin. Owners come from `owners` (path → uid; absent: no such path).
 */
class FakeHost implements NssHost {
  readonly calls: { argv: string[]; input?: string }[] = [];
  readonly certs: string[] = [];
  readonly owners = new Map<string, number>([['/home/alice', 1000]]);
  readonly made: string[] = [];
  missing = false;
  failAdd = false;
  constructor(readonly uid = 1000) {}
  async run(argv: readonly string[], input?: string) {
    this.calls.push({ argv: [...argv], ...(input !== undefined ? { input } : {}) });
    if (this.missing) throw new NssCommandError(argv, null, '', 'ENOENT');
    const [, flag] = argv;
    const nick = argv[argv.indexOf('-n') + 1]!;
    if (flag === '-N') this.owners.set(`${DB}/cert9.db`, this.uid);
    if (flag === '-A') {
      if (this.failAdd) throw new NssCommandError(argv, 255, 'certutil: could not add certificate: SEC_ERROR_READ_ONLY\n');
      if (!this.certs.includes(nick)) this.certs.push(nick);
    }
    if (flag === '-D') {
      const i = this.certs.indexOf(nick);
      if (i < 0) throw new NssCommandError(argv, 255, `certutil: could not find certificate named "${nick}"\n`);
      this.certs.splice(i, 1);
    }
    const stdout = flag === '-L' ? `\nCertificate Nickname                                         Trust Attributes\n                                                             SSL,S/MIME,JAR/XPI\n\n${this.certs.map((n) => `${n.padEnd(60)} C,,\n`).join('')}` : '';
    return { stdout, stderr: '' };
  }
  async ownerOf(path: string) {
    return this.owners.get(path) ?? null;
  }
  async makePrivateDir(path: string) {
    this.made.push(path);
    this.owners.set(path, this.uid);
  }
  /** An existing database holding `names`. */
  withDb(...names: string[]): this {
    this.owners.set(DB, this.uid).set(`${DB}/cert9.db`, this.uid);
    this.certs.push(...names);
    return this;
  }
  get commands(): string[] {
    return this.calls.map((c) => c.argv.join(' '));
  }
}

describe('nss: names, targets, argv', () => {
  it('names the nickname from the fingerprint and builds certutil argv', () => {
    assert.equal(nssNickname('ac:1e:31:31:F4:AC'), 'tproxy CA AC1E3131');
    assert.deepEqual(listArgv('/d'), ['certutil', '-L', '-d', 'sql:/d']);
    assert.deepEqual(createArgv('/d'), ['certutil', '-N', '-d', 'sql:/d', '--empty-password']);
    assert.deepEqual(addArgv('/d', NICK), ['certutil', '-A', '-d', 'sql:/d', '-n', NICK, '-t', 'C,,']);
    assert.deepEqual(deleteArgv('/d', NICK), ['certutil', '-D', '-d', 'sql:/d', '-n', NICK]);
  });

  it('targets ~/.pki/nssdb, or --nss-db resolved against the cwd; says what to do without HOME', () => {
    assert.deepEqual(nssTarget({ home: '/home/alice', cwd: '/x' }), target);
    assert.deepEqual(nssTarget({ dbDir: 'ff/profile', home: '/home/alice', cwd: '/home/alice' }), { db: '/home/alice/ff/profile', isDefault: false });
    assert.deepEqual(nssTarget({ dbDir: '/abs', cwd: '/x' }), { db: '/abs', isDefault: false }, '--nss-db needs no HOME');
    assert.throws(() => nssTarget({ cwd: '/x' }), /HOME is not set.*--nss-db DIR/);
    assert.throws(() => nssTarget({ home: '', cwd: '/x' }), /HOME is not set/);
    assert.throws(() => nssTarget({ home: 'rel', cwd: '/x' }), /HOME is not an absolute path/);
    assert.throws(() => nssTarget({ dbDir: ' ', cwd: '/x' }), /--nss-db needs a directory/);
  });

  it('parses certutil -L listings, nicknames with spaces included', () => {
    const listing = '\nCertificate Nickname                                         Trust Attributes\n                                                             SSL,S/MIME,JAR/XPI\n\ntproxy CA AB12CD34                                           C,,  \nSome Corp Root                                               CT,C,C\n';
    assert.deepEqual(parseNicknames(listing), ['tproxy CA AB12CD34', 'Some Corp Root']);
    assert.deepEqual(parseNicknames(''), []);
  });
});

describe('installNss / uninstallNss (fake host)', () => {
  it('creates ~/.pki/nssdb (0700) and an empty-password database, adds the PEM on stdin, verifies the listing', async () => {
    const host = new FakeHost();
    const r = await installNss(host, target, 'PEM', FP);
    assert.deepEqual(r, { db: DB, nickname: NICK, created: true, removed: [] });
    assert.deepEqual(host.made, [DB]);
    assert.deepEqual(host.commands, [createArgv(DB), addArgv(DB, NICK), listArgv(DB)].map((a) => a.join(' ')));
    assert.equal(host.calls[1]!.input, 'PEM');
  });

  it('reuses a database, keeps other CAs, and replaces a rotated CA\'s nickname after adding the new one', async () => {
    const host = new FakeHost().withDb('Some Corp Root', 'tproxy CA 00000000', 'tproxy CA 00000000');
    const r = await installNss(host, target, 'PEM', FP);
    assert.deepEqual(r, { db: DB, nickname: NICK, created: false, removed: ['tproxy CA 00000000'] });
    assert.deepEqual(host.certs, ['Some Corp Root', NICK]);
    const flags = host.calls.map((c) => c.argv[1]);
    assert.ok(!flags.includes('-N'));
    assert.ok(flags.indexOf('-A') < flags.indexOf('-D'), 'the new CA is added before the old one goes');
    // Installing again changes nothing but re-adds (harmless: same certificate, same flags).
    assert.deepEqual((await installNss(host, target, 'PEM', FP)).removed, []);
    assert.deepEqual(host.certs, ['Some Corp Root', NICK]);
  });

  it('uninstall removes every tproxy CA nickname and nothing else; idempotent; no database is fine', async () => {
    const host = new FakeHost().withDb('Some Corp Root', NICK, 'tproxy CA 00000000');
    assert.deepEqual((await uninstallNss(host, target)).removed, [NICK, 'tproxy CA 00000000']);
    assert.deepEqual(host.certs, ['Some Corp Root']);
    const before = host.calls.length;
    assert.deepEqual(await uninstallNss(host, target), { db: DB, removed: [] });
    assert.deepEqual(host.commands.slice(before), [listArgv(DB).join(' ')], 'nothing to delete: only a listing');
    const none = new FakeHost();
    assert.deepEqual(await uninstallNss(none, target), { db: DB, removed: [] });
    assert.deepEqual(none.calls, [], 'no database: certutil never runs');
  });

  it('refuses a database (or HOME) that belongs to someone else, before running anything', async () => {
    // root with alice's HOME (sudo without -H) would leave root-owned files in her home.
    const root = new FakeHost(0);
    await assert.rejects(installNss(root, target, 'PEM', FP), /\/home\/alice belongs to uid 1000, not to this process \(uid 0\).*sudo -u <user> -H tproxyctl/);
    const owned = new FakeHost(0).withDb(NICK);
    owned.owners.set(DB, 1000);
    await assert.rejects(uninstallNss(owned, target), /\.pki\/nssdb belongs to uid 1000/);
    assert.deepEqual([...root.calls, ...owned.calls], []);
    assert.deepEqual(root.made, []);
  });

  it('--nss-db must exist and is never created', async () => {
    const host = new FakeHost();
    await assert.rejects(installNss(host, { db: '/nope', isDefault: false }, 'PEM', FP), /--nss-db \/nope: no such directory/);
    await assert.rejects(uninstallNss(host, { db: '/nope', isDefault: false }), /no such directory/);
    assert.deepEqual(host.made, []);
  });

  it('says to install libnss3-tools when certutil is missing; passes certutil\'s own error through', async () => {
    const host = new FakeHost();
    host.missing = true;
    await assert.rejects(installNss(host, target, 'PEM', FP), /certutil is not installed: install libnss3-tools \(Debian\/Ubuntu\)/);
    const ro = new FakeHost().withDb();
    ro.failAdd = true;
    await assert.rejects(installNss(ro, target, 'PEM', FP), /certutil -A .*SEC_ERROR_READ_ONLY/);
  });
});

describe('installNss / uninstallNss with the real certutil', () => {
  const certutil = (() => {
    try {
      execFileSync('certutil', ['-H'], { stdio: 'ignore' });
      return true;
    } catch (err) {
      // -H prints usage and exits non-zero; only a missing binary is a skip.
      return (err as NodeJS.ErrnoException).code !== 'ENOENT';
    }
  })();
  let dir: string;
  let pem: string;
  let fp: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tproxy-nss-'));
    // Any CA certificate will do; a real one from openssl keeps the test independent of the helper.
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'ca.pem'), '-subj', '/CN=tproxy test CA', '-days', '1'], { stdio: 'ignore' });
    pem = await readFile(join(dir, 'ca.pem'), 'utf8');
    fp = new X509Certificate(pem).fingerprint256;
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('creates the database in $HOME, adds, lists, removes', { skip: certutil ? false : 'certutil is not installed (apt-get install libnss3-tools)' }, async () => {
    const home = join(dir, 'home');
    await rm(home, { recursive: true, force: true });
    await realNssHost.makePrivateDir(home);
    const t = nssTarget({ home, cwd: dir });
    const r = await installNss(realNssHost, t, pem, fp);
    assert.deepEqual(r, { db: join(home, '.pki', 'nssdb'), nickname: nssNickname(fp), created: true, removed: [] });
    assert.equal((await stat(r.db)).mode & 0o777, 0o700);
    assert.equal((await stat(join(home, '.pki'))).mode & 0o777, 0o700);
    const listed = execFileSync('certutil', ['-L', '-d', `sql:${r.db}`, '-n', r.nickname, '-a'], { encoding: 'utf8' });
    assert.equal(new X509Certificate(listed).fingerprint256, fp, 'the database holds exactly our certificate');
    assert.deepEqual(parseNicknames(execFileSync('certutil', ['-L', '-d', `sql:${r.db}`], { encoding: 'utf8' })), [r.nickname]);
    assert.deepEqual(await uninstallNss(realNssHost, t), { db: r.db, removed: [r.nickname] });
    assert.deepEqual(parseNicknames(execFileSync('certutil', ['-L', '-d', `sql:${r.db}`], { encoding: 'utf8' })), []);
  });
});
