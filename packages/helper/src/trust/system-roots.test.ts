import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateCa } from '../ca/generate.js';
import { isTrustStoreError } from './errors.js';
import { SYSTEM_ROOT_BUNDLES, loadSystemRoots, splitPemBundle } from './system-roots.js';

describe('system roots', () => {
  let dir: string;
  let bundle: string;
  let ours: string;
  let theirs: string[];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tproxy-roots-'));
    const made = await Promise.all([generateCa(), generateCa(), generateCa()]);
    [ours, ...theirs] = made.map((m) => m.certPem) as [string, ...string[]];
    // Fedora-style comments between blocks, a non-certificate block, and one corrupt certificate.
    const text = [
      '# Root one',
      theirs[0],
      '# Ours (the trust store holds it while capture runs)',
      ours,
      '-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----',
      '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----',
      theirs[1]!.trimEnd(),
    ].join('\n');
    bundle = join(dir, 'ca-certificates.crt');
    await writeFile(bundle, text);
    await writeFile(join(dir, 'empty.pem'), '# nothing here\n');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("follows Go's root_linux.go order", () => {
    assert.equal(SYSTEM_ROOT_BUNDLES[0], '/etc/ssl/certs/ca-certificates.crt');
    assert.equal(SYSTEM_ROOT_BUNDLES.at(-1), '/etc/ssl/cert.pem');
    assert.equal(SYSTEM_ROOT_BUNDLES.length, 6);
  });

  it('splits a bundle into PEM certificates', () => {
    const blocks = splitPemBundle(`junk\n${theirs[0]}${theirs[1]}`);
    assert.deepEqual(blocks, [theirs[0], theirs[1]]);
  });

  it('uses the first readable bundle with certificates and drops our CA by PEM', async () => {
    const roots = await loadSystemRoots({ paths: [join(dir, 'missing.crt'), join(dir, 'empty.pem'), bundle], exclude: [ours] });
    assert.equal(roots.path, bundle);
    assert.deepEqual(roots.pems, theirs);
    assert.equal(roots.excluded, 1);
    assert.equal(roots.skipped, 1);
  });

  it('drops our CA by SHA-256 fingerprint in any spelling', async () => {
    const fp = new X509Certificate(ours).fingerprint256;
    for (const spelling of [fp, fp.toLowerCase(), fp.replace(/:/g, '')]) {
      const roots = await loadSystemRoots({ paths: [bundle], exclude: [spelling] });
      assert.deepEqual(roots.pems, theirs, spelling);
    }
  });

  it('keeps everything when nothing is excluded', async () => {
    const roots = await loadSystemRoots({ paths: [bundle] });
    assert.deepEqual(roots.pems, [theirs[0], ours, theirs[1]]);
  });

  it('refuses an exclude entry it cannot understand rather than failing open', async () => {
    for (const entry of ['not-a-fingerprint', '-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----']) {
      await assert.rejects(loadSystemRoots({ paths: [bundle], exclude: [entry] }), (e) => isTrustStoreError(e, 'invalid-argument'));
    }
  });

  it('says which paths it tried when there is no bundle', async () => {
    const missing = join(dir, 'missing.crt');
    await assert.rejects(loadSystemRoots({ paths: [missing, join(dir, 'empty.pem')] }), (err) => {
      assert.ok(isTrustStoreError(err, 'no-system-roots'));
      assert.match(err.message, /missing\.crt \(ENOENT\).*empty\.pem \(no certificates\)/);
      return true;
    });
  });

  it('reads this machine\'s bundle (read-only)', { skip: !SYSTEM_ROOT_BUNDLES.some((p) => existsSync(p)) && 'no system bundle here' }, async () => {
    const roots = await loadSystemRoots();
    assert.ok(roots.pems.length > 10);
  });
});
