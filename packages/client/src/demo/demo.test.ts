/**
 * The whole demo, as `tproxy-ui --demo` runs it (root only): this file re-executes itself inside the
 * trust-store sandbox first, exactly as the dashboard does, then startDemo() builds the namespaces,
 * the site, the real tproxy-helper and the traffic generator (all from dist: `npm run build` first).
 * We watch the decrypted traffic over the helper's socket, then stop() and check that nothing is
 * left: no namespace, no process, no temp dir, and the host's trust store never saw the CA.
 * Without root or the tools, the test is skipped with the reason.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { test } from 'node:test';
import { methods, type Exchange } from '@tproxy/protocol';
import { TproxyClient } from '../rpc/client.js';
import { REQUIRED_TOOLS, ensureDemoSandbox, startDemo } from './index.js';
import { demoNames, listNetns } from './network.js';
import { findOnPath } from './procs.js';
import { hostViewPid, inTrustSandbox } from './sandbox.js';

await ensureDemoSandbox();

function skipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, nftables, a private mount namespace): sudo npm test';
  const missing = [...REQUIRED_TOOLS, 'unshare'].filter((t) => findOnPath(t) === undefined);
  if (missing.length > 0) return `needs ${missing.join(', ')} on PATH`;
  if (!inTrustSandbox()) return 'could not enter the trust-store sandbox (unshare --mount failed?)';
  return undefined;
}

const ANCHOR_DIR = '/usr/local/share/ca-certificates';

interface Seen {
  products?: Exchange;
  cart?: Exchange;
  events?: Exchange;
  down?: Exchange;
}

function pick(exchanges: readonly Exchange[]): Seen {
  const done = (e: Exchange) => e.state !== 'in-flight';
  return {
    products: exchanges.find((e) => done(e) && e.request.method === 'GET' && e.request.url === 'https://shop.demo/api/products'),
    cart: exchanges.find((e) => done(e) && e.request.method === 'POST' && e.request.url === 'https://shop.demo/api/cart'),
    events: exchanges.find((e) => done(e) && e.request.url === 'https://events.demo/events'),
    down: exchanges.find((e) => done(e) && e.server.address === '198.18.0.4'),
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

test('the demo shows decrypted h1, SSE and error traffic, then leaves nothing behind', { timeout: 120_000 }, async (t) => {
  const skip = skipReason();
  if (skip) return t.skip(skip);
  const lines: string[] = [];
  const session = await startDemo({ log: (l) => lines.push(l) });
  let stopped = false;
  t.after(async () => {
    if (!stopped) await session.stop();
  });
  const names = demoNames();
  assert.ok((await listNetns()).includes(names.clientNs));

  // The CA is in the sandboxed store only; the host's view of the same directory never has it.
  assert.ok(readdirSync(ANCHOR_DIR).some((f) => f.startsWith('tproxy-')), lines.join('\n'));
  const hostPid = hostViewPid();
  assert.ok(hostPid !== undefined);
  assert.ok(!readdirSync(`/proc/${hostPid}/root${ANCHOR_DIR}`).some((f) => f.startsWith('tproxy-')), 'host trust store untouched');

  const client = await TproxyClient.connect({ socketPath: session.socketPath });
  let seen: Seen = {};
  try {
    const deadline = Date.now() + 30_000;
    for (let i = 0; i < 300 && Date.now() < deadline; i++) {
      seen = pick((await client.call(methods.exchangesList, { limit: 200 })).exchanges);
      if (seen.products && seen.cart && seen.events && seen.down) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const { products, cart, events, down } = seen;
    assert.ok(products && cart && events && down, `not all seen within 30 s: ${JSON.stringify(Object.keys(seen).filter((k) => seen[k as keyof Seen]))}\n${lines.join('\n')}`);
    assert.equal(products.state, 'complete');
    assert.equal(products.response?.status, 200);
    assert.equal(products.tls.sni, 'shop.demo');
    assert.equal(cart.state, 'complete');
    assert.equal(cart.response?.status, 200);
    const auth = cart.request.headers.find(([k]) => k.toLowerCase() === 'authorization')?.[1];
    assert.ok(auth && !auth.includes('4f1c2a9e7b'), `bearer token masked, got ${auth}`);
    assert.equal(events.state, 'complete');
    assert.equal(events.response?.status, 200);
    const detail = await client.call(methods.exchangesGet, { id: events.id });
    const sse = Buffer.from(detail.responseBody, 'base64').toString('utf8');
    assert.equal(sse.match(/^data: /gm)?.length, 10, sse);
    assert.equal(down.state, 'error');
    assert.equal(down.response?.status, 502);
    assert.equal(down.error?.kind, 'upstream-connect');
    assert.equal(down.tls.sni, 'api.demo');
  } finally {
    await client.close();
  }

  const pids = session.pids();
  assert.equal(pids.length, 3, 'site, helper, traffic');
  await session.stop();
  stopped = true;
  await session.stop(); // idempotent
  const left = await listNetns();
  assert.ok(!left.includes(names.clientNs) && !left.includes(names.upstreamNs), `namespaces left: ${left.join(' ')}`);
  assert.deepEqual(pids.filter(alive), [], 'every process the demo started has exited');
  assert.equal(existsSync(session.logDir), false, 'temp dir removed');
  assert.ok(!readdirSync(ANCHOR_DIR).some((f) => f.startsWith('tproxy-')), 'capture.stop removed the CA from the sandboxed store');
});
