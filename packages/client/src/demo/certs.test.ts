/** The demo PKI: openssl argv and config without running anything, then a real run when openssl exists. */
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { SITE_SANS, demoCertPaths, makeDemoCerts, opensslCommands, opensslConfig, randomSerial } from './certs.js';
import { findOnPath } from './procs.js';

test('the config names every demo name and the site addresses, with a leaf-only CA', () => {
  const cnf = opensslConfig();
  assert.match(cnf, /^subjectAltName = DNS:shop\.demo, DNS:api\.demo, DNS:events\.demo, IP:198\.18\.0\.2, IP:fd00:198:18::2$/m);
  assert.match(cnf, /^\[ca_ext\]\nbasicConstraints = critical, CA:TRUE, pathlen:0$/m);
  assert.match(cnf, /^\[server_ext\]\nbasicConstraints = critical, CA:FALSE$/m);
  assert.match(cnf, /^extendedKeyUsage = serverAuth$/m);
});

test('openssl runs by argv with our config and sections, never through a shell', () => {
  const p = demoCertPaths('/d');
  const cmds = opensslCommands(p, { caSerial: '0x01', siteSerial: '0x02', caName: 'CA x' });
  assert.equal(cmds.length, 3);
  for (const c of cmds) assert.equal(c[0], 'openssl');
  const [ca, csr, sign] = cmds as [string[], string[], string[]];
  assert.deepEqual(ca.slice(0, 7), ['openssl', 'req', '-x509', '-new', '-config', '/d/openssl.cnf', '-extensions']);
  assert.ok(ca.includes('ca_ext') && ca.includes('/CN=CA x') && ca.includes('0x01'));
  assert.ok(csr.includes('/CN=shop.demo') && csr.includes('/d/site-key.pem'));
  assert.ok(sign.includes('server_ext') && sign.includes('/d/site-ca.pem') && sign.includes('/d/site.pem') && sign.includes('0x02'));
  assert.match(randomSerial(), /^0x[0-7][0-9a-f]{31}$/);
});

test('makeDemoCerts issues a site certificate the CA verifies, for every demo name', { skip: findOnPath('openssl') ? false : 'needs openssl on PATH' }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tproxy-demo-certs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const p = await makeDemoCerts(dir);
  const ca = new X509Certificate(readFileSync(p.caCert));
  const site = new X509Certificate(readFileSync(p.siteCert));
  assert.equal(ca.ca, true);
  assert.equal(site.ca, false);
  assert.ok(site.checkIssued(ca) && site.verify(ca.publicKey), 'signed by the demo CA');
  for (const name of ['shop.demo', 'api.demo', 'events.demo']) assert.equal(site.checkHost(name), name);
  assert.equal(site.checkIP('198.18.0.2'), '198.18.0.2');
  assert.equal(site.subjectAltName?.split(', ').length, SITE_SANS.length);
  assert.ok(site.checkPrivateKey(createPrivateKey(readFileSync(p.siteKey))));
  assert.equal(statSync(p.siteKey).mode & 0o077, 0, 'keys are not group/world readable');
});
