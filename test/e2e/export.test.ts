/**
 * exchanges.export / exchanges.clear / filtered subscriptions end to end: the real helper
 * (socket-activated in the client namespace of lib/topology.ts) intercepts real curl requests to
 * the upstream namespace; the real tproxyctl exports them as HAR 1.2 and JSON Lines (whole and
 * filtered), tails them with a filter, and clears the buffer; a TproxyClient subscribed with a
 * filter receives only matching notifications, then `exchanges.cleared`.
 *
 *   client ns: curl ──SYN to 198.18.0.2:443──▶ nft ▶ TPROXY ▶ helper :8443 ──▶ upstream ns :443
 *   test process: tproxyctl export|clear|tail, TproxyClient ──▶ helper socket (a file in the sandbox)
 */
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TproxyClient, methods, type Exchange } from '@tproxy/client';
import { waitForExchange } from './lib/checks.js';
import { curlInNs } from './lib/curl.js';
import { rssBytes, startHelper, tproxyctl, type HelperHandle } from './lib/helper.js';
import { e2ePreflight } from './lib/preflight.js';
import type { Topology } from './lib/topology.js';
import { HELLO_BODY } from './lib/upstream-app.js';
import { world } from './lib/world.js';

const skip = await e2ePreflight(['curl', 'systemd-socket-activate', 'update-ca-certificates']);

const GOOD = ['--resolve', 'upstream.test:443:198.18.0.2'];
const FORM = 'name=tproxy&lang=ts&n=42';

interface HarLike {
  log: {
    version: string;
    creator: { name: string; version: string };
    entries: {
      startedDateTime: string;
      time: number;
      _id: number;
      request: { method: string; url: string; httpVersion: string; headers: unknown[]; cookies: unknown[]; queryString: unknown[]; headersSize: number; bodySize: number; postData?: { mimeType: string; text: string } };
      response: { status: number; statusText: string; httpVersion: string; headers: unknown[]; cookies: unknown[]; content: { size: number; mimeType: string; text?: string }; redirectURL: string; headersSize: number; bodySize: number };
      cache: object;
      timings: { send: number; wait: number; receive: number };
    }[];
  };
}

/** The HAR 1.2 required fields of every entry, by type. */
function assertHar12(har: HarLike): void {
  assert.equal(har.log.version, '1.2');
  assert.equal(har.log.creator.name, 'tproxy-helper');
  for (const e of har.log.entries) {
    assert.ok(!Number.isNaN(Date.parse(e.startedDateTime)));
    assert.ok(typeof e.time === 'number' && e.time >= 0);
    const q = e.request;
    assert.ok(typeof q.method === 'string' && typeof q.url === 'string' && /^HTTP\//.test(q.httpVersion));
    assert.ok(Array.isArray(q.headers) && Array.isArray(q.cookies) && Array.isArray(q.queryString));
    assert.ok(typeof q.headersSize === 'number' && typeof q.bodySize === 'number');
    const s = e.response;
    assert.ok(typeof s.status === 'number' && typeof s.statusText === 'string' && typeof s.httpVersion === 'string');
    assert.ok(Array.isArray(s.headers) && Array.isArray(s.cookies) && typeof s.redirectURL === 'string');
    assert.ok(typeof s.content.size === 'number' && typeof s.content.mimeType === 'string');
    assert.ok(typeof e.cache === 'object' && e.timings.send >= 0 && e.timings.wait >= 0 && e.timings.receive >= 0);
  }
}

interface JsonlRecord {
  exchange: Exchange;
  requestBody?: string;
  responseBody?: string;
}

const jsonl = (text: string): JsonlRecord[] =>
  text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as JsonlRecord);

