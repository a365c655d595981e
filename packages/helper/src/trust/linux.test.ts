import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, before, beforeEach, describe, it } from 'node:test';
import { FakeExec } from '../exec.js';
import { generateCa } from '../ca/generate.js';
import { createLeafKey, issueLeaf } from '../ca/leaf.js';
import { caMaterialFromPem, type CaMaterial } from '../ca/material.js';
import { isTrustStoreError } from './errors.js';
import {
  LINUX_TRUST_STORES,
  anchorKind,
  detectTrustStore,
  findInstalledCas,
  installCa,
  realTrustProbe,
  uninstallCa,
  type TrustProbe,
  type TrustStore,
} from './linux.js';

const byFamily = (family: string): TrustStore => LINUX_TRUST_STORES.find((s) => s.family === family)!;

/** A probe that answers from sets and records what it was asked, in order. */
function fakeProbe(dirs: string[], commands: string[]): TrustProbe & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    async dirExists(path) {
      asked.push(`dir ${path}`);
      return dirs.includes(path);
    },
    async commandExists(command) {
      asked.push(`cmd ${command}`);
      return commands.includes(command);
    },
  };
}

describe('LINUX_TRUST_STORES', () => {
  it("lists mkcert's layouts in mkcert's probe order", () => {
    assert.deepEqual(
      LINUX_TRUST_STORES.map((s) => [s.family, s.anchorDir, s.fileExt, s.refresh.join(' ')]),
      [
        ['fedora-rhel', '/etc/pki/ca-trust/source/anchors', '.pem', 'update-ca-trust extract'],
        ['debian-ubuntu', '/usr/local/share/ca-certificates', '.crt', 'update-ca-certificates'],
        ['arch', '/etc/ca-certificates/trust-source/anchors', '.crt', 'trust extract-compat'],
        ['suse', '/etc/pki/trust/anchors', '.pem', 'update-ca-certificates'],
      ],
    );
  });
});

describe('detectTrustStore', () => {
  it('picks the first row whose directory and refresh command both exist', async () => {
    const probe = fakeProbe(['/usr/local/share/ca-certificates', '/etc/pki/trust/anchors'], ['update-ca-certificates']);
    assert.equal((await detectTrustStore(probe))?.family, 'debian-ubuntu');
    assert.deepEqual(probe.asked, ['dir /etc/pki/ca-trust/source/anchors', 'dir /usr/local/share/ca-certificates', 'cmd update-ca-certificates']);
  });

  it('skips a row whose directory exists but whose command does not', async () => {
    const probe = fakeProbe(['/etc/pki/ca-trust/source/anchors', '/etc/ca-certificates/trust-source/anchors'], ['trust']);
    assert.equal((await detectTrustStore(probe))?.family, 'arch');
  });

  it('prefers the earlier row when several match', async () => {
    const all = LINUX_TRUST_STORES.map((s) => s.anchorDir);
    const probe = fakeProbe(all, ['update-ca-trust', 'update-ca-certificates', 'trust']);
    assert.equal((await detectTrustStore(probe))?.family, 'fedora-rhel');
  });

  it('returns null and says so when nothing matches', async () => {
    const lines: string[] = [];
    const log = { debug() {}, info() {}, warn: (m: string) => lines.push(m), error() {}, child: () => log };
    assert.equal(await detectTrustStore(fakeProbe([], []), log), null);
    assert.match(lines.join('\n'), /no supported system trust store/);
  });

  it('realTrustProbe looks at directories and PATH', async () => {
    assert.equal(await realTrustProbe.dirExists(tmpdir()), true);
    assert.equal(await realTrustProbe.dirExists(join(tmpdir(), 'no-such-dir-tproxy')), false);
    assert.equal(await realTrustProbe.commandExists('sh'), true);
    assert.equal(await realTrustProbe.commandExists('no-such-command-tproxy'), false);
  });
});

