/**
 * The upstream origin's endpoints, checked directly over loopback (no root, no namespaces) so that
 * a helper e2e failure can never be a broken origin. Runs the real CLI (lib/upstream-server.ts)
 * on 127.0.0.1 with a free port and the good certificate from lib/certs.ts, and talks to it with
 * Node's https client trusting only the test CA.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import type { IncomingHttpHeaders } from 'node:http';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { after, before, test } from 'node:test';
import { makeUpstreamCa, type UpstreamCerts } from './lib/certs.js';
import { patternSha256 } from './lib/pattern.js';
import { type ProcHandle, spawnProcess } from './lib/proc.js';
import { CODED_BODY_TEXT, ECHO_MAX_BYTES, HELLO_BODY, type SeenRequest } from './lib/upstream-app.js';
import { upstreamServerArgv } from './lib/upstream.js';
import { UPSTREAM_NAME } from './lib/topology.js';

let dir: string;
let certs: UpstreamCerts;
let server: ProcHandle;
let port: number;

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  sawContinue: boolean;
}

function call(
  method: string,
  path: string,
  opts: { body?: Buffer; headers?: Record<string, string>; waitForContinue?: boolean } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    let sawContinue = false;
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        servername: UPSTREAM_NAME,
        ca: certs.caPem,
        agent: false,
        headers: opts.headers,
        timeout: 20_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), sawContinue }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on('error', reject);
    if (opts.waitForContinue) {
      req.on('continue', () => {
        sawContinue = true;
        req.end(opts.body);
      });
      req.flushHeaders();
    } else {
      req.end(opts.body);
    }
  });
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tproxy-upstream-'));
  certs = await makeUpstreamCa(dir);
  server = spawnProcess(upstreamServerArgv(['--cert', certs.goodCert, '--key', certs.goodKey, '--host', '127.0.0.1', '--port', '0']));
  await server.waitForOutput(/^listening 127\.0\.0\.1:\d+/m, 20_000);
  port = Number(/^listening 127\.0\.0\.1:(\d+)/m.exec(server.output().stdout)?.[1]);
});

after(async () => {
  await server?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('GET and HEAD /hello', async () => {
  const get = await call('GET', '/hello');
  assert.equal(get.status, 200);
  assert.equal(get.body.toString(), HELLO_BODY);
  const head = await call('HEAD', '/hello');
  assert.equal(head.status, 200);
  assert.equal(head.headers['content-length'], String(HELLO_BODY.length));
  assert.equal(head.body.length, 0);
  assert.equal((await call('POST', '/hello')).status, 405);
  assert.equal((await call('GET', '/nope')).status, 404);
});

test('POST/PUT /echo returns the body with its size and digest, also after 100-continue', async () => {
  const body = Buffer.from('x'.repeat(100_000));
  for (const method of ['POST', 'PUT']) {
    const r = await call(method, '/echo', { body, headers: { 'content-type': 'text/plain' } });
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, body);
    assert.equal(r.headers['x-request-bytes'], String(body.length));
    assert.equal(r.headers['x-request-sha256'], sha256(body));
    assert.equal(r.headers['content-type'], 'text/plain');
  }
  const c = await call('POST', '/echo', {
    body,
    headers: { expect: '100-continue', 'content-length': String(body.length) },
    waitForContinue: true,
  });
  assert.ok(c.sawContinue, 'server sent 100 Continue');
  assert.equal(c.headers['x-request-sha256'], sha256(body));
  assert.ok(ECHO_MAX_BYTES >= 64 * 1024 * 1024);
});

test('POST /upload digests a streamed body', async () => {
  const body = Buffer.alloc(8 * 1024 * 1024, 7);
  const r = await call('POST', '/upload', { body });
  assert.equal(r.status, 200);
  assert.deepEqual(JSON.parse(r.body.toString()), { bytes: body.length, sha256: sha256(body) });
});

test('/echo-headers reports headers in received case and order, SNI and ALPN', async () => {
  const r = await call('GET', '/echo-headers?q=1', { headers: { 'X-Mixed-Case': 'a', 'x-second': 'b' } });
  const seen = JSON.parse(r.body.toString()) as SeenRequest;
  assert.equal(seen.method, 'GET');
  assert.equal(seen.url, '/echo-headers?q=1');
  assert.equal(seen.headers['x-mixed-case'], 'a');
  const names = seen.rawHeaders.filter((_, i) => i % 2 === 0);
  assert.ok(names.indexOf('X-Mixed-Case') < names.indexOf('x-second'));
  assert.equal(seen.tls.servername, UPSTREAM_NAME);
  assert.equal(seen.remote.address, '127.0.0.1');
});

test('/bytes streams N pattern bytes with content-length; /chunked without', async () => {
  const n = 5 * 65536 + 17;
  const bytes = await call('GET', `/bytes?n=${n}&seed=abc`);
  assert.equal(bytes.status, 200);
  assert.equal(bytes.headers['content-length'], String(n));
  assert.equal(sha256(bytes.body), patternSha256(n, 'abc'));
  const chunked = await call('GET', `/chunked?n=${n}&seed=abc`);
  assert.equal(chunked.headers['transfer-encoding'], 'chunked');
  assert.equal(chunked.headers['content-length'], undefined);
  assert.equal(sha256(chunked.body), patternSha256(n, 'abc'));
  const head = await call('HEAD', `/bytes?n=${2 ** 30}`);
  assert.equal(head.headers['content-length'], String(2 ** 30));
  assert.equal((await call('GET', '/bytes?n=-1')).status, 400);
});

test('/status, /set-cookie and /delay', async () => {
  for (const code of [204, 304]) {
    const r = await call('GET', `/status/${code}`);
    assert.equal(r.status, code);
    assert.equal(r.body.length, 0);
  }
  const e = await call('GET', '/status/503');
  assert.equal(e.status, 503);
  assert.equal(e.body.toString(), 'status 503\n');
  const cookies = await call('GET', '/set-cookie');
  assert.deepEqual(cookies.headers['set-cookie'], ['a=1; Path=/; HttpOnly', 'b=2; Path=/; Secure; SameSite=Lax']);
  const t0 = performance.now();
  const d = await call('GET', '/delay?ms=200');
  assert.equal(d.body.toString(), 'delayed 200 ms\n');
  assert.ok(performance.now() - t0 >= 190);
});

test('/sse sends n events interval ms apart; /gzip, /br, /zstd send CODED_BODY_TEXT coded', async () => {
  const t0 = performance.now();
  const sse = await call('GET', '/sse?n=3&interval=100');
  assert.equal(sse.headers['content-type'], 'text/event-stream');
  const blocks = sse.body.toString().split('\n\n').filter(Boolean);
  assert.deepEqual(
    blocks.map((b) => (JSON.parse(b.split('\n')[2]!.slice('data: '.length)) as { i: number }).i),
    [0, 1, 2],
  );
  assert.ok(performance.now() - t0 >= 190, 'two intervals passed');
  assert.equal((await call('GET', '/sse?n=0&interval=1')).status, 400);
  const text = Buffer.from(CODED_BODY_TEXT);
  const gz = await call('GET', '/gzip');
  assert.equal(gz.headers['content-encoding'], 'gzip');
  assert.deepEqual(gunzipSync(gz.body), text);
  const br = await call('GET', '/br');
  assert.deepEqual(brotliDecompressSync(br.body), text);
  const zstd = await call('GET', '/zstd');
  assert.equal(zstd.headers['content-encoding'], 'zstd');
  assert.deepEqual(zstd.body.subarray(0, 4), Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), 'a zstd frame');
});

test('logs a line per request and exits 0 on SIGTERM', async () => {
  assert.match(server.output().stdout, /sni=upstream\.test GET \/hello HTTP\/1\.1 200/);
  const status = await server.stop();
  assert.equal(status.code, 0, server.output().stderr);
});
