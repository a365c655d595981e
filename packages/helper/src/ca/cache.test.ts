import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { connect, createServer, type PeerCertificate, type Server } from 'node:tls';
import { DEFAULT_REFRESH_MARGIN_MS, LeafCache } from './cache.js';
import { isCaError } from './errors.js';
import { generateCa } from './generate.js';
import { LEAF_VALIDITY_DAYS, createLeafKey, issueLeaf, type LeafKey } from './leaf.js';
import { caMaterialFromPem, type CaMaterial } from './material.js';

const DAY = 24 * 3600 * 1000;

let ca: CaMaterial;
let key: LeafKey;
before(async () => {
  const g = await generateCa();
  ca = caMaterialFromPem(g.certPem, g.keyPem);
  key = await createLeafKey();
});

describe('LeafCache', () => {
  it('counts hits and misses, and treats spellings of one name as one entry', () => {
    const cache = new LeafCache(ca, key);
    const first = cache.get('example.com');
    assert.equal(cache.get('EXAMPLE.com.'), first);
    cache.get('example.org');
    assert.deepEqual(cache.stats(), { hits: 1, misses: 2, mints: 2, evictions: 0, size: 2 });
  });

  it('evicts the least recently used entry beyond the cap', () => {
    const cache = new LeafCache(ca, key, { max: 2 });
    cache.get('a.test');
    cache.get('b.test');
    cache.get('a.test'); // a is now the most recently used
    cache.get('c.test'); // evicts b
    assert.equal(cache.stats().evictions, 1);
    assert.equal(cache.stats().size, 2);
    const mints = cache.stats().mints;
    cache.get('a.test');
    cache.get('c.test');
    assert.equal(cache.stats().mints, mints, 'a and c are still cached');
    cache.get('b.test');
    assert.equal(cache.stats().mints, mints + 1, 'b was evicted');
  });

  it('applies a new cap at once and keeps to it', () => {
    const cache = new LeafCache(ca, key, { max: 5 });
    for (const n of ['a', 'b', 'c', 'd']) cache.get(`${n}.test`);
    cache.setMax(2);
    assert.equal(cache.stats().size, 2);
    assert.equal(cache.stats().evictions, 2);
    const mints = cache.stats().mints;
    cache.get('d.test');
    cache.get('c.test');
    assert.equal(cache.stats().mints, mints, 'the two most recent survive');
    for (let i = 0; i < 20; i++) cache.get(`flood-${i}.test`);
    assert.equal(cache.stats().size, 2);
  });

  it('re-mints a leaf once it is within the refresh margin of notAfter', () => {
    let clock = new Date('2026-06-01T00:00:00Z');
    const cache = new LeafCache(ca, key, { now: () => clock });
    const first = cache.get('example.com');
    // Minted at t0: notAfter = t0 - 2 d + LEAF_VALIDITY_DAYS.
    const notAfter = clock.getTime() - 2 * DAY + LEAF_VALIDITY_DAYS * DAY;
    clock = new Date(notAfter - DEFAULT_REFRESH_MARGIN_MS - 1000);
    assert.equal(cache.get('example.com'), first);
    clock = new Date(notAfter - DEFAULT_REFRESH_MARGIN_MS + 1000);
    const second = cache.get('example.com');
    assert.notEqual(second, first);
    assert.deepEqual(cache.stats(), { hits: 1, misses: 2, mints: 2, evictions: 0, size: 1 });
    assert.equal(cache.get('example.com'), second);
  });

  it('does not re-mint on every call when the CA itself expires soon', () => {
    let clock = new Date(ca.notAfter.getTime() - 3 * DAY);
    const cache = new LeafCache(ca, key, { now: () => clock });
    const first = cache.get('example.com');
    clock = new Date(clock.getTime() + 3600 * 1000);
    assert.equal(cache.get('example.com'), first);
    assert.equal(cache.stats().mints, 1);
  });

  it('refuses invalid names before touching the cache', () => {
    const cache = new LeafCache(ca, key);
    assert.throws(() => cache.get('*.example.com'), (e) => isCaError(e, 'invalid-name'));
    assert.deepEqual(cache.stats(), { hits: 0, misses: 0, mints: 0, evictions: 0, size: 0 });
  });

  it('mints once for a burst of concurrent first requests', async () => {
    const cache = new LeafCache(ca, key);
    const contexts = await Promise.all(Array.from({ length: 50 }, async () => cache.get('burst.example.com')));
    assert.equal(new Set(contexts).size, 1);
    assert.equal(cache.stats().mints, 1);
  });
});

