/**
 * Upstream verification at least as strict as a browser, end to end. Origins in the upstream
 * namespace (198.18.0.2, one port per defect, started here) present certificates for upstream.test
 * that are each wrong in one way; the suite's bad origin (198.18.0.3:443) is self-signed. curl in
 * the client namespace trusts the system store (which holds our CA while capture runs), so it
 * completes its handshake with the helper; the helper must refuse the upstream, answer 502 with the
 * reason, and record it. The helper trusts the test upstream CA (--upstream-ca), never its own CA.
 *
 *   client ns: curl ──▶ helper ──TLS──▶ 198.18.0.2:86xx  (expired | not yet valid | wrong name |
 *                                                          untrusted CA | CN-only, no SAN)
 *                                 ──TLS──▶ 198.18.0.3:443  (self-signed)
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { methods } from '@tproxy/client';
import { makeBadCerts, type BadCertKind } from './lib/certs.js';
import { waitForExchange } from './lib/checks.js';
import { curlInNs } from './lib/curl.js';
import { startHelper, type HelperHandle } from './lib/helper.js';
import { e2ePreflight } from './lib/preflight.js';
import { waitForListen } from './lib/proc.js';
import { upstreamServerArgv } from './lib/upstream.js';
import { world } from './lib/world.js';

const skip = await e2ePreflight(['curl', 'systemd-socket-activate', 'update-ca-certificates']);

/** Each defect, its origin's port, and what the capture and the 502 body must say. */
const CASES: { kind: BadCertKind; port: number; code: string; words: RegExp }[] = [
  { kind: 'expired', port: 8611, code: 'CERT_HAS_EXPIRED', words: /certificate has expired/ },
  { kind: 'not-yet-valid', port: 8612, code: 'CERT_NOT_YET_VALID', words: /certificate is not yet valid/ },
  { kind: 'wrong-name', port: 8613, code: 'ERR_TLS_CERT_ALTNAME_INVALID', words: /does not match the server name/ },
  { kind: 'untrusted-ca', port: 8614, code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', words: /issuer is not trusted|not issued by a trusted CA/ },
  { kind: 'cn-only', port: 8615, code: 'ERR_TLS_CERT_ALTNAME_INVALID', words: /does not match the server name.*subjectAltName|no subjectAltName/ },
];

describe('strict upstream verification', { skip: skip ?? false, timeout: 300_000 }, () => {
  const w = world();
  let helper: HelperHandle;

  before(async () => {
    const { topo, certs, dir } = w;
    const bad = await makeBadCerts(certs);
    const origins = CASES.map((c) =>
      topo.spawn(topo.upstreamNs, upstreamServerArgv(['--cert', bad[c.kind].cert, '--key', bad[c.kind].key, '--port', String(c.port), '--host', topo.addrs.good4])),
    );
    await Promise.all(origins.map((o) => o.waitForOutput(/^listening /m, 20_000)));
    for (const c of CASES) await waitForListen(topo.upstreamNs, c.port, 'tcp', 20_000, { addresses: [topo.addrs.good4] });
    helper = await startHelper(topo, dir, 'helper', certs.caCert);
    const status = await helper.client.call(methods.captureStart, { ports: [443, ...CASES.map((c) => c.port)] });
    assert.equal(status.running, true);
  });

  after(async () => {
    await helper?.client.close().catch(() => undefined);
  });

  for (const c of CASES) {
    it(`refuses an upstream whose certificate is ${c.kind}: 502 with the reason, recorded`, async () => {
      const url = `https://upstream.test:${c.port}/hello?verify=${c.kind}`;
      const r = await curlInNs(w.topo.clientNs, ['--resolve', `upstream.test:${c.port}:${w.topo.addrs.good4}`, '-w', '\n%{http_code}', url]);
      assert.equal(r.code, 0, `curl's handshake with the helper succeeded: ${r.stderr}`);
      assert.match(r.stdout, /\n502$/, 'a 502, never the origin body');
      assert.match(r.stdout, c.words);
      const ex = await waitForExchange(helper.client, (e) => e.request.url === url && e.state !== 'in-flight');
      assert.equal(ex.state, 'error');
      assert.equal(ex.error?.kind, 'upstream-tls');
      assert.equal(ex.error?.code, c.code, ex.error?.message);
      assert.match(ex.error?.message ?? '', c.words);
      assert.equal(ex.response?.status, 502);
    });
  }

  it('refuses the self-signed origin', async () => {
    const url = 'https://upstream.test/hello?verify=self-signed';
    const r = await curlInNs(w.topo.clientNs, ['--resolve', `upstream.test:443:${w.topo.addrs.bad4}`, '-w', '\n%{http_code}', url]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /self-signed certificate[\s\S]*\n502$/);
    const ex = await waitForExchange(helper.client, (e) => e.request.url === url && e.state !== 'in-flight');
    assert.equal(ex.error?.code, 'DEPTH_ZERO_SELF_SIGNED_CERT');
  });

  it('still reaches the good origin, so the failures above are the certificates', async () => {
    const r = await curlInNs(w.topo.clientNs, ['--fail', '--resolve', `upstream.test:443:${w.topo.addrs.good4}`, 'https://upstream.test/hello?verify=good']);
    assert.equal(r.code, 0, r.stderr);
  });
});
