/**
 * HTTP/2 through the real helper: real curl --http2, a Node http2 client with 100 concurrent
 * streams on one connection, and real @grpc/grpc-js unary and server-streaming calls, all in the
 * client namespace, intercepted by real nftables rules and decrypted by the helper, against an
 * h2 origin (lib/h2-upstream-app.ts, ALPN h2 + http/1.1, gRPC on 50051) in the upstream namespace.
 * We assert what the clients got and what the helper captured: one exchange per stream, HTTP
 * version 2, status, trailers (grpc-status) and reset codes.
 *
 *   client ns: curl / node / grpc-js ──SYN to 198.18.0.5:443|50051──▶ nft ▶ TPROXY ▶ helper :8443
 *        helper (ALPN learnt from the origin: h2) ──(SO_MARK, TLS verified, pooled h2 session)──▶ upstream ns
 *
 * These need the engine to offer h2 to clients when the origin chose it (ALPN learning, engine.ts).
 */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { methods, type Exchange } from '@tproxy/client';
import type { UpstreamCerts } from './lib/certs.js';
import { waitForExchange } from './lib/checks.js';
import { curlInNs } from './lib/curl.js';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { H2_GRPC_PORT } from './lib/h2-upstream-app.js';
import { patternBytes, patternSha256 } from './lib/pattern.js';
import { startHelper, type HelperHandle } from './lib/helper.js';
import { e2ePreflight } from './lib/preflight.js';
import { runInNs, waitForListen } from './lib/proc.js';
import type { Topology } from './lib/topology.js';
import { HELLO_BODY } from './lib/upstream-app.js';
import { world } from './lib/world.js';

const skip = await e2ePreflight(['curl', 'systemd-socket-activate', 'update-ca-certificates']);

const H2_SERVER = fileURLToPath(new URL('./lib/h2-upstream-server.ts', import.meta.url));
const H2_CLIENT = fileURLToPath(new URL('./lib/h2-client.ts', import.meta.url));
const tsx = import.meta.resolve('tsx');

interface Answer {
  status: number;
  body: string;
  trailers: string[] | null;
  rstCode: number;
}
interface StreamsOut {
  alpn: string;
  localPort: number;
  answers: { status: number; body: string }[];
}
interface GrpcOut {
  unary: { value: unknown; trailers: Record<string, string> };
  stream: { messages: unknown[]; code: number; trailers: Record<string, string> };
}