describe('LeafCache in a real TLS handshake', () => {
  let server: Server;
  let port: number;
  let cache: LeafCache;

  before(async () => {
    cache = new LeafCache(ca, key);
    // No SNI: the engine uses the original destination IP, here the listener's own address.
    const noSni = issueLeaf(ca, key, '127.0.0.1');
    server = createServer({
      cert: noSni.certPem,
      key: noSni.keyPem,
      SNICallback: (servername, cb) => {
        try {
          cb(null, cache.get(servername));
        } catch (err) {
          cb(err as Error);
        }
      },
    });
    server.on('secureConnection', (socket) => socket.end('hello'));
    server.on('tlsClientError', () => {});
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  /** Connects trusting only our CA; resolves with the peer certificate and what the server said. */
  function handshake(servername: string | undefined): Promise<{ peer: PeerCertificate; body: string }> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port, ca: ca.certPem, ...(servername !== undefined ? { servername } : {}) });
      let body = '';
      let secure = false;
      socket.setEncoding('utf8');
      socket.on('secureConnect', () => (secure = true));
      socket.on('data', (d: string) => (body += d));
      socket.on('error', reject);
      // A server that aborts the handshake closes the socket: 'end' can come before 'error'.
      socket.on('end', () => (secure ? resolve({ peer: socket.getPeerCertificate(), body }) : reject(new Error('closed during handshake'))));
    });
  }

  it('serves a leaf for the SNI name that the client accepts', async () => {
    const { peer, body } = await handshake('Api.Example.test');
    assert.equal(body, 'hello');
    assert.equal(peer.subjectaltname, 'DNS:api.example.test');
    assert.ok(new X509Certificate(peer.raw).verify(ca.publicKey));
  });

  it('sends the leaf alone, not the CA', async () => {
    // Node's client fills issuerCertificate from its own `ca` list, so ask openssl what was on the wire.
    const stdout = await new Promise<string>((resolve) => {
      const args = ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'chain.example.test', '-showcerts'];
      // s_client may exit non-zero on the server's close; the certificates are printed by then.
      const child = execFile('openssl', args, { timeout: 10_000 }, (_err, out) => resolve(String(out)));
      child.stdin?.end();
    });
    assert.match(stdout, /subject=CN ?= ?chain\.example\.test/);
    assert.equal(stdout.match(/-----BEGIN CERTIFICATE-----/g)?.length, 1);
  });

  it('serves an IP SAN leaf when the client sends no SNI', async () => {
    const { peer, body } = await handshake(undefined);
    assert.equal(body, 'hello');
    assert.equal(peer.subjectaltname, 'IP Address:127.0.0.1');
  });

  it('mints once for a burst of concurrent handshakes with one new name', async () => {
    const before = cache.stats().mints;
    const results = await Promise.all(Array.from({ length: 20 }, () => handshake('burst.example.test')));
    assert.ok(results.every((r) => r.body === 'hello'));
    assert.equal(cache.stats().mints, before + 1);
  });

  it('fails the handshake, minting nothing, when the client asks for a wildcard', async () => {
    const before = cache.stats().mints;
    await assert.rejects(handshake('*.example.test'));
    assert.equal(cache.stats().mints, before);
  });
});