describe('installCa / uninstallCa', () => {
  let ca: CaMaterial;
  let leafPem: string;
  let dir: string;
  let debian: TrustStore;
  let exec: FakeExec;

  before(async () => {
    const g = await generateCa();
    ca = caMaterialFromPem(g.certPem, g.keyPem);
    leafPem = issueLeaf(ca, await createLeafKey(), 'example.com').certPem;
    // Prove the mode is set explicitly, not inherited from a friendly umask.
    process.umask(0o077);
  });
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tproxy-anchors-'));
    debian = { ...byFamily('debian-ubuntu'), anchorDir: dir };
    exec = new FakeExec();
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes exactly one 0644 tproxy-<serial>.crt and runs the refresh', async () => {
    const path = await installCa(debian, ca.certPem, ca.serialHex, exec);
    assert.equal(path, join(dir, `tproxy-${ca.serialHex}.crt`));
    assert.deepEqual(await readdir(dir), [`tproxy-${ca.serialHex}.crt`]);
    assert.equal((await stat(path)).mode & 0o777, 0o644);
    assert.equal(await readFile(path, 'utf8'), ca.certPem);
    assert.deepEqual(exec.commands, ['update-ca-certificates']);
  });

  it("uses each row's extension and refresh argv", async () => {
    const fedora = { ...byFamily('fedora-rhel'), anchorDir: dir };
    const path = await installCa(fedora, ca.certPem, ca.serialHex.toUpperCase(), exec);
    assert.equal(path, join(dir, `tproxy-${ca.serialHex}.pem`));
    assert.deepEqual(exec.calls.map((c) => c.argv), [['update-ca-trust', 'extract']]);
  });

  it('removes the file again and reports stderr when the refresh fails', async () => {
    exec.failWhen = () => 'E: /etc/ssl/certs is read-only\n';
    await assert.rejects(installCa(debian, ca.certPem, ca.serialHex, exec), (err) => {
      assert.ok(isTrustStoreError(err, 'refresh-failed'));
      assert.equal(err.message, `installing the CA into ${dir}: update-ca-certificates: E: /etc/ssl/certs is read-only`);
      assert.equal(err.stderr, 'E: /etc/ssl/certs is read-only\n');
      return true;
    });
    assert.deepEqual(await readdir(dir), []);
  });

  it('keeps a file that was already installed when a re-install fails', async () => {
    await installCa(debian, ca.certPem, ca.serialHex, exec);
    exec.failWhen = () => 'boom';
    await assert.rejects(installCa(debian, ca.certPem, ca.serialHex, exec), /boom/);
    assert.deepEqual(await readdir(dir), [`tproxy-${ca.serialHex}.crt`]);
  });

  it('refuses a non-CA certificate, junk, and a serial that is not hex, touching nothing', async () => {
    await assert.rejects(installCa(debian, leafPem, ca.serialHex, exec), (e) => isTrustStoreError(e, 'invalid-argument'));
    await assert.rejects(installCa(debian, 'junk', ca.serialHex, exec), (e) => isTrustStoreError(e, 'invalid-argument'));
    await assert.rejects(installCa(debian, ca.certPem, '../../etc/x', exec), (e) => isTrustStoreError(e, 'invalid-argument'));
    assert.deepEqual(await readdir(dir), []);
    assert.deepEqual(exec.calls, []);
  });

  it('uninstall removes exactly that file, refreshes, and is idempotent', async () => {
    const path = await installCa(debian, ca.certPem, ca.serialHex, exec);
    await writeFile(join(dir, 'someone-else.crt'), ca.certPem);
    await uninstallCa(path, debian, exec);
    assert.deepEqual(await readdir(dir), ['someone-else.crt']);
    await uninstallCa(path, debian, exec);
    assert.deepEqual(exec.commands, ['update-ca-certificates', 'update-ca-certificates', 'update-ca-certificates']);
  });

  it('uninstall refuses paths that are not our anchors in that directory', async () => {
    await writeFile(join(dir, 'someone-else.crt'), ca.certPem);
    for (const path of [join(dir, 'someone-else.crt'), '/etc/passwd', join(dir, '..', `tproxy-${ca.serialHex}.crt`)]) {
      await assert.rejects(uninstallCa(path, debian, exec), (e) => isTrustStoreError(e, 'invalid-argument'), path);
    }
    assert.deepEqual(exec.calls, []);
    assert.deepEqual(await readdir(dir), ['someone-else.crt']);
  });

  it('uninstall reports a failed refresh with stderr', async () => {
    const path = await installCa(debian, ca.certPem, ca.serialHex, exec);
    exec.failWhen = () => 'nope';
    await assert.rejects(uninstallCa(path, debian, exec), (err) => {
      assert.ok(isTrustStoreError(err, 'refresh-failed'));
      assert.equal(err.message, `uninstalling the CA from ${dir}: update-ca-certificates: nope`);
      return true;
    });
  });

  it('findInstalledCas lists only our anchors', async () => {
    await installCa(debian, ca.certPem, ca.serialHex, exec);
    await installCa(debian, ca.certPem, '4abc', exec);
    await writeFile(join(dir, 'someone-else.crt'), ca.certPem);
    await writeFile(join(dir, 'tproxy-notes.txt'), '');
    assert.deepEqual(await findInstalledCas(debian), [join(dir, 'tproxy-4abc.crt'), join(dir, `tproxy-${ca.serialHex}.crt`)].sort());
    assert.deepEqual(await findInstalledCas({ ...debian, anchorDir: join(dir, 'missing') }), []);
  });
  it('keeps persistent and capture-scoped anchors apart by name', async () => {
    const capture = await installCa(debian, ca.certPem, ca.serialHex, exec);
    const persistent = await installCa(debian, ca.certPem, ca.serialHex, exec, undefined, 'persistent');
    assert.equal(persistent, join(dir, `tproxy-persistent-${ca.serialHex}.crt`));
    assert.equal(anchorKind(capture), 'capture');
    assert.equal(anchorKind(persistent), 'persistent');
    assert.equal(anchorKind(join(dir, 'tproxy-persistent-.crt')), null);
    // Repair lists capture-scoped leftovers only: a persistent install must survive it.
    assert.deepEqual(await findInstalledCas(debian), [capture]);
    assert.deepEqual(await findInstalledCas(debian, 'persistent'), [persistent]);
    await uninstallCa(persistent, debian, exec);
    assert.deepEqual(await readdir(dir), [`tproxy-${ca.serialHex}.crt`]);
  });
});
