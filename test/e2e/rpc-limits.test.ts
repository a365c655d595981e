/**
 * The RPC socket's authorization and limits against the real helper (bound by hand, as root, in
 * the client namespace of lib/topology.ts; the socket is a file, so this process talks to it from
 * outside the namespace):
 * - a real unprivileged user (uid 65534) that can reach the socket is refused by SO_PEERCRED;
 * - a 100 MB line is refused without the helper's memory growing, and others are served meanwhile;
 * - the client limit, malformed and hostile requests, and a subscriber that stops reading.
 *
 *   this process ──raw NDJSON──▶ <dir>/limits.sock ◀── tproxy-helper (client ns, root)
 *   setpriv uid 65534 ─────────▶ (socket chowned to 65534, as SocketUser= would; no --allow-uid)
 *   curl (client ns) ──https──▶ helper ──▶ upstream ns   (traffic for the stuck subscriber)
 */
import assert from 'node:assert/strict';
import { chmod, chown } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { ErrorCode, methods } from '@tproxy/client';
import { MAX_MESSAGE_BYTES } from '@tproxy/protocol';
import { curlInNs } from './lib/curl.js';
import { rssBytes, startHelper, type HelperHandle } from './lib/helper.js';
import { e2ePreflight } from './lib/preflight.js';
import { runCommand } from './lib/proc.js';
import { RawRpc, type RawMessage } from './lib/raw-rpc.js';
import { world } from './lib/world.js';

const skip = await e2ePreflight(['curl', 'setpriv', 'update-ca-certificates']);

const NOBODY = 65534;
/** The helper's DEFAULT_MAX_CLIENTS (rpc/server.ts). */
const MAX_CLIENTS = 64;
const GOOD = ['--resolve', 'upstream.test:443:198.18.0.2'];

/** What uid 65534 runs: connect, send helper.info, print what came back and who it was. */
const PROBE = `
const net = require('node:net');
const s = net.connect(process.argv[1]);
let data = '';
const done = (extra) => { process.stdout.write(JSON.stringify({ uid: process.getuid(), pid: process.pid, data, ...extra })); process.exit(0); };
s.on('connect', () => s.write('{"jsonrpc":"2.0","id":1,"method":"helper.info"}\\n'));
s.on('data', (d) => (data += d));
s.on('close', () => done({ closed: true }));
s.on('error', (e) => done({ error: e.code }));
setTimeout(() => done({ timeout: true }), 8000);
`;

function errorOf(m: RawMessage): { code: number; name: string | undefined; message: string } {
  assert.ok(m.error, `expected an error, got ${JSON.stringify(m)}`);
  return { code: m.error.code, name: m.error.data?.code, message: m.error.message };
}

