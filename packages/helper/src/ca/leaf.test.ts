import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import forge from 'node-forge';
import { isCaError } from './errors.js';
import { generateCa } from './generate.js';
import { DEFAULT_LEAF_KEY_ALGORITHM, LEAF_VALIDITY_DAYS, canonicalName, createLeafKey, leafKeyAlgorithmFromEnv, issueLeaf, leafNameFor, type LeafKey } from './leaf.js';
import { caMaterialFromPem, type CaMaterial } from './material.js';

const DAY = 24 * 3600 * 1000;

/** DER hex of one TBSCertificate field (3 = issuer, 5 = subject), exactly as encoded. */
function tbsFieldHex(pem: string, index: number): string {
  const der = forge.util.decode64(pem.replace(/-----[^-]+-----|\s/g, ''));
  const cert = forge.asn1.fromDer(der);
  const tbs = (cert.value as forge.asn1.Asn1[])[0]!;
  return forge.util.bytesToHex(forge.asn1.toDer((tbs.value as forge.asn1.Asn1[])[index]!).getBytes());
}

/** The TBSCertificate's fields as forge ASN.1 (forge.pki.certificateFromPem cannot read EC keys). */
function tbsFields(pem: string): forge.asn1.Asn1[] {
  const der = forge.util.decode64(pem.replace(/-----[^-]+-----|\s/g, ''));
  const cert = forge.asn1.fromDer(der);
  return (cert.value as forge.asn1.Asn1[])[0]!.value as forge.asn1.Asn1[];
}

// Present in node-forge's lib/x509.js but missing from @types/node-forge.
const extensionsFromAsn1 = (forge.pki as unknown as { certificateExtensionsFromAsn1(exts: forge.asn1.Asn1): Array<Record<string, unknown>> })
  .certificateExtensionsFromAsn1;

function extensions(pem: string): Map<string, Record<string, unknown>> {
  const exts = tbsFields(pem).at(-1)!;
  return new Map(extensionsFromAsn1(exts).map((e) => [e.name as string, e]));
}

describe('canonicalName', () => {
  const good: Array<[string, string, 'dns' | 'ip']> = [
    ['Example.COM.', 'example.com', 'dns'],
    ['localhost', 'localhost', 'dns'],
    ['xn--bcher-kva.example', 'xn--bcher-kva.example', 'dns'],
    ['a-b.c-d.example', 'a-b.c-d.example', 'dns'],
    [`${'a'.repeat(63)}.example.com`, `${'a'.repeat(63)}.example.com`, 'dns'],
    ['192.0.2.1', '192.0.2.1', 'ip'],
    ['::1', '::1', 'ip'],
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1', 'ip'],
    ['::ffff:192.0.2.7', '192.0.2.7', 'ip'],
  ];
  for (const [input, name, kind] of good) {
    it(`accepts ${JSON.stringify(input)} as ${kind} ${name}`, () => {
      assert.deepEqual(canonicalName(input), { kind, name });
    });
  }

  it('accepts a 253-character name and rejects 254', () => {
    const label = 'a'.repeat(63);
    const n253 = [label, label, label, 'b'.repeat(61)].join('.');
    assert.equal(n253.length, 253);
    assert.equal(canonicalName(n253).name, n253);
    assert.equal(canonicalName(`${n253}.`).name, n253, 'the root dot does not count');
    assert.throws(() => canonicalName(`${n253}b`), (e) => isCaError(e, 'invalid-name'));
  });

  const bad = [
    '*.example.com',
    '*',
    'a b',
    ' example.com',
    '',
    '.',
    'a..b',
    'example.com..',
    `${'a'.repeat(64)}.example.com`,
    'exa_mple.com',
    'ex\u212Aample.com', // KELVIN SIGN lower-cases to ASCII 'k'
    'bücher.example',
    'fe80::1%eth0',
    '[::1]',
    '1::2::3',
    '192.0.2.1/24',
    'example.com:443',
    'a\0b',
  ];
  for (const input of bad) {
    it(`rejects ${JSON.stringify(input)} with invalid-name`, () => {
      assert.throws(() => canonicalName(input), (e) => isCaError(e, 'invalid-name'));
    });
  }
});

