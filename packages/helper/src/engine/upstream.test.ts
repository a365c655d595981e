import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it, type TestContext } from 'node:test';
import tls from 'node:tls';
import { checkIdentity, connectUpstream, UpstreamPool, UpstreamTlsError, type UpstreamOptions, type UpstreamTarget } from './upstream.js';
import { closeServer, closedPort, createUpstreamPki, listenLoopback, loopbackConnector, peerCertificate, startTlsSink, within, type TlsSink, type UpstreamPki } from './test-support.js';

let pki: UpstreamPki;
before(async () => {
  pki = await createUpstreamPki();
});

describe('checkIdentity', () => {
  it('rejects a certificate without subjectAltName that Node alone would accept by its CN', () => {
    const cert = peerCertificate(pki.cnOnly);
    assert.equal(cert.subjectaltname, undefined);
    assert.equal(tls.checkServerIdentity('upstream.test', cert), undefined, "Node's own check falls back to the CN");
    const err = checkIdentity('upstream.test', cert) as NodeJS.ErrnoException | undefined;
    assert.ok(err instanceof Error);
    assert.equal(err.code, 'ERR_TLS_CERT_ALTNAME_INVALID');
    assert.match(err.message, /no subjectAltName/);
  });

  it('accepts a matching DNS SAN, case-insensitively, and rejects other names', () => {
    const cert = peerCertificate(pki.good);
    assert.equal(checkIdentity('upstream.test', cert), undefined);
    assert.equal(checkIdentity('UPSTREAM.test', cert), undefined);
    const err = checkIdentity('other.test', cert) as NodeJS.ErrnoException | undefined;
    assert.equal(err?.code, 'ERR_TLS_CERT_ALTNAME_INVALID');
    assert.equal((checkIdentity('upstream.test', peerCertificate(pki.otherName)) as NodeJS.ErrnoException | undefined)?.code, 'ERR_TLS_CERT_ALTNAME_INVALID');
  });

  it('matches an IP identity against IP SANs only', () => {
    assert.equal(checkIdentity('127.0.0.1', peerCertificate(pki.good)), undefined);
    assert.equal((checkIdentity('127.0.0.2', peerCertificate(pki.good)) as NodeJS.ErrnoException | undefined)?.code, 'ERR_TLS_CERT_ALTNAME_INVALID');
    // A DNS SAN never vouches for an address.
    assert.equal((checkIdentity('127.0.0.1', peerCertificate(pki.otherName)) as NodeJS.ErrnoException | undefined)?.code, 'ERR_TLS_CERT_ALTNAME_INVALID');
    assert.ok(checkIdentity('127.0.0.1', peerCertificate(pki.cnOnly)) instanceof Error);
  });
});

describe('connectUpstream', () => {
  const sinks: TlsSink[] = [];
  after(async () => {
    for (const s of sinks) await s.close();
  });

  async function sink(cert: string): Promise<TlsSink> {
    const s = await startTlsSink({ key: pki.keyPem, cert });
    sinks.push(s);
    return s;
  }

  function options(port: number, extra: Partial<UpstreamOptions> = {}): UpstreamOptions {
    return { connect: loopbackConnector(port).connect, trust: tls.createSecureContext({ ca: pki.caPem }), ...extra };
  }

  async function connected(t: TestContext, target: UpstreamTarget, opts: UpstreamOptions): Promise<tls.TLSSocket> {
    const socket = await within(connectUpstream(target, opts), 'the upstream handshake');
    t.after(() => {
      socket.destroy();
    });
    return socket;
  }

  it('sends the server name as SNI and hands over a verified socket', async (t) => {
    const s = await sink(pki.good);
    const socket = await connected(t, { address: '127.0.0.1', port: 443, serverName: 'upstream.test' }, options(s.port));
    assert.equal(socket.authorized, true);
    assert.equal(socket.alpnProtocol, false, 'the sink offers no ALPN');
    await s.handshakes(1);
    assert.deepEqual(s.servernames, ['upstream.test']);
  });

  it('never sends an IP literal as SNI and verifies it against the IP SAN', async (t) => {
    const s = await sink(pki.good);
    const asName = await connected(t, { address: '127.0.0.1', port: 443, serverName: '127.0.0.1' }, options(s.port));
    const noName = await connected(t, { address: '127.0.0.1', port: 443, serverName: undefined }, options(s.port));
    assert.equal(asName.authorized, true);
    assert.equal(noName.authorized, true);
    await s.handshakes(2);
    assert.deepEqual(s.servernames, [false, false]);
  });

  for (const [what, cert, code] of [
    ['CN-only', () => pki.cnOnly, 'ERR_TLS_CERT_ALTNAME_INVALID'],
    ['self-signed', () => pki.selfSigned, 'DEPTH_ZERO_SELF_SIGNED_CERT'],
    ['expired', () => pki.expired, 'CERT_HAS_EXPIRED'],
  ] as const) {
    it(`rejects a ${what} upstream before any byte is written`, async () => {
      const s = await sink(cert());
      await assert.rejects(within(connectUpstream({ address: '127.0.0.1', port: 443, serverName: 'upstream.test' }, options(s.port)), 'the rejection'), { code });
      await s.idle();
      assert.equal(s.bytes, 0);
    });
  }

  it('passes the connector failure through', async () => {
    await assert.rejects(connectUpstream({ address: '127.0.0.1', port: 443, serverName: 'upstream.test' }, options(await closedPort())), { code: 'ECONNREFUSED', syscall: 'connect' });
  });

  it('gives up on a handshake that never completes', async (t) => {
    const accepted = new Set<net.Socket>();
    const silent = net.createServer((sock) => {
      accepted.add(sock);
      sock.on('error', () => {}).resume();
    });
    const port = await listenLoopback(silent);
    t.after(async () => {
      for (const sock of accepted) sock.destroy();
      await closeServer(silent);
    });
    // 100 ms: the timeout under test; the sink never answers, so it always elapses.
    const err = await within(
      connectUpstream({ address: '127.0.0.1', port: 443, serverName: 'upstream.test' }, options(port, { handshakeTimeoutMs: 100 })).then(
        () => assert.fail('the handshake cannot succeed'),
        (e: unknown) => e,
      ),
      'the handshake timeout',
    );
    assert.ok(err instanceof UpstreamTlsError);
    assert.equal(err.code, 'ERR_TLS_HANDSHAKE_TIMEOUT');
    assert.match(err.message, /TLS handshake with 127\.0\.0\.1:443 timed out/);
  });
});

describe('UpstreamPool', () => {
  it('keeps one agent per (address, port, server name)', () => {
    const pool = new UpstreamPool({ connect: () => Promise.reject(new Error('not used')), trust: tls.createSecureContext() });
    const a = pool.agentFor({ address: '198.18.0.2', port: 443, serverName: 'a.test' });
    assert.equal(pool.agentFor({ address: '198.18.0.2', port: 443, serverName: 'a.test' }), a);
    assert.notEqual(pool.agentFor({ address: '198.18.0.2', port: 443, serverName: 'b.test' }), a);
    assert.notEqual(pool.agentFor({ address: '198.18.0.2', port: 443, serverName: undefined }), a);
    assert.notEqual(pool.agentFor({ address: '198.18.0.2', port: 8443, serverName: 'a.test' }), a);
    assert.notEqual(pool.agentFor({ address: '198.18.0.3', port: 443, serverName: 'a.test' }), a);
    pool.destroy();
    assert.notEqual(pool.agentFor({ address: '198.18.0.2', port: 443, serverName: 'a.test' }), a, 'destroy drops the agents');
    pool.destroy();
  });
});