describe('RPC authorization and limits against the real helper', { skip: skip ?? false, timeout: 600_000 }, () => {
  const w = world();
  let h: HelperHandle;
  const open: RawRpc[] = [];
  const connect = async () => {
    const c = await RawRpc.connect(h.socketPath);
    open.push(c);
    return c;
  };

  before(async () => {
    // uid 65534 must be able to reach the socket, so the refusal is SO_PEERCRED's, not the mode's.
    await chmod(w.dir, 0o711);
    h = await startHelper(w.topo, w.dir, 'limits', w.certs.caCert, { selfBind: true });
    await chown(h.socketPath, NOBODY, NOBODY);
  });

  after(async () => {
    for (const c of open) c.close();
    await h?.client.close().catch(() => undefined);
    await h?.proc.stop();
  });

  it('refuses a real unprivileged user the socket lets in, and logs its uid and the reason', async () => {
    const r = await runCommand(['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', process.execPath, '-e', PROBE, h.socketPath], { timeoutMs: 20_000 });
    assert.equal(r.code, 0, r.stderr);
    const probe = JSON.parse(r.stdout) as { uid: number; pid: number; data: string; closed?: boolean; error?: string };
    assert.equal(probe.uid, NOBODY, 'the probe really ran as uid 65534');
    assert.equal(probe.error, undefined, `the socket must be connectable by uid 65534 (got ${probe.error})`);
    assert.ok(probe.closed, 'the helper closed the connection');
    const lines = probe.data.trim().split('\n');
    assert.equal(lines.length, 1, `exactly one line: ${probe.data}`);
    const reply = JSON.parse(lines[0]!) as RawMessage;
    assert.equal(reply.id, null, 'refused before the request was read');
    assert.deepEqual(errorOf(reply), {
      code: ErrorCode.AccessDenied,
      name: 'access-denied',
      message: `access denied: uid ${NOBODY} may not use tproxy-helper; run as root or start the helper with --allow-uid ${NOBODY}`,
    });
    await h.proc.waitForOutput(new RegExp(`rpc: refused uid ${NOBODY} pid ${probe.pid}: only root and --allow-uid \\(none\\) may connect`), 5000);
    // Root is still served.
    assert.equal((await h.client.call(methods.helperInfo, {})).pid, h.proc.pid);
  });

  it('refuses a 100 MB line without growing, closes that connection, and serves others meanwhile', async () => {
    const c = await connect();
    const other = await connect();
    assert.ok((await other.request(1, 'helper.info')).result);
    const pid = h.proc.pid;
    const before = rssBytes(pid);
    let peak = before;
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssBytes(pid));
    }, 20);
    const chunk = Buffer.alloc(1024 * 1024, 'x');
    let sent = 0;
    let writeError = '';
    try {
      // A client streaming 100 MB with no newline, 1 MiB at a time, until the helper hangs up.
      for (let i = 0; i < 100 && !c.isClosed; i++) {
        const wrote = await Promise.race([c.send(chunk).then(() => true), c.closed.then(() => false)]).catch((err: Error) => {
          writeError = err.message;
          return false;
        });
        if (!wrote) break;
        sent += chunk.length;
      }
      // Another client is served while (and after) the flood is refused.
      const info = await other.request(2, 'helper.info', undefined, 5000);
      assert.ok(info.result, JSON.stringify(info));
    } finally {
      clearInterval(sampler);
    }
    peak = Math.max(peak, rssBytes(pid));
    const oversize = await c.waitFor((m) => m.id === null, 5000, 'the oversize error');
    assert.deepEqual(errorOf(oversize), {
      code: ErrorCode.InvalidRequest,
      name: 'invalid-request',
      message: `message too large: the limit is ${MAX_MESSAGE_BYTES} bytes per line; closing the connection`,
    });
    assert.equal(c.messages.length, 1, 'one error for the whole line');
    await c.closed;
    await h.proc.waitForOutput(/rpc: uid 0 pid \d+ sent a line over 4194304 bytes; closing its connection/, 5000);
    const grewMb = (peak - before) / 1024 / 1024;
    console.log(
      `# 100 MB line: the helper hung up after ${(sent / 1048576).toFixed(0)} MiB were written (${writeError || 'closed'}); ` +
        `RSS before ${(before / 1048576).toFixed(1)} MiB, peak ${(peak / 1048576).toFixed(1)} MiB (+${grewMb.toFixed(1)} MiB)`,
    );
    assert.ok(sent < 100 * chunk.length, 'the helper stopped reading before the line ended');
    // Up to the line limit is legitimately held (an unfinished line below 4 MiB is buffered, once
    // as read and once as copied by the decoder); nothing beyond it may be: the bound is the
    // limit, not the size the client sends.
    const boundMb = (2 * MAX_MESSAGE_BYTES) / 1048576 + 4;
    assert.ok(grewMb < boundMb, `the helper grew by ${grewMb.toFixed(1)} MiB while refusing a 100 MB line (bound ${boundMb} MiB)`);
    const fresh = await connect();
    assert.ok((await fresh.request(1, 'helper.info')).result, 'a new connection is served');
  });

  it('answers malformed JSON, wrong types, unknown methods, huge numbers and deep nesting, and keeps serving', async () => {
    const c = await connect();
    const deep = '['.repeat(10_000) + ']'.repeat(10_000);
    const cases: { line: string; code: ErrorCode; id: number | null; pattern: RegExp }[] = [
      { line: '{"jsonrpc":"2.0","id":1,"method":"helper.info"', code: ErrorCode.ParseError, id: null, pattern: /^parse error: / },
      { line: '{"jsonrpc":"2.0","id":2,"method":"capture.start","params":{"ports":"443"}}', code: ErrorCode.InvalidParams, id: 2, pattern: /^invalid params for capture\.start: ports: / },
      { line: '{"jsonrpc":"2.0","id":3,"method":"exchanges.get","params":{"id":"7"}}', code: ErrorCode.InvalidParams, id: 3, pattern: /^invalid params for exchanges\.get: id: / },
      { line: '{"jsonrpc":"2.0","id":4,"method":7}', code: ErrorCode.InvalidRequest, id: 4, pattern: /"method" must be a string/ },
      { line: '{"jsonrpc":"2.0","id":5,"method":"capture.launch"}', code: ErrorCode.MethodNotFound, id: 5, pattern: /not found/i },
      { line: '{"jsonrpc":"2.0","id":6,"method":"exchanges.get","params":{"id":1e400}}', code: ErrorCode.InvalidParams, id: 6, pattern: /^invalid params for exchanges\.get: id: / },
      { line: '{"jsonrpc":"2.0","id":7,"method":"exchanges.list","params":{"limit":123456789012345678901234567890}}', code: ErrorCode.InvalidParams, id: 7, pattern: /limit/ },
      { line: `{"jsonrpc":"2.0","id":8,"method":"capture.status","params":${deep}}`, code: ErrorCode.InvalidParams, id: 8, pattern: /^invalid params for capture\.status/ },
      { line: `{"jsonrpc":"2.0","id":9,"method":"capture.start","params":{"ports":${deep}}}`, code: ErrorCode.InvalidParams, id: 9, pattern: /ports/ },
      { line: `{"jsonrpc":"2.0","id":${deep},"method":"helper.info"}`, code: ErrorCode.InvalidRequest, id: null, pattern: /"id" must be/ },
      { line: `{"jsonrpc":"2.0","id":1e400,"method":"helper.info"}`, code: ErrorCode.InvalidRequest, id: null, pattern: /"id" must be/ },
      { line: '"a string"', code: ErrorCode.InvalidRequest, id: null, pattern: /must be a JSON object/ },
    ];
    let next = 1000;
    for (const k of cases) {
      const seen = c.messages.length;
      await c.send(`${k.line}\n`);
      const reply = await c.waitFor((m) => c.messages.indexOf(m) >= seen, 10_000, `the answer to ${k.line.slice(0, 80)}`);
      assert.equal(reply.id, k.id, k.line.slice(0, 80));
      const e = errorOf(reply);
      assert.equal(e.code, k.code, `${k.line.slice(0, 80)} → ${e.message}`);
      assert.match(e.message, k.pattern);
      assert.equal(typeof e.name, 'string');
      // The next request on the same connection still works.
      const ok = await c.request(next++, 'capture.status');
      assert.ok(ok.result, JSON.stringify(ok));
    }
  });

  it(`serves at most ${MAX_CLIENTS} clients; the next is told why, and a slot frees when one leaves`, async () => {
    for (const c of open.splice(0)) c.close();
    await delay(500); // let the helper see those closes (local sockets: immediate in practice)
    // h.client holds one slot.
    const conns: RawRpc[] = [];
    for (let i = 0; i < MAX_CLIENTS - 1; i++) conns.push(await connect());
    const replies = await Promise.all(conns.map((c, i) => c.request(i + 1, 'helper.info')));
    assert.ok(replies.every((r) => r.result), 'the first 64 are all served');
    const extra = await connect();
    const refused = await extra.waitFor((m) => m.id === null, 5000, 'the too-many-clients error');
    assert.equal(errorOf(refused).code, ErrorCode.InternalError);
    assert.match(errorOf(refused).message, /too many clients/);
    await extra.closed;
    await h.proc.waitForOutput(/rpc: refused uid 0 pid \d+: too many clients \(64\)/, 5000);
    conns[0]!.close();
    await conns[0]!.closed;
    let served: RawMessage | undefined;
    for (let i = 0; i < 40 && !served; i++) {
      const again = await connect();
      const m = await again.request(1, 'helper.info', undefined, 5000).catch(() => undefined);
      if (m?.result) served = m;
      else await delay(50);
    }
    assert.ok(served, 'a freed slot is given to the next client');
    for (const c of open.splice(0)) c.close();
  });

  it('drops a subscriber that stops reading while capture traffic continues', async () => {
    await h.client.call(methods.captureStart, {});
    const stuck = await connect();
    assert.deepEqual((await stuck.request(1, 'exchanges.subscribe')).result, { subscribed: true });
    stuck.socket.pause(); // stops reading: the kernel buffers fill, then the helper's queue grows.
    const reader = await connect();
    assert.ok((await reader.request(1, 'exchanges.subscribe')).result);

    // ~8 KB of request header per exchange, carried by each of its notifications.
    const pad = ['-H', `X-Pad: ${'p'.repeat(8000)}`];
    const urls = Array.from({ length: 200 }, (_, i) => `https://upstream.test/hello?n=${i}`);
    let batches = 0;
    const dropped = /rpc: uid 0 pid \d+ stopped reading notifications \(\d+ bytes queued\); disconnecting it/;
    const isDropped = () => dropped.test(h.proc.output().stderr);
    for (; batches < 15 && !isDropped(); batches++) {
      const r = await curlInNs(w.topo.clientNs, ['--fail', ...pad, ...GOOD, ...urls], { timeoutMs: 90_000 });
      assert.equal(r.code, 0, r.stderr);
    }
    assert.ok(isDropped(), `the stuck subscriber was not dropped after ${batches} batches of 200 requests`);
    stuck.socket.resume();
    await stuck.closed;
    // Capture goes on: new traffic is intercepted and the reading subscriber still gets it.
    const seen = reader.messages.length;
    const r = await curlInNs(w.topo.clientNs, ['--fail', ...GOOD, 'https://upstream.test/hello?after-drop']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /hello from upstream/);
    await reader.waitFor(
      (m) => reader.messages.indexOf(m) >= seen && m.method === 'exchange.completed' && JSON.stringify(m.params).includes('after-drop'),
      10_000,
      'the completed notification after the drop',
    );
    const status = await h.client.call(methods.captureStatus, {});
    assert.equal(status.running, true);
    console.log(`# stuck subscriber dropped after ${batches} batch(es) of 200 requests; ${status.interceptCount} connections intercepted`);
    await h.client.call(methods.captureStop, {});
  });
});
