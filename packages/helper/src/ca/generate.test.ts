import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { describe, it } from 'node:test';
import forge from 'node-forge';
import { CA_COMMON_NAME_PREFIX, caUniqueName, generateCa } from './generate.js';
import { caMaterialFromPem } from './material.js';
import { isCaError } from './errors.js';

const DAY = 24 * 3600 * 1000;

/** Extensions as forge parses them, by name. */
function extensions(pem: string): Map<string, Record<string, unknown>> {
  const cert = forge.pki.certificateFromPem(pem);
  return new Map(cert.extensions.map((e: Record<string, unknown>) => [e.name as string, e]));
}

describe('generateCa', () => {
  const now = new Date('2026-03-01T12:00:00.000Z');
  const made = generateCa({ now, commonName: 'tproxy local CA test-host-0000abcd' });

  it('is a CA restricted to issuing leaves: basicConstraints CA:TRUE pathlen 0, critical', async () => {
    const ext = extensions((await made).certPem);
    const bc = ext.get('basicConstraints');
    assert.ok(bc);
    assert.equal(bc.critical, true);
    assert.equal(bc.cA, true);
    assert.equal(bc.pathLenConstraint, 0);
    assert.equal(new X509Certificate((await made).certPem).ca, true);
  });

  it('has keyUsage keyCertSign + cRLSign only, critical', async () => {
    const ku = extensions((await made).certPem).get('keyUsage');
    assert.ok(ku);
    assert.equal(ku.critical, true);
    assert.equal(ku.keyCertSign, true);
    assert.equal(ku.cRLSign, true);
    assert.equal(ku.digitalSignature, false);
    assert.equal(ku.keyEncipherment, false);
  });

  it('writes PEM with LF line breaks only', async () => {
    assert.doesNotMatch((await made).certPem, /\r/);
    assert.doesNotMatch((await made).keyPem, /\r/);
  });

  it('carries a subjectKeyIdentifier', async () => {
    const ski = extensions((await made).certPem).get('subjectKeyIdentifier');
    assert.match(String(ski?.subjectKeyIdentifier), /^[0-9a-f]{40}$/);
  });

  it('is valid for 10 years from now, with notBefore backdated 2 days', async () => {
    const x = new X509Certificate((await made).certPem);
    assert.equal(new Date(x.validTo).toISOString(), '2036-03-01T12:00:00.000Z');
    assert.equal(new Date(x.validFrom).getTime(), now.getTime() - 2 * DAY);
  });

  it('uses an RSA key of at least 2048 bits that matches the certificate and signs it', async () => {
    const { certPem, keyPem } = await made;
    const ca = caMaterialFromPem(certPem, keyPem);
    assert.equal(ca.privateKey.asymmetricKeyType, 'rsa');
    assert.ok((ca.privateKey.asymmetricKeyDetails?.modulusLength ?? 0) >= 2048);
    const x = new X509Certificate(certPem);
    assert.ok(x.checkPrivateKey(ca.privateKey));
    assert.ok(x.verify(x.publicKey));
    assert.equal(x.subject, x.issuer);
    assert.equal(x.subject, 'O=tproxy\nCN=tproxy local CA test-host-0000abcd');
    assert.equal(ca.subject, 'O=tproxy, CN=tproxy local CA test-host-0000abcd');
  });

  it('gets a fresh positive random serial and fingerprint every time', async () => {
    const [a, b] = await Promise.all([generateCa({ now }), generateCa({ now })]);
    const sa = caMaterialFromPem(a.certPem, a.keyPem);
    const sb = caMaterialFromPem(b.certPem, b.keyPem);
    assert.notEqual(sa.serialHex, sb.serialHex);
    assert.notEqual(sa.fingerprintSha256, sb.fingerprintSha256);
    // Top byte 0x40–0x7f: positive, minimally encoded, 16 bytes.
    assert.match(sa.serialHex, /^[4-7][0-9a-f]{31}$/);
    assert.match(sa.fingerprintSha256, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  });
});

describe('caUniqueName', () => {
  it('names the host and adds a random suffix', () => {
    const a = caUniqueName('build-box');
    const b = caUniqueName('build-box');
    assert.match(a, /^tproxy local CA build-box-[0-9a-f]{8}$/);
    assert.notEqual(a, b);
    assert.ok(a.startsWith(CA_COMMON_NAME_PREFIX));
  });

  it('stays within the 64-character CN limit for long host names', () => {
    const name = caUniqueName('h'.repeat(200), 'deadbeef');
    assert.equal(name.length, 64);
    assert.ok(name.endsWith('-deadbeef'));
  });
});

describe('caMaterialFromPem', () => {
  it('rejects garbage, a mismatched key, and a leaf as ca-corrupt', async () => {
    const [a, b] = await Promise.all([generateCa(), generateCa()]);
    assert.throws(() => caMaterialFromPem('not a cert', a.keyPem), (e) => isCaError(e, 'ca-corrupt'));
    assert.throws(() => caMaterialFromPem(a.certPem, 'not a key'), (e) => isCaError(e, 'ca-corrupt'));
    assert.throws(() => caMaterialFromPem(a.certPem, b.keyPem), /does not belong/);
  });
});
