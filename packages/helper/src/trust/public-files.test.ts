import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateCa } from '../ca/generate.js';
import { caMaterialFromPem } from '../ca/material.js';
import { silentLogger } from '../log.js';
import { PublicTrustFiles } from './public-files.js';

describe('public trust files', () => {
  let dir: string;
  let systemBundle: string;
  let ours: { certPem: string; fingerprintSha256: string };
  let next: { certPem: string; fingerprintSha256: string };
  let theirs: string[];

  const ca = async () => {
    const g = await generateCa();
    return { certPem: g.certPem, fingerprintSha256: caMaterialFromPem(g.certPem, g.keyPem).fingerprintSha256 };
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tproxy-public-'));
    [ours, next] = await Promise.all([ca(), ca()]);
    theirs = (await Promise.all([generateCa(), generateCa()])).map((g) => g.certPem);
    systemBundle = join(dir, 'ca-certificates.crt');
    // Ours is there (the trust store holds it while capture runs), and one root is listed twice.
    await writeFile(systemBundle, [theirs[0], ours.certPem, theirs[1], theirs[0]].join('\n'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes 0644 files: the system roots de-duplicated without our CA, then our CA once; and the env', async () => {
    const out = join(dir, 'run');
    const files = new PublicTrustFiles({ dir: out, systemBundles: [join(dir, 'missing.crt'), systemBundle], log: silentLogger });
    const got = await files.ensure(ours);
    assert.equal(got.caPath, join(out, 'ca.pem'));
    assert.equal(got.bundlePath, join(out, 'bundle.pem'));
    for (const path of [got.caPath, got.bundlePath]) assert.equal((await stat(path)).mode & 0o777, 0o644, path);
    assert.equal(await readFile(got.caPath, 'utf8'), ours.certPem);
    assert.equal(await readFile(got.bundlePath, 'utf8'), [theirs[0], theirs[1], ours.certPem].join(''));
    assert.deepEqual(got.env, {
      SSL_CERT_FILE: got.bundlePath,
      REQUESTS_CA_BUNDLE: got.bundlePath,
      CURL_CA_BUNDLE: got.bundlePath,
      GIT_SSL_CAINFO: got.bundlePath,
      NODE_EXTRA_CA_CERTS: got.caPath,
    });
  });

  it('rewrites only when the CA, the system bundle or the files changed; remove() deletes them', async () => {
    const out = join(dir, 'run2');
    const files = new PublicTrustFiles({ dir: out, systemBundles: [systemBundle], log: silentLogger });
    const { bundlePath, caPath } = await files.ensure(ours);
    const ino = (await stat(bundlePath)).ino;
    await files.ensure(ours);
    assert.equal((await stat(bundlePath)).ino, ino, 'unchanged inputs: not rewritten');

    await files.ensure(next);
    assert.notEqual((await stat(bundlePath)).ino, ino, 'a new CA: rewritten');
    assert.equal(await readFile(caPath, 'utf8'), next.certPem);
    // The old CA is no longer excluded (it is not ours any more); the new one comes last.
    assert.ok((await readFile(bundlePath, 'utf8')).endsWith(next.certPem));

    await writeFile(systemBundle, theirs[1]!);
    await files.ensure(next);
    assert.equal(await readFile(bundlePath, 'utf8'), theirs[1]! + next.certPem, 'a changed system bundle: rewritten');

    await rm(caPath);
    await files.ensure(next);
    assert.equal(await readFile(caPath, 'utf8'), next.certPem, 'a deleted file: written again');

    assert.deepEqual(await files.remove(), [`public trust file ${caPath}`, `public trust file ${bundlePath}`]);
    await assert.rejects(stat(caPath), { code: 'ENOENT' });
    await assert.rejects(stat(bundlePath), { code: 'ENOENT' });
    assert.deepEqual(await files.remove(), [], 'idempotent');
  });

  it('without a system bundle, the bundle is our CA alone and a warning says so', async () => {
    const warnings: string[] = [];
    const log = { ...silentLogger, warn: (m: string) => void warnings.push(m) };
    const files = new PublicTrustFiles({ dir: join(dir, 'run3'), systemBundles: [join(dir, 'nope.crt')], log });
    const { bundlePath } = await files.ensure(ours);
    assert.equal(await readFile(bundlePath, 'utf8'), ours.certPem);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /no system CA bundle found, so it holds only our CA/);
  });
});
