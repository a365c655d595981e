/**
 * ALPN learnt from the upstream before answering the client, end to end: an h2-capable curl
 * (`--http2`, offering h2 and http/1.1) in the client namespace reaches, through the real helper,
 * an http/1.1-only origin (the suite's good upstream, 198.18.0.2:443) and an origin that negotiates
 * no ALPN at all (started here on 198.18.0.2:8602). Both work over HTTP/1.1, and the capture shows
 * what the client offered and what was agreed.
 *
 *   client ns: curl --http2 ──▶ helper ──ALPN [h2, http/1.1]──▶ 198.18.0.2:443  (chooses http/1.1)
 *                                      ──ALPN [h2, http/1.1]──▶ 198.18.0.2:8602 (no ALPN)
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { methods } from '@tproxy/client';
import { waitForExchange } from './lib/checks.js';
import { curlInNs } from './lib/curl.js';
import { startHelper, type HelperHandle } from './lib/helper.js';
import { e2ePreflight } from './lib/preflight.js';
import { waitForListen } from './lib/proc.js';
import { HELLO_BODY } from './lib/upstream-app.js';
import { upstreamServerArgv } from './lib/upstream.js';
import { world } from './lib/world.js';

const skip = await e2ePreflight(['curl', 'systemd-socket-activate', 'update-ca-certificates']);

const NO_ALPN_PORT = 8602;

describe('ALPN: h2-capable clients and upstreams that do not speak h2', { skip: skip ?? false, timeout: 300_000 }, () => {
  const w = world();
  let helper: HelperHandle;

  before(async () => {
    const { topo, certs, dir } = w;
    const origin = topo.spawn(
      topo.upstreamNs,
      upstreamServerArgv(['--cert', certs.goodCert, '--key', certs.goodKey, '--port', String(NO_ALPN_PORT), '--host', topo.addrs.good4, '--alpn', 'none']),
    );
    await origin.waitForOutput(/^listening /m, 20_000);
    await waitForListen(topo.upstreamNs, NO_ALPN_PORT, 'tcp', 20_000, { addresses: [topo.addrs.good4] });
    helper = await startHelper(topo, dir, 'helper', certs.caCert);
    const status = await helper.client.call(methods.captureStart, { ports: [443, NO_ALPN_PORT] });
    assert.equal(status.running, true);
  });

  after(async () => {
    await helper?.client.close().catch(() => undefined);
  });

  it('curl --http2 to an http/1.1-only origin negotiates http/1.1 and works', async () => {
    const r = await curlInNs(w.topo.clientNs, ['--fail', '--http2', '--resolve', `upstream.test:443:${w.topo.addrs.good4}`, '-w', '\n%{http_version}', 'https://upstream.test/hello?alpn=h1']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${HELLO_BODY}\n1.1`);
    const ex = await waitForExchange(helper.client, (e) => e.request.url === 'https://upstream.test/hello?alpn=h1');
    assert.equal(ex.state, 'complete');
    assert.equal(ex.tls.alpn, 'http/1.1');
    assert.deepEqual(ex.tls.clientAlpn, ['h2', 'http/1.1']);
    assert.equal(ex.request.httpVersion, '1.1');
  });

  it('curl --http2 to an origin without ALPN gets no ALPN and works over HTTP/1.1', async () => {
    const r = await curlInNs(w.topo.clientNs, ['--fail', '--http2', '-v', '--resolve', `upstream.test:${NO_ALPN_PORT}:${w.topo.addrs.good4}`, '-w', '\n%{http_version}', `https://upstream.test:${NO_ALPN_PORT}/hello?alpn=none`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${HELLO_BODY}\n1.1`);
    assert.match(r.stderr, /ALPN: server did not agree|server did not agree to a protocol/i, 'the proxy, like the origin, agreed no ALPN');
    const ex = await waitForExchange(helper.client, (e) => e.request.url === `https://upstream.test:${NO_ALPN_PORT}/hello?alpn=none`);
    assert.equal(ex.state, 'complete');
    assert.equal(ex.tls.alpn, undefined);
    assert.deepEqual(ex.tls.clientAlpn, ['h2', 'http/1.1']);
  });

  it('curl --http1.1 still gets http/1.1 from the same origin', async () => {
    const r = await curlInNs(w.topo.clientNs, ['--fail', '--http1.1', '--resolve', `upstream.test:443:${w.topo.addrs.good4}`, '-w', '\n%{http_version}', 'https://upstream.test/hello?alpn=only-h1']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${HELLO_BODY}\n1.1`);
    const ex = await waitForExchange(helper.client, (e) => e.request.url === 'https://upstream.test/hello?alpn=only-h1');
    assert.deepEqual(ex.tls.clientAlpn, ['http/1.1']);
  });
});