describe('leafNameFor', () => {
  it('uses the SNI when there is one, else the original destination IP', () => {
    assert.deepEqual(leafNameFor({ sni: 'API.example.com', ip: '192.0.2.1' }), { kind: 'dns', name: 'api.example.com' });
    assert.deepEqual(leafNameFor({ sni: undefined, ip: '192.0.2.1' }), { kind: 'ip', name: '192.0.2.1' });
    assert.deepEqual(leafNameFor({ sni: null, ip: '::ffff:192.0.2.1' }), { kind: 'ip', name: '192.0.2.1' });
    assert.deepEqual(leafNameFor({ sni: '', ip: '2001:db8::5' }), { kind: 'ip', name: '2001:db8::5' });
  });

  it('does not fall back to the IP when the SNI is invalid', () => {
    assert.throws(() => leafNameFor({ sni: '*.example.com', ip: '192.0.2.1' }), (e) => isCaError(e, 'invalid-name'));
  });
});

for (const algorithm of ['ecdsa-p256', 'rsa-2048'] as const) describe(`issueLeaf (${algorithm} leaf key)`, () => {
  let ca: CaMaterial;
  let key: LeafKey;
  let dir: string;
  const now = new Date();

  before(async () => {
    const g = await generateCa();
    ca = caMaterialFromPem(g.certPem, g.keyPem);
    key = await createLeafKey(algorithm);
    dir = await mkdtemp(join(tmpdir(), 'tproxy-leaf-'));
    await writeFile(join(dir, 'ca.pem'), ca.certPem);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('mints a DNS leaf: SAN, CN, EKU, keyUsage, CA:FALSE', () => {
    const leaf = issueLeaf(ca, key, 'WWW.Example.com.', now);
    const x = new X509Certificate(leaf.certPem);
    assert.deepEqual(leaf.name, { kind: 'dns', name: 'www.example.com' });
    assert.equal(x.subjectAltName, 'DNS:www.example.com');
    assert.equal(x.subject, 'CN=www.example.com');
    assert.equal(x.checkHost('www.example.com'), 'www.example.com');
    assert.equal(x.checkHost('other.example.com'), undefined);
    assert.equal(x.ca, false);
    assert.deepEqual(x.keyUsage, ['1.3.6.1.5.5.7.3.1']);
    const ext = extensions(leaf.certPem);
    assert.equal(ext.get('basicConstraints')?.cA, false);
    assert.equal(ext.get('basicConstraints')?.critical, true);
    assert.equal(ext.get('keyUsage')?.critical, true);
    assert.equal(ext.get('keyUsage')?.digitalSignature, true);
    // keyEncipherment is for RSA key transport only; an EC key cannot encipher (RFC 5480 §3).
    assert.equal(ext.get('keyUsage')?.keyEncipherment, algorithm === 'rsa-2048');
    assert.equal(ext.get('keyUsage')?.keyCertSign, false);
    assert.equal(ext.get('subjectAltName')?.critical, false);
  });

  it('points its AKI at the CA SKI, has no SKI, and names the CA as issuer byte for byte', () => {
    const leaf = issueLeaf(ca, key, 'example.com', now);
    const ext = extensions(leaf.certPem);
    assert.equal(ext.has('subjectKeyIdentifier'), false);
    const aki = ext.get('authorityKeyIdentifier');
    assert.ok(aki);
    // forge keeps the raw extnValue: SEQUENCE { [0] keyIdentifier }.
    const akiAsn1 = forge.asn1.fromDer(aki.value as string);
    const keyId = (akiAsn1.value as forge.asn1.Asn1[])[0]!.value as string;
    assert.equal(forge.util.bytesToHex(keyId), forge.util.bytesToHex(ca.subjectKeyIdentifier));
    assert.equal(tbsFieldHex(leaf.certPem, 3), tbsFieldHex(ca.certPem, 5));
  });

  it('verifies against the CA with node:crypto', () => {
    const x = new X509Certificate(issueLeaf(ca, key, 'example.com', now).certPem);
    const caX = new X509Certificate(ca.certPem);
    assert.ok(x.verify(ca.publicKey));
    assert.ok(x.checkIssued(caX));
    assert.ok(x.checkPrivateKey(key.privateKey));
  });

  it('verifies with openssl verify -x509_strict -purpose sslserver, for DNS, IPv4, IPv6 and long names', async () => {
    const cases: Array<[string, string[]]> = [
      ['example.com', ['-verify_hostname', 'example.com']],
      ['192.0.2.1', ['-verify_ip', '192.0.2.1']],
      ['2001:db8::1', ['-verify_ip', '2001:db8::1']],
      [`${'x'.repeat(60)}.example.com`, ['-verify_hostname', `${'x'.repeat(60)}.example.com`]],
    ];
    for (const [i, [name, check]] of cases.entries()) {
      const file = join(dir, `leaf-${i}.pem`);
      await writeFile(file, issueLeaf(ca, key, name, now).certPem);
      const out = execFileSync('openssl', ['verify', '-x509_strict', '-purpose', 'sslserver', ...check, '-CAfile', join(dir, 'ca.pem'), file], {
        encoding: 'utf8',
      });
      assert.equal(out.trim(), `${file}: OK`, name);
    }
  });

  it('puts IPv4 and IPv6 literals in an IP SAN', () => {
    const v4 = new X509Certificate(issueLeaf(ca, key, '192.0.2.1', now).certPem);
    assert.equal(v4.subjectAltName, 'IP Address:192.0.2.1');
    assert.equal(v4.checkIP('192.0.2.1'), '192.0.2.1');
    const v6 = new X509Certificate(issueLeaf(ca, key, '2001:DB8::1', now).certPem);
    assert.equal(v6.subjectAltName, 'IP Address:2001:DB8:0:0:0:0:0:1');
    assert.equal(v6.checkIP('2001:db8::1'), '2001:db8::1');
    const mapped = new X509Certificate(issueLeaf(ca, key, '::ffff:198.51.100.9', now).certPem);
    assert.equal(mapped.subjectAltName, 'IP Address:198.51.100.9');
  });

  it('leaves out the CN for names of 64+ characters and makes the SAN critical', () => {
    const long = `${'a'.repeat(52)}.example.com`;
    assert.equal(long.length, 64);
    const leaf = issueLeaf(ca, key, long, now);
    const x = new X509Certificate(leaf.certPem);
    // node:crypto reports an empty subject as undefined.
    assert.ok(!x.subject);
    assert.equal(tbsFieldHex(leaf.certPem, 5), '3000', 'an empty subject Name: SEQUENCE {}');
    assert.equal(x.subjectAltName, `DNS:${long}`);
    assert.equal(extensions(leaf.certPem).get('subjectAltName')?.critical, true);
    const just = long.slice(1);
    assert.equal(new X509Certificate(issueLeaf(ca, key, just, now).certPem).subject, `CN=${just}`);
  });

  it(`backdates notBefore 2 days and lasts ${LEAF_VALIDITY_DAYS} days (≤ 45)`, () => {
    const leaf = issueLeaf(ca, key, 'example.com', now);
    const x = new X509Certificate(leaf.certPem);
    const nb = new Date(x.validFrom).getTime();
    const na = new Date(x.validTo).getTime();
    assert.ok(Math.abs(nb - (now.getTime() - 2 * DAY)) < 1000);
    assert.equal(na - nb, LEAF_VALIDITY_DAYS * DAY);
    assert.ok(LEAF_VALIDITY_DAYS <= 45);
    assert.equal(leaf.notAfter.getTime(), na);
    assert.equal(leaf.notBefore.getTime(), nb);
  });

  it('never outlives the CA', () => {
    const late = new Date(ca.notAfter.getTime() - 10 * DAY);
    const leaf = issueLeaf(ca, key, 'example.com', late);
    assert.equal(leaf.notAfter.getTime(), ca.notAfter.getTime());
  });

  it('uses a fresh random serial per leaf and the shared leaf key', () => {
    const a = issueLeaf(ca, key, 'example.com', now);
    const b = issueLeaf(ca, key, 'example.com', now);
    assert.notEqual(a.serialHex, b.serialHex);
    assert.equal(new X509Certificate(a.certPem).serialNumber.toLowerCase(), a.serialHex);
    assert.equal(a.keyPem, key.keyPem);
    assert.equal(b.keyPem, key.keyPem);
  });

  it('refuses to mint wildcards', () => {
    assert.throws(() => issueLeaf(ca, key, '*.example.com', now), (e) => isCaError(e, 'invalid-name'));
  });

  it('carries the leaf key as SubjectPublicKeyInfo byte for byte, and openssl x509 -text reads it', async () => {
    const leaf = issueLeaf(ca, key, 'example.com', now);
    const x = new X509Certificate(leaf.certPem);
    assert.deepEqual(x.publicKey.export({ type: 'spki', format: 'der' }), key.spkiDer);
    assert.equal(x.publicKey.asymmetricKeyType, algorithm === 'ecdsa-p256' ? 'ec' : 'rsa');
    const file = join(dir, 'text.pem');
    await writeFile(file, leaf.certPem);
    const text = execFileSync('openssl', ['x509', '-noout', '-text', '-in', file], { encoding: 'utf8' });
    assert.match(text, /Version: 3 \(0x2\)/);
    assert.match(text, /Signature Algorithm: sha256WithRSAEncryption/);
    if (algorithm === 'ecdsa-p256') {
      assert.match(text, /Public Key Algorithm: id-ecPublicKey/);
      assert.match(text, /NIST CURVE: P-256/);
      assert.match(text, /Key Usage: critical\s+Digital Signature\n/);
    } else {
      assert.match(text, /Public Key Algorithm: rsaEncryption/);
      assert.match(text, /Key Usage: critical\s+Digital Signature, Key Encipherment\n/);
    }
    assert.match(text, /DNS:example\.com/);
  });

  it('serves a Node TLS 1.3 and TLS 1.2 handshake that a client trusting only the CA accepts', async () => {
    const leaf = issueLeaf(ca, key, 'leaf.example', now);
    for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
      const server = tls.createServer({ cert: leaf.certPem, key: leaf.keyPem, minVersion: version, maxVersion: version }, (s) => s.end('hello'));
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      try {
        const { port } = server.address() as AddressInfo;
        const { authorized, protocol, keyType, data } = await new Promise<{ authorized: boolean; protocol: string | null; keyType: string | undefined; data: string }>(
          (resolve, reject) => {
            const c = tls.connect({ host: '127.0.0.1', port, servername: 'leaf.example', ca: ca.certPem, maxVersion: version }, () => {
              const peer = c.getPeerX509Certificate();
              let data = '';
              c.setEncoding('utf8').on('data', (d: string) => (data += d));
              c.on('end', () => resolve({ authorized: c.authorized, protocol: c.getProtocol(), keyType: peer?.publicKey.asymmetricKeyType, data }));
            });
            c.on('error', reject);
            c.setTimeout(5000, () => c.destroy(new Error('handshake timed out')));
          },
        );
        assert.equal(authorized, true, version);
        assert.equal(protocol, version);
        assert.equal(keyType, algorithm === 'ecdsa-p256' ? 'ec' : 'rsa');
        assert.equal(data, 'hello');
      } finally {
        await new Promise((resolve) => server.close(resolve));
      }
    }
  });
});

describe('createLeafKey', () => {
  it('makes an ECDSA P-256 key by default, and RSA-2048 on request', async () => {
    assert.equal(DEFAULT_LEAF_KEY_ALGORITHM, 'ecdsa-p256');
    const ec = await createLeafKey();
    assert.equal(ec.algorithm, 'ecdsa-p256');
    assert.equal(ec.privateKey.asymmetricKeyType, 'ec');
    assert.equal(ec.privateKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.equal(ec.publicKey, null, 'forge has no EC keys');
    const rsa = await createLeafKey('rsa-2048');
    assert.equal(rsa.privateKey.asymmetricKeyDetails?.modulusLength, 2048);
    assert.ok(rsa.publicKey);
    assert.match(rsa.keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
  });
});

describe('leafKeyAlgorithmFromEnv', () => {
  it('defaults to ECDSA P-256, honours TPROXY_LEAF_KEY, and refuses unknown values with the accepted ones', () => {
    assert.equal(leafKeyAlgorithmFromEnv({}), 'ecdsa-p256');
    assert.equal(leafKeyAlgorithmFromEnv({ TPROXY_LEAF_KEY: '' }), 'ecdsa-p256');
    assert.equal(leafKeyAlgorithmFromEnv({ TPROXY_LEAF_KEY: 'rsa-2048' }), 'rsa-2048');
    assert.equal(leafKeyAlgorithmFromEnv({ TPROXY_LEAF_KEY: 'ecdsa-p256' }), 'ecdsa-p256');
    assert.throws(() => leafKeyAlgorithmFromEnv({ TPROXY_LEAF_KEY: 'rsa' }), /TPROXY_LEAF_KEY="rsa" is not a leaf key type: use ecdsa-p256 or rsa-2048/);
  });
});
