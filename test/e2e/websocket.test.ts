/**
 * WebSocket through interception, end to end: a Node client (the `ws` package) in the client
 * namespace opens wss://upstream.test/ws, which the real helper intercepts; the origin in the
 * upstream namespace echoes every message (lib/upstream-app.ts /ws). We assert the echoes the
 * client got and what the helper recorded: the 101 handshake as an exchange, message counts per
 * direction, bytes, the captured text, the close code, and updates while the socket was open.
 *
 *   client ns: node+ws ──wss 198.18.0.2:443──▶ nft TPROXY ▶ helper :8443 ──TLS (verified)──▶ upstream ns /ws echo
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { methods, type Exchange } from '@tproxy/client';
import { waitForExchange } from './lib/checks.js';
import { startHelper, tproxyctl, type HelperHandle } from './lib/helper.js';
import { e2ePreflight } from './lib/preflight.js';
import { runInNs } from './lib/proc.js';
import type { Topology } from './lib/topology.js';
import { world } from './lib/world.js';

const skip = await e2ePreflight(['systemd-socket-activate', 'update-ca-certificates']);

/** The ws package's entry, imported by absolute URL from a script run in the client namespace. */
const WS_URL = import.meta.resolve('ws');

/**
 * Opens wss://upstream.test`path` (at 198.18.0.2, SNI and Host upstream.test, system trust store),
 * sends `messages` one at a time waiting for each echo, keeps the socket open `holdMs`, closes with
 * 1000, and prints {opened, status?, echoes, closeCode} as JSON.
 */
function wsClientScript(path: string, holdMs: number): string {
  return `
const WebSocket = (await import(${JSON.stringify(WS_URL)})).default;
const out = { opened: false, echoes: [], closeCode: null, status: null };
const ws = new WebSocket('wss://198.18.0.2${path}', { servername: 'upstream.test', headers: { Host: 'upstream.test' }, perMessageDeflate: false });
ws.on('unexpected-response', (_req, res) => { out.status = res.statusCode; res.resume(); res.on('end', () => { console.log(JSON.stringify(out)); process.exit(0); }); });
ws.on('error', (err) => { out.error = err.message; console.log(JSON.stringify(out)); process.exit(0); });
const messages = [['text', 'hello through tproxy'], ['binary', [0, 1, 2, 253, 254, 255]], ['text', 'second: héllo ✓']];
let i = 0;
const next = () => {
  if (i === messages.length) return void setTimeout(() => ws.close(1000, 'done'), ${holdMs});
  const [kind, value] = messages[i++];
  ws.send(kind === 'text' ? value : Buffer.from(value), { binary: kind === 'binary' });
};
ws.on('open', () => { out.opened = true; next(); });
ws.on('message', (data, isBinary) => { out.echoes.push(isBinary ? { binary: [...data] } : { text: data.toString() }); next(); });
ws.on('close', (code) => { out.closeCode = code; console.log(JSON.stringify(out)); process.exit(0); });
setTimeout(() => { out.error = 'timed out'; console.log(JSON.stringify(out)); process.exit(0); }, 20000);
`;
}

describe('WebSocket through interception', { skip: skip ?? false, timeout: 300_000 }, () => {
  const w = world();
  let topo: Topology;
  let helper: HelperHandle;

  before(async () => {
    topo = w.topo;
    helper = await startHelper(topo, w.dir, 'helper', w.certs.caCert);
    assert.equal((await helper.client.call(methods.captureStart, {})).running, true);
  });

  after(async () => {
    await helper?.client.close().catch(() => undefined);
  });

  it('relays text and binary messages both ways and records the handshake, counts and text', async () => {
    // Held open 3 s after the last echo, so the capture can be seen while the socket is open.
    const run = runInNs(topo.clientNs, [process.execPath, '--use-openssl-ca', '--input-type=module', '-e', wsClientScript('/ws', 3000)], { timeoutMs: 30_000 });
    const isWs = (e: Exchange) => e.request.url === 'https://upstream.test/ws';

    // While open: in flight, 101 recorded, counts already there (exchange.updated while open).
    let live: Exchange | undefined;
    const deadline = Date.now() + 10_000;
    for (let i = 0; i < 200 && Date.now() < deadline && !live; i++) {
      const { exchanges } = await helper.client.call(methods.exchangesList, { limit: 50 });
      live = exchanges.find((e) => isWs(e) && e.state === 'in-flight' && e.websocket?.messagesDown === 3);
      if (!live) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(live, 'the open WebSocket shows up in flight with its three echoes counted');
    assert.equal(live.response?.status, 101);

    const r = await run;
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.error, undefined, r.stdout);
    assert.equal(out.opened, true);
    assert.deepEqual(out.echoes, [{ text: 'hello through tproxy' }, { binary: [0, 1, 2, 253, 254, 255] }, { text: 'second: héllo ✓' }]);
    assert.equal(out.closeCode, 1000);

    const ex = await waitForExchange(helper.client, isWs);
    assert.equal(ex.state, 'complete');
    assert.equal(ex.response?.status, 101);
    assert.ok(ex.response?.headers.some(([k]) => k.toLowerCase() === 'sec-websocket-accept'));
    const info = ex.websocket;
    assert.ok(info, 'the exchange carries WebSocket counters');
    assert.equal(info.messagesUp, 3);
    assert.equal(info.messagesDown, 3);
    assert.equal(info.closeCode, 1000);
    assert.equal(info.error, undefined);
    // Client frames are masked (4-byte key): the up direction is longer by the masks.
    assert.ok(info.bytesUp > info.bytesDown - 10 && info.bytesDown > 40, `bytes up ${info.bytesUp}, down ${info.bytesDown}`);
    const texts = (dir: string) => info.messages.filter((m) => m.dir === dir && m.opcode === 1).map((m) => m.text);
    assert.deepEqual(texts('up'), ['hello through tproxy', 'second: héllo ✓']);
    assert.deepEqual(texts('down'), ['hello through tproxy', 'second: héllo ✓']);
    assert.deepEqual(
      info.messages.filter((m) => m.opcode === 2).map((m) => [m.dir, m.size, m.text]),
      [
        ['up', 6, undefined],
        ['down', 6, undefined],
      ],
    );
    assert.deepEqual(
      info.messages.filter((m) => m.opcode === 8).map((m) => [m.dir, m.closeCode, m.text]),
      [
        ['up', 1000, 'done'],
        ['down', 1000, 'done'],
      ],
    );

    // tproxyctl get shows the WebSocket summary and messages.
    const got = await tproxyctl(helper.socketPath, ['get', String(ex.id)]);
    assert.equal(got.code, 0, got.stderr);
    assert.match(got.stdout, /^--- WebSocket: 3 ↑ 3 ↓ messages · .* · closed 1000$/m);
    assert.match(got.stdout, /↑ text 20 B {2}"hello through tproxy"$/m);
    assert.match(got.stdout, /↓ binary 6 B$/m);
  });

  it('relays a refused upgrade as an ordinary response', async () => {
    const r = await runInNs(topo.clientNs, [process.execPath, '--use-openssl-ca', '--input-type=module', '-e', wsClientScript('/ws-nowhere', 0)], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.opened, false);
    assert.equal(out.status, 404);
    const ex = await waitForExchange(helper.client, (e) => e.request.url === 'https://upstream.test/ws-nowhere');
    assert.equal(ex.response?.status, 404);
    assert.equal(ex.websocket, undefined);
  });
});
