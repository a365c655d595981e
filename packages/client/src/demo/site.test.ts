/**
 * The demo site and the traffic generator's clients against each other over loopback (no root, no
 * tproxy): every endpoint answers as the clients expect, SSE ends after its events, and failures
 * are results, not exceptions. Needs openssl for the certificate.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, after, describe, test } from 'node:test';
import { makeDemoCerts } from './certs.js';
import { findOnPath } from './procs.js';
import { EVENT_COUNT, PIXEL_PNG, startSite, type RunningSite } from './site-app.js';
import { countSseEvents, planIteration, runClient, type ClientName, type TrafficTarget } from './traffic-clients.js';

test('each iteration runs the five core clients; image and slow now and then', () => {
  const core: ClientName[] = ['products', 'cart', 'home-h2', 'events', 'api-down'];
  assert.deepEqual(planIteration(0), core);
  assert.deepEqual(planIteration(1), [...core, 'image']);
  assert.deepEqual(planIteration(2), [...core, 'slow']);
  const twelve = Array.from({ length: 12 }, (_, i) => planIteration(i)).flat();
  assert.equal(twelve.filter((c) => c === 'image').length, 4);
  assert.equal(twelve.filter((c) => c === 'slow').length, 3);
});

test('countSseEvents counts complete events only', () => {
  assert.equal(countSseEvents('id: 1\ndata: a\n\nid: 2\ndata: b\n\n'), 2);
  assert.equal(countSseEvents('data: a\r\n\r\ndata: partial'), 1);
  assert.equal(countSseEvents(': comment\n\n'), 0);
  assert.deepEqual([...PIXEL_PNG.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'a PNG signature');
});

describe('site and clients over loopback', { skip: findOnPath('openssl') ? false : 'needs openssl on PATH' }, () => {
  let dir: string;
  let site: RunningSite;
  let target: TrafficTarget;
  const seen: string[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tproxy-demo-site-'));
    const certs = await makeDemoCerts(dir);
    site = await startSite({ cert: readFileSync(certs.siteCert), key: readFileSync(certs.siteKey), hosts: ['127.0.0.1'], port: 0, log: (l) => seen.push(l) });
    const port = site.addresses[0]?.port ?? 0;
    // Port 1 on loopback: nothing listens, like api.demo's address in the demo.
    target = { siteAddr: '127.0.0.1', downAddr: '127.0.0.1', port, downPort: 1, timeoutMs: 5000, ca: { pem: readFileSync(certs.caCert, 'utf8'), file: certs.caCert } };
  });
  after(async () => {
    await site?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const name of ['products', 'cart', 'events', 'image', 'slow'] as const) {
    test(`${name} succeeds against the site`, async () => {
      const r = await runClient(name, target);
      assert.equal(r.ok, true, r.summary);
    });
  }

  test('events reads the whole stream: all events, then the end', async () => {
    const r = await runClient('events', target);
    assert.match(r.summary, new RegExp(`-> 200, ${EVENT_COUNT} events`));
    assert.ok(r.ms >= 1500, `the stream takes ~2 s (${r.ms} ms)`);
  });

  test('curl offers h2 and gets it from the site directly', { skip: findOnPath('curl') ? false : 'needs curl' }, async () => {
    const r = await runClient('home-h2', target);
    assert.equal(r.ok, true, r.summary);
    assert.match(r.summary, /-> 200 HTTP\/2$/);
  });

  test('a refused connection is a failed result, not an exception', async () => {
    const r = await runClient('api-down', target);
    assert.equal(r.ok, false);
    assert.match(r.summary, /ECONNREFUSED/);
  });

  test('the site logs one line per request with host, path and status', () => {
    assert.ok(seen.some((l) => /^GET shop\.demo:\d+\/api\/products HTTP\/1\.1 -> 200/.test(l)), seen.join('\n'));
    assert.ok(seen.some((l) => /^POST shop\.demo:\d+\/api\/cart HTTP\/1\.1 -> 200/.test(l)), seen.join('\n'));
  });
});