/** Runs a lib/h2-client.ts subcommand in the client namespace; its one JSON line. */
async function h2Client<T>(topo: Topology, args: string[]): Promise<T> {
  const r = await runInNs(topo.clientNs, [process.execPath, '--use-openssl-ca', '--import', tsx, H2_CLIENT, ...args], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, `h2-client ${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as T;
}

/** The URL as a browser would print it: Node's http2 client sends `:authority upstream.test:443`. */
function href(e: Exchange): string {
  return new URL(e.request.url).href;
}

/** Every finished exchange matching `match`, once there are `n` of them; bounded. */
async function waitForExchanges(helper: HelperHandle, match: (e: Exchange) => boolean, n: number, timeoutMs = 20_000): Promise<Exchange[]> {
  const deadline = Date.now() + timeoutMs;
  let found: Exchange[] = [];
  for (let i = 0; i < 400 && Date.now() < deadline; i++) {
    const { exchanges } = await helper.client.call(methods.exchangesList, { limit: 500 });
    found = exchanges.filter((e) => match(e) && e.state !== 'in-flight');
    if (found.length >= n) return found;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`only ${found.length} of ${n} matching exchanges finished`);
}

describe('HTTP/2 through the helper', { skip: skip ?? false, timeout: 600_000 }, () => {
  const w = world();
  let certs: UpstreamCerts;
  let topo: Topology;
  let helper: HelperHandle;
  let h2v4: string;
  let h2v6: string;

  before(async () => {
    ({ certs, topo } = w);
    ({ h2v4, h2v6 } = topo.addrs);
    const origin = topo.spawn(topo.upstreamNs, [process.execPath, '--import', tsx, H2_SERVER, '--cert', certs.goodCert, '--key', certs.goodKey, '--host', h2v4, '--host', h2v6]);
    await origin.waitForOutput(/^listening /m, 20_000);
    await waitForListen(topo.upstreamNs, 443, 'tcp', 20_000, { addresses: [h2v4, h2v6] });
    await waitForListen(topo.upstreamNs, H2_GRPC_PORT, 'tcp', 20_000, { addresses: [h2v4, h2v6] });
    helper = await startHelper(topo, w.dir, 'helper', certs.caCert);
    const status = await helper.client.call(methods.captureStart, { ports: [443, H2_GRPC_PORT] });
    assert.equal(status.running, true);
  });

  after(async () => {
    await helper?.client.close().catch(() => undefined);
  });

  it('curl --http2 negotiates h2 through the proxy (v4 and v6), one exchange with HTTP version 2', async () => {
    for (const [addr, host] of [[h2v4, h2v4], [h2v6, `[${h2v6}]`]] as const) {
      const r = await curlInNs(topo.clientNs, ['--fail', '--http2', '--resolve', `upstream.test:443:${host}`, '-w', '\\n%{http_version}', `https://upstream.test/hello?via=${addr}`]);
      assert.equal(r.code, 0, r.stderr);
      const cut = r.stdout.lastIndexOf('\n');
      const [body, version] = [r.stdout.slice(0, cut), r.stdout.slice(cut + 1)];
      assert.equal(body, HELLO_BODY);
      assert.equal(version, '2', 'curl spoke HTTP/2 to the proxy');
      const ex = await waitForExchange(helper.client, (e) => e.request.url === `https://upstream.test/hello?via=${addr}`);
      assert.equal(ex.state, 'complete', JSON.stringify(ex.error));
      assert.equal(ex.request.httpVersion, '2');
      assert.equal(ex.response?.httpVersion, '2');
      assert.equal(ex.response?.status, 200);
      assert.equal(ex.tls.alpn, 'h2');
      assert.equal(ex.server.address, addr);
      assert.equal(typeof ex.streamId, 'number');
      assert.ok(ex.request.headers.every(([k]) => !k.startsWith(':')), 'pseudo-headers are not listed as fields');
    }
  });

  it('streams 64 MiB down and 16 MiB up over h2 (curl), bodies intact, capture capped', async () => {
    const MIB = 1024 * 1024;
    const GET = ['--http2', '--resolve', `upstream.test:443:${h2v4}`];
    const down = await curlInNs(topo.clientNs, ['--fail', ...GET, '-o', '-', `https://upstream.test/bytes?n=${64 * MIB}&seed=h2down`], { timeoutMs: 120_000 });
    assert.equal(down.code, 0, down.stderr);
    assert.equal(down.sha256, patternSha256(64 * MIB, 'h2down'));
    const file = join(w.dir, 'h2-up.bin');
    await writeFile(file, patternBytes(16 * MIB, 'h2up'));
    const up = await curlInNs(topo.clientNs, ['--fail', ...GET, '--data-binary', `@${file}`, '-H', 'content-type: application/octet-stream', 'https://upstream.test/upload'], { timeoutMs: 120_000 });
    assert.equal(up.code, 0, up.stderr);
    assert.deepEqual(JSON.parse(up.stdout), { bytes: 16 * MIB, sha256: patternSha256(16 * MIB, 'h2up') });
    const downEx = await waitForExchange(helper.client, (e) => href(e) === `https://upstream.test/bytes?n=${64 * MIB}&seed=h2down`);
    assert.equal(downEx.state, 'complete');
    assert.deepEqual(downEx.response?.body, { size: 64 * MIB, captured: 64 * 1024, truncated: true });
    const upEx = await waitForExchange(helper.client, (e) => href(e) === 'https://upstream.test/upload' && e.request.httpVersion === '2');
    assert.deepEqual(upEx.request.body, { size: 16 * MIB, captured: 64 * 1024, truncated: true });
  });

  it('relays 100 concurrent streams of one Node http2 connection, one exchange per stream', async () => {
    const out = await h2Client<StreamsOut>(topo, ['streams', h2v4, '100']);
    assert.equal(out.alpn, 'h2');
    assert.equal(out.answers.length, 100);
    assert.ok(out.answers.every((a) => a.status === 200 && a.body === HELLO_BODY));
    const exchanges = await waitForExchanges(helper, (e) => e.client.port === out.localPort && href(e).startsWith('https://upstream.test/hello?i='), 100);
    assert.equal(exchanges.length, 100);
    assert.equal(new Set(exchanges.map((e) => e.streamId)).size, 100, 'each stream is its own exchange');
    assert.ok(exchanges.every((e) => e.state === 'complete' && e.request.httpVersion === '2' && e.response?.status === 200));
  });

  it('carries request and response trailers and records them', async () => {
    const out = await h2Client<Answer>(topo, ['trailers', h2v4]);
    assert.equal(out.status, 200);
    const seen = JSON.parse(out.body) as { bytes: number; trailers: string[] };
    assert.equal(seen.bytes, 12);
    assert.deepEqual(seen.trailers, ['x-client-trailer', 'sent']);
    assert.deepEqual(out.trailers, ['x-body-bytes', '12', 'x-origin-trailer', 'yes']);
    const ex = await waitForExchange(helper.client, (e) => href(e) === 'https://upstream.test/h2/trailers');
    assert.deepEqual(ex.request.trailers, [['x-client-trailer', 'sent']]);
    assert.deepEqual(ex.response?.trailers, [['x-body-bytes', '12'], ['x-origin-trailer', 'yes']]);
  });

  it('passes an upstream RST_STREAM to the client with its code and records it', async () => {
    const out = await h2Client<Answer>(topo, ['reset', h2v4, '11']);
    assert.equal(out.status, 200);
    assert.equal(out.body, 'part.');
    assert.equal(out.rstCode, 11, 'ENHANCE_YOUR_CALM reached the client');
    const ex = await waitForExchange(helper.client, (e) => href(e) === 'https://upstream.test/h2/reset?code=11');
    assert.equal(ex.state, 'error');
    assert.equal(ex.error?.kind, 'upstream-aborted');
    assert.equal(ex.error?.code, 'ENHANCE_YOUR_CALM');
  });

  it('completes a gRPC unary and a server-streaming call (@grpc/grpc-js), with grpc-status captured', async () => {
    const out = await h2Client<GrpcOut>(topo, ['grpc', h2v4, String(H2_GRPC_PORT)]);
    assert.deepEqual(out.unary.value, { echo: 'unary hello', n: 1 });
    assert.equal(out.unary.trailers['x-unary-trailer'], 'done');
    assert.equal(out.stream.code, 0);
    assert.deepEqual(out.stream.messages, [0, 1, 2, 3, 4].map((i) => ({ echo: 'stream hello', i })));
    assert.equal(out.stream.trailers['x-stream-trailer'], 'done');

    for (const [path, trailer] of [['Unary', 'x-unary-trailer'], ['Stream', 'x-stream-trailer']] as const) {
      // grpc-js sends :authority upstream.test (grpc.default_authority), so the URL has no port.
      const ex = await waitForExchange(helper.client, (e) => e.server.port === H2_GRPC_PORT && e.request.url.endsWith(`/tproxy.test.Echo/${path}`));
      assert.equal(ex.state, 'complete');
      assert.equal(ex.request.httpVersion, '2');
      assert.equal(ex.response?.status, 200);
      assert.ok(ex.request.headers.some(([k, v]) => k === 'te' && v === 'trailers'));
      assert.ok(ex.response?.trailers?.some(([k, v]) => k === 'grpc-status' && v === '0'), JSON.stringify(ex.response?.trailers));
      assert.ok(ex.response?.trailers?.some(([k, v]) => k === trailer && v === 'done'));
    }
  });
});