describe('export, clear and filters end to end', { skip: skip ?? false, timeout: 600_000 }, () => {
  const w = world();
  let topo: Topology;
  let helper: HelperHandle;
  let dir: string;
  const ids: Record<string, number> = {};

  async function curl(args: readonly string[]): Promise<string> {
    const r = await curlInNs(topo.clientNs, ['--http1.1', ...GOOD, ...args]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout;
  }

  before(async () => {
    ({ dir, topo } = w);
    helper = await startHelper(topo, dir, 'helper', w.certs.caCert);
    assert.equal((await helper.client.call(methods.captureStart, {})).running, true);
    assert.equal(await curl(['https://upstream.test/hello']), HELLO_BODY);
    await curl(['-H', 'Content-Type: application/x-www-form-urlencoded', '--data-binary', FORM, 'https://upstream.test/echo']);
    await curl(['-o', '/dev/null', 'https://upstream.test/status/404']);
    await curl(['-o', '/dev/null', 'https://upstream.test/status/503']);
    for (const [name, url, method] of [
      ['hello', 'https://upstream.test/hello', 'GET'],
      ['echo', 'https://upstream.test/echo', 'POST'],
      ['404', 'https://upstream.test/status/404', 'GET'],
      ['503', 'https://upstream.test/status/503', 'GET'],
    ] as const) {
      ids[name] = (await waitForExchange(helper.client, (e) => e.request.url === url && e.request.method === method)).id;
    }
  });

  after(async () => {
    await helper?.client.close().catch(() => undefined);
  });

  it('tproxyctl export --format har -o FILE: one valid HAR 1.2 file (0600) with the requests and their bodies', async () => {
    const file = join(dir, 'all.har');
    const r = await tproxyctl(helper.socketPath, ['export', '--format', 'har', '--output', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`^exported 4 exchanges \\(.+, HAR 1\\.2\\) to ${file}\\n$`));
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    const har = JSON.parse(await readFile(file, 'utf8')) as HarLike;
    assertHar12(har);
    assert.deepEqual(har.log.entries.map((e) => e._id), [ids.hello, ids.echo, ids['404'], ids['503']], 'oldest first');
    const byId = new Map(har.log.entries.map((e) => [e._id, e]));
    const hello = byId.get(ids.hello!)!;
    assert.equal(hello.request.url, 'https://upstream.test/hello');
    assert.equal(hello.response.status, 200);
    assert.equal(hello.response.content.text, HELLO_BODY);
    const echo = byId.get(ids.echo!)!;
    assert.equal(echo.request.method, 'POST');
    assert.deepEqual(echo.request.postData, { mimeType: 'application/x-www-form-urlencoded', text: FORM });
    assert.equal(echo.response.content.text, FORM, 'the echoed body, decrypted');
    assert.equal(byId.get(ids['404']!)!.response.status, 404);
    assert.equal(byId.get(ids['503']!)!.response.status, 503);
  });

  it('tproxyctl export --format jsonl: one exchanges.get-shaped line per exchange, bodies base64', async () => {
    const r = await tproxyctl(helper.socketPath, ['--json', 'export', '--format', 'jsonl']);
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stderr) as { count: number; bytes: number; format: string; output: string };
    assert.equal(summary.count, 4);
    assert.equal(summary.bytes, Buffer.byteLength(r.stdout));
    assert.equal(summary.output, 'stdout');
    const records = jsonl(r.stdout);
    assert.deepEqual(records.map((x) => x.exchange.id), [ids.hello, ids.echo, ids['404'], ids['503']]);
    const echo = records[1]!;
    assert.equal(Buffer.from(echo.requestBody!, 'base64').toString(), FORM);
    assert.equal(Buffer.from(echo.responseBody!, 'base64').toString(), FORM);
    assert.equal(Buffer.from(records[0]!.responseBody!, 'base64').toString(), HELLO_BODY);
    // The same bytes exchanges.get returns.
    const got = await helper.client.call(methods.exchangesGet, { id: ids.echo! });
    assert.deepEqual(echo, { exchange: got.exchange, requestBody: got.requestBody, responseBody: got.responseBody });
  });

  it('filters: status range, host glob + method, URL text; list pages by the same filter', async () => {
    const errors = await tproxyctl(helper.socketPath, ['export', '--format', 'jsonl', '--status', '400-599', '--no-bodies']);
    assert.equal(errors.code, 0, errors.stderr);
    const errorRecords = jsonl(errors.stdout);
    assert.deepEqual(errorRecords.map((x) => x.exchange.response?.status), [404, 503]);
    assert.ok(errorRecords.every((x) => Object.keys(x).join() === 'exchange'), '--no-bodies leaves bodies out');

    const posts = await tproxyctl(helper.socketPath, ['export', '--format', 'har', '--host', '*.TEST', '--method', 'post']);
    assert.equal(posts.code, 0, posts.stderr);
    assert.deepEqual((JSON.parse(posts.stdout) as HarLike).log.entries.map((e) => e._id), [ids.echo]);

    const byUrl = await tproxyctl(helper.socketPath, ['export', '--format', 'jsonl', '--url', 'STATUS/5']);
    assert.deepEqual(jsonl(byUrl.stdout).map((x) => x.exchange.id), [ids['503']]);

    const none = await tproxyctl(helper.socketPath, ['export', '--format', 'har', '--host', 'nothing.example']);
    assert.equal(none.code, 0, none.stderr);
    assert.deepEqual((JSON.parse(none.stdout) as HarLike).log.entries, [], 'no match is still a valid document');

    const page1 = await helper.client.call(methods.exchangesList, { limit: 1, filter: { method: 'GET' } });
    assert.deepEqual(page1.exchanges.map((e) => e.id), [ids['503']]);
    const page2 = await helper.client.call(methods.exchangesList, { limit: 5, cursor: page1.nextCursor!, filter: { method: 'GET' } });
    assert.deepEqual(page2.exchanges.map((e) => e.id), [ids['404'], ids.hello]);
    assert.equal(page2.nextCursor, undefined);
  });

  it('a filtered subscriber (TproxyClient and tproxyctl tail) receives only matching notifications', async () => {
    const sub = await TproxyClient.connect({ socketPath: helper.socketPath });
    const seen: [string, Exchange][] = [];
    sub.onExchange((event, ex) => seen.push([event, ex]));
    await sub.call(methods.exchangesSubscribe, { filter: { status: { min: 500, max: 599 } } });
    // tail counts only matching completions: with --count 1, its one line must be a 503.
    const tail = tproxyctl(helper.socketPath, ['--json', 'tail', '--count', '1', '--status', '5xx', '--url', '/status/', '--timeout', '60'], 90_000);
    let tailDone = false;
    void tail.then(() => (tailDone = true));
    try {
      // Non-matching requests first, then a matching one; notifications keep their order on a
      // connection, so when the 503's completion arrives the others would already have arrived.
      // Repeated (bounded) because tail subscribes asynchronously.
      for (let round = 0; round < 40 && !tailDone; round++) {
        await curl(['https://upstream.test/hello']);
        await curl(['-o', '/dev/null', 'https://upstream.test/status/404']);
        await curl(['-o', '/dev/null', 'https://upstream.test/status/503']);
        await new Promise((r) => setTimeout(r, 100));
      }
      const t = await tail;
      assert.equal(t.code, 0, t.stderr);
      const line = JSON.parse(t.stdout.trim().split('\n')[0]!) as Exchange;
      assert.equal(line.response?.status, 503);
      const deadline = Date.now() + 10_000;
      while (!seen.some(([ev]) => ev === 'completed') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.ok(seen.length > 0, 'the filtered subscriber saw the 503s');
      for (const [event, ex] of seen) {
        assert.equal(ex.request.url, 'https://upstream.test/status/503', `${event} ${ex.request.url}`);
        assert.equal(ex.response?.status, 503);
        assert.notEqual(event, 'started', 'a started exchange has no status yet, so a status filter never matches it');
      }
    } finally {
      await sub.close();
    }
  });

  it('tproxyctl clear empties the buffer and subscribers are told; export is then empty', async () => {
    const sub = await TproxyClient.connect({ socketPath: helper.socketPath });
    const cleared: { removed: number; throughId: number }[] = [];
    sub.onCleared((c) => cleared.push(c));
    await sub.call(methods.exchangesSubscribe, { filter: { host: 'nothing.example' } });
    try {
      const before = (await helper.client.call(methods.exchangesList, { limit: 1000 })).exchanges;
      assert.ok(before.length >= 4);
      const r = await tproxyctl(helper.socketPath, ['clear']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `cleared ${before.length} exchanges\n`);
      const deadline = Date.now() + 10_000;
      while (cleared.length === 0 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 25));
      assert.deepEqual(cleared, [{ removed: before.length, throughId: Math.max(...before.map((e) => e.id)) }], 'sent whatever the filter');
      assert.deepEqual(await helper.client.call(methods.exchangesList, {}), { exchanges: [] });
      const empty = await tproxyctl(helper.socketPath, ['export', '--format', 'har']);
      assert.equal(empty.code, 0, empty.stderr);
      const har = JSON.parse(empty.stdout) as HarLike;
      assertHar12(har);
      assert.deepEqual(har.log.entries, []);
      // Capture goes on after a clear.
      await curl(['https://upstream.test/hello']);
      await waitForExchange(helper.client, (e) => e.request.url === 'https://upstream.test/hello');
    } finally {
      await sub.close();
    }
  });

  it('a large export streams: the helper does not hold the document (RSS measured)', async (t) => {
    // 40 downloads of 1 MiB: each keeps 64 KiB of captured body, ~87 KiB base64 per line.
    for (let i = 0; i < 4; i++) {
      const urls = Array.from({ length: 10 }, (_, j) => ['-o', '/dev/null', `https://upstream.test/bytes?n=1048576&i=${i * 10 + j}`]).flat();
      await curl(urls);
    }
    await waitForExchange(helper.client, (e) => e.request.url.endsWith('i=39'));
    const pid = helper.proc.pid;
    const rssBefore = rssBytes(pid);
    const file = join(dir, 'big.jsonl');
    const r = await tproxyctl(helper.socketPath, ['--json', 'export', '--format', 'jsonl', '-o', file], 120_000);
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stderr) as { count: number; bytes: number; chunks: number };
    const rssAfter = rssBytes(pid);
    t.diagnostic(`export: ${summary.count} exchanges, ${summary.bytes} bytes in ${summary.chunks} chunks; helper RSS ${(rssBefore / 2 ** 20).toFixed(1)} → ${(rssAfter / 2 ** 20).toFixed(1)} MiB`);
    assert.ok(summary.count >= 40);
    assert.ok(summary.bytes > 40 * 80_000);
    assert.equal((await stat(file)).size, summary.bytes);
    const lines = jsonl(await readFile(file, 'utf8'));
    assert.equal(lines.length, summary.count);
    assert.ok(lines.filter((l) => l.exchange.request.url.includes('/bytes?')).every((l) => Buffer.from(l.responseBody!, 'base64').length === 64 * 1024));
  });
});
