/**
 * Request smuggling through the real helper: a raw TLS client (node:tls, trusting the system store
 * where the helper's CA is installed) in the client namespace sends each ambiguous or malformed
 * request to 198.18.0.2:443, which the helper intercepts. Each must be answered 400 by the helper,
 * and the origin's own request log (one line per request it parsed) must show that none of them,
 * nor the request hidden behind them, ever reached it. A well-formed request on the same path
 * afterwards proves the log is live.
 *
 *   client ns: node tls ──raw bytes──▶ nft TPROXY ▶ helper :8443 ──(only valid requests)──▶ upstream ns :443 (log)
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { methods } from '@tproxy/client';
import { makeUpstreamCa, type UpstreamCerts } from './lib/certs.js';
import { waitForExchange } from './lib/checks.js';
import { startHelper, type HelperHandle } from './lib/helper.js';
import { e2ePreflight } from './lib/preflight.js';
import { runInNs } from './lib/proc.js';
import { createTopology, type Topology } from './lib/topology.js';
import { startUpstreams, type Upstreams } from './lib/upstream.js';

const skip = await e2ePreflight(['systemd-socket-activate', 'update-ca-certificates']);

const H = 'Host: upstream.test\r\n';

/** Each attempt's paths contain `smuggle-<i>`; the origin must never log that string. */
const ATTEMPTS: { name: string; payload: (i: number) => string }[] = [
  { name: 'CL.TE', payload: (i) => `POST /smuggle-${i} HTTP/1.1\r\n${H}Content-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggle-${i}-hidden HTTP/1.1\r\n${H}\r\n` },
  { name: 'TE.CL', payload: (i) => `POST /smuggle-${i} HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGET /smuggle-${i}-hidden HTTP/1.1\r\n${H}\r\n0\r\n\r\n` },
  { name: 'two Content-Length', payload: (i) => `POST /smuggle-${i} HTTP/1.1\r\n${H}Content-Length: 0\r\nContent-Length: 40\r\n\r\nGET /smuggle-${i}-hidden HTTP/1.1\r\n${H}\r\n` },
  { name: 'obfuscated Transfer-Encoding', payload: (i) => `POST /smuggle-${i} HTTP/1.1\r\n${H}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n` },
  { name: 'Transfer-Encoding with a space before the colon', payload: (i) => `POST /smuggle-${i} HTTP/1.1\r\n${H}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n` },
  { name: 'malformed chunk size', payload: (i) => `POST /smuggle-${i} HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n-1\r\nGET /smuggle-${i}-hidden HTTP/1.1\r\n\r\n` },
  { name: 'invalid header name', payload: (i) => `GET /smuggle-${i} HTTP/1.1\r\n${H}X Bad: 1\r\n\r\n` },
  { name: 'NUL in a header value', payload: (i) => `GET /smuggle-${i} HTTP/1.1\r\n${H}X-A: a\x00b\r\n\r\n` },
  { name: 'obs-fold', payload: (i) => `GET /smuggle-${i} HTTP/1.1\r\n${H}X-A: a\r\n\tb\r\n\r\n` },
  { name: 'two Host fields', payload: (i) => `GET /smuggle-${i} HTTP/1.1\r\n${H}Host: other.test\r\n\r\n` },
  { name: 'Transfer-Encoding in HTTP/1.0', payload: (i) => `POST /smuggle-${i} HTTP/1.0\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n` },
];

/** Node script for the client namespace: sends each payload on its own TLS connection, prints replies as JSON. */
function rawClientScript(payloads: string[]): string {
  return `
const tls = require('node:tls');
const payloads = ${JSON.stringify(payloads)};
const one = (p) => new Promise((resolve) => {
  let got = '';
  const s = tls.connect({ host: '198.18.0.2', port: 443, servername: 'upstream.test', ALPNProtocols: ['http/1.1'] }, () => s.write(p));
  s.on('data', (d) => (got += d.toString('latin1')));
  s.on('error', (e) => (got += '[error ' + e.message + ']'));
  s.on('close', () => resolve(got));
  setTimeout(() => s.destroy(), 10000);
});
(async () => { const out = []; for (const p of payloads) out.push(await one(p)); console.log(JSON.stringify(out)); })();
`;
}

describe('request smuggling is refused before the upstream', { skip: skip ?? false, timeout: 300_000 }, () => {
  let dir: string;
  let certs: UpstreamCerts;
  let topo: Topology;
  let upstreams: Upstreams;
  let helper: HelperHandle;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tproxy-e2e-smuggling-'));
    certs = await makeUpstreamCa(dir);
    topo = await createTopology();
    // Not lib/world.ts: this file needs the origin's process handle to read its request log.
    upstreams = await startUpstreams(topo, certs);
    helper = await startHelper(topo, dir, 'helper', certs.caCert);
    assert.equal((await helper.client.call(methods.captureStart, {})).running, true);
  });

  after(async () => {
    await helper?.client.close().catch(() => undefined);
    await topo?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('answers 400 to each attempt and the origin never sees any of them', async () => {
    const payloads = ATTEMPTS.map((a, i) => a.payload(i));
    // Last, a valid request: its log line shows the origin log works and is up to date.
    payloads.push(`GET /hello?after-smuggling HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
    const r = await runInNs(topo.clientNs, [process.execPath, '--use-openssl-ca', '-e', rawClientScript(payloads)], { timeoutMs: 120_000 });
    assert.equal(r.code, 0, r.stderr);
    const replies: string[] = JSON.parse(r.stdout);
    ATTEMPTS.forEach((a, i) => {
      assert.match(replies[i] ?? '', /^HTTP\/1\.1 400 Bad Request\r\n/, `${a.name}: ${JSON.stringify(replies[i])}`);
      assert.equal((replies[i] ?? '').match(/HTTP\/1\.1 \d{3}/g)?.length, 1, `${a.name}: one response only`);
    });
    assert.match(replies[ATTEMPTS.length] ?? '', /^HTTP\/1\.1 200 OK\r\n/);

    await upstreams.good.waitForOutput(/GET \/hello\?after-smuggling HTTP\/1\.1 200/, 10_000);
    const log = upstreams.good.output().stdout;
    assert.doesNotMatch(log, /smuggle-/, `the origin saw a smuggling attempt:\n${log}`);

    // The ones refused after the head was parsed are recorded as client-protocol errors.
    const twoHosts = ATTEMPTS.findIndex((a) => a.name === 'two Host fields');
    const ex = await waitForExchange(helper.client, (e) => e.request.url.includes(`/smuggle-${twoHosts}`));
    assert.equal(ex.state, 'error');
    assert.equal(ex.error?.kind, 'client-protocol');
    assert.equal(ex.response?.status, 400);
  });
});
