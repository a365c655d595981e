/**
 * Passthrough end to end: connections the helper does not decrypt are relayed byte for byte to the
 * original destination and recorded as passthrough entries (reason, bytes each way, duration).
 *
 *   client ns: openssl s_client -noservername ──▶ helper ──opaque──▶ 198.18.0.2:443  (no SNI)
 *              curl to my_host.test (a "_" name)  ──▶ helper ──opaque──▶ 198.18.0.2:443  (SNI refused)
 *              plain-TCP echo client              ──▶ helper ──opaque──▶ 198.18.0.2:8621 (not TLS)
 *              the same over IPv6                 ──▶ helper ──opaque──▶ [fd00:198:18::2]:443 / :8621
 *
 * The echo origin (started here) answers each line it gets, so the relay is checked both ways.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { methods } from '@tproxy/client';
import { waitForExchange } from './lib/checks.js';
import { curlInNs } from './lib/curl.js';
import { startHelper, tproxyctl, type HelperHandle } from './lib/helper.js';
import { e2ePreflight } from './lib/preflight.js';
import { runInNs, waitForListen, type ProcHandle } from './lib/proc.js';
import { world } from './lib/world.js';

const skip = await e2ePreflight(['curl', 'openssl', 'systemd-socket-activate', 'update-ca-certificates']);

const ECHO_PORT = 8621;
/** A line-echo TCP server (not TLS), run with this Node in the upstream namespace. */
const ECHO_SERVER = `require('net').createServer((s) => { s.on('data', (d) => s.write('echo:' + d)); s.on('end', () => s.end()); s.on('error', () => {}); }).listen(${ECHO_PORT}, process.argv[1], () => console.log('listening'));`;
/** A client that sends one line, half-closes, and prints what came back. */
const ECHO_CLIENT = `const s = require('net').connect(${ECHO_PORT}, process.argv[1], () => s.end('ping-not-tls\\n')); let got = ''; s.on('data', (d) => (got += d)); s.on('close', () => { process.stdout.write(got); });`;

/** The line-echo server for IPv6 that also prints each connection's local address, so a test sees it reached this origin. */
const ECHO6_SERVER = `require('net').createServer((s) => { console.log('connection to ' + s.localAddress + ' from ' + s.remoteAddress); s.on('data', (d) => s.write('echo:' + d)); s.on('end', () => s.end()); s.on('error', () => {}); }).listen(${ECHO_PORT}, process.argv[1], () => console.log('listening'));`;
/**
 * A TLS client without SNI (Node sends none to an IP address) that verifies the origin against the
 * CA file, asks for /echo-headers and prints its wire byte counts: the TCP socket under TLS is its
 * own, so bytesWritten/bytesRead are exactly what crossed the intercepted connection.
 */
const TLS_COUNT_CLIENT = `const net = require('net'), tls = require('tls'), fs = require('fs');
const [host, caFile] = process.argv.slice(1);
const raw = net.connect(443, host, () => {
  const port = raw.localPort;
  const t = tls.connect({ socket: raw, host, ca: fs.readFileSync(caFile) }, () => t.write('GET /echo-headers HTTP/1.1\\r\\nHost: upstream.test\\r\\nConnection: close\\r\\n\\r\\n'));
  let body = '';
  t.setEncoding('utf8');
  t.on('data', (d) => (body += d));
  t.on('error', (e) => { console.error(e.message); process.exitCode = 1; });
  raw.on('close', () => process.stdout.write(JSON.stringify({ port, bytesWritten: raw.bytesWritten, bytesRead: raw.bytesRead, authorized: t.authorized, body })));
});`;

describe('passthrough: what is not decrypted is relayed and recorded', { skip: skip ?? false, timeout: 300_000 }, () => {
  const w = world();
  let helper: HelperHandle;

  before(async () => {
    const { topo, certs, dir } = w;
    const echo = topo.spawn(topo.upstreamNs, [process.execPath, '-e', ECHO_SERVER, topo.addrs.good4]);
    await echo.waitForOutput(/^listening/m, 20_000);
    await waitForListen(topo.upstreamNs, ECHO_PORT, 'tcp', 20_000, { addresses: [topo.addrs.good4] });
    helper = await startHelper(topo, dir, 'helper', certs.caCert);
    const status = await helper.client.call(methods.captureStart, { ports: [443, ECHO_PORT] });
    assert.equal(status.running, true);
  });

  after(async () => {
    await helper?.client.close().catch(() => undefined);
  });

  it('relays openssl s_client without SNI to the real origin and records it', async () => {
    const { topo, certs } = w;
    const r = await runInNs(topo.clientNs, ['openssl', 's_client', '-connect', `${topo.addrs.good4}:443`, '-noservername', '-CAfile', certs.caCert, '-verify_return_error', '-quiet'], {
      input: 'GET /hello HTTP/1.1\r\nHost: upstream.test\r\nConnection: close\r\n\r\n',
      timeoutMs: 30_000,
    });
    // Verified against the test upstream CA: the client talked TLS with the origin itself, not with us.
    assert.match(r.stdout, /^HTTP\/1\.1 200 /m, r.stderr);
    assert.match(r.stdout, /hello from upstream/);
    const ex = await waitForExchange(helper.client, (e) => e.kind === 'passthrough' && e.passthrough?.reason === 'no-sni' && e.state !== 'in-flight');
    assert.equal(ex.request.method, 'TLS');
    assert.equal(ex.request.url, `tls://${topo.addrs.good4}:443`);
    assert.deepEqual(ex.server, { address: topo.addrs.good4, port: 443 });
    assert.equal(ex.state, 'complete');
    assert.ok((ex.passthrough?.bytesUp ?? 0) > 200, JSON.stringify(ex.passthrough));
    assert.ok((ex.passthrough?.bytesDown ?? 0) > 1000, JSON.stringify(ex.passthrough));
    assert.ok((ex.timing.end ?? -1) >= 0);
  });

  it('relays a name with "_" untouched (certificates cannot carry it) and says why', async () => {
    const { topo, certs } = w;
    // The origin's certificate does not name my_host.test: curl, trusting the upstream CA and not
    // checking the name, proves it met the origin's certificate rather than one minted by us.
    const r = await curlInNs(topo.clientNs, ['--cacert', certs.caCert, '--insecure', '--resolve', `my_host.test:443:${topo.addrs.good4}`, '-w', '\n%{http_code}', 'https://my_host.test/hello']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\n200$/);
    const ex = await waitForExchange(helper.client, (e) => e.kind === 'passthrough' && e.tls.sni === 'my_host.test' && e.state !== 'in-flight');
    assert.equal(ex.passthrough?.reason, 'sni-rejected');
    assert.match(ex.passthrough?.detail ?? '', /_/);
    const leaf = await curlInNs(topo.clientNs, ['-v', '--insecure', '--resolve', `my_host.test:443:${topo.addrs.good4}`, '-o', '/dev/null', 'https://my_host.test/hello']);
    assert.match(leaf.stderr, /issuer: CN=tproxy e2e TEST UPSTREAM CA/, 'the origin\'s own certificate, not one of ours');
  });

  it('relays a protocol that is not TLS both ways, half-close included', async () => {
    const { topo } = w;
    const r = await runInNs(topo.clientNs, [process.execPath, '-e', ECHO_CLIENT, topo.addrs.good4], { timeoutMs: 30_000 });
    assert.equal(r.stdout, 'echo:ping-not-tls\n', r.stderr);
    const ex = await waitForExchange(helper.client, (e) => e.kind === 'passthrough' && e.passthrough?.reason === 'not-tls' && e.state !== 'in-flight');
    assert.equal(ex.request.method, 'TCP');
    assert.equal(ex.request.url, `tcp://${topo.addrs.good4}:${ECHO_PORT}`);
    assert.equal(ex.passthrough?.bytesUp, 'ping-not-tls\n'.length);
    assert.equal(ex.passthrough?.bytesDown, 'echo:ping-not-tls\n'.length);
  });

  it('shows a passthrough entry in tproxyctl get', async () => {
    const ex = await waitForExchange(helper.client, (e) => e.passthrough?.reason === 'not-tls' && e.state !== 'in-flight');
    const r = await tproxyctl(helper.socketPath, ['get', String(ex.id)]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`TCP tcp://${w.topo.addrs.good4.replace(/\./g, '\\.')}:${ECHO_PORT}`));
    assert.match(r.stdout, /passthrough: not-tls .*, 13 B up, 18 B down/);
  });

  describe('over IPv6', () => {
    let echo6: ProcHandle;

    before(async () => {
      const { topo } = w;
      echo6 = topo.spawn(topo.upstreamNs, [process.execPath, '-e', ECHO6_SERVER, topo.addrs.good6]);
      await echo6.waitForOutput(/^listening/m, 20_000);
      await waitForListen(topo.upstreamNs, ECHO_PORT, 'tcp', 20_000, { addresses: [topo.addrs.good6] });
    });

    it('relays openssl s_client without SNI to an IPv6 origin and records it', async () => {
      const { topo, certs } = w;
      const { good6, client6 } = topo.addrs;
      const r = await runInNs(topo.clientNs, ['openssl', 's_client', '-connect', `[${good6}]:443`, '-noservername', '-CAfile', certs.caCert, '-verify_return_error', '-quiet'], {
        input: 'GET /echo-headers HTTP/1.1\r\nHost: upstream.test\r\nConnection: close\r\n\r\n',
        timeoutMs: 30_000,
      });
      // Verified against the test upstream CA, and the origin itself says which of its addresses it was reached on.
      assert.match(r.stdout, /^HTTP\/1\.1 200 /m, r.stderr);
      const seen = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'), r.stdout.lastIndexOf('}') + 1)) as { local: { address: string; port: number }; tls: { servername: string | null } };
      assert.deepEqual(seen.local, { address: good6, port: 443 });
      assert.equal(seen.tls.servername, null, 'no SNI reached the origin either');
      const ex = await waitForExchange(helper.client, (e) => e.kind === 'passthrough' && e.passthrough?.reason === 'no-sni' && e.server.address === good6 && e.state !== 'in-flight');
      assert.equal(ex.request.method, 'TLS');
      assert.equal(ex.request.url, `tls://[${good6}]:443`);
      assert.deepEqual(ex.server, { address: good6, port: 443 });
      assert.equal(ex.client.address, client6);
      assert.equal(ex.state, 'complete');
      assert.ok((ex.passthrough?.bytesUp ?? 0) > 200, JSON.stringify(ex.passthrough));
      assert.ok((ex.passthrough?.bytesDown ?? 0) > 1000, JSON.stringify(ex.passthrough));
      assert.ok((ex.timing.end ?? -1) >= 0);
    });

    it('records the exact bytes each way of a TLS passthrough to an IPv6 origin', async () => {
      const { topo, certs } = w;
      const { good6 } = topo.addrs;
      const r = await runInNs(topo.clientNs, [process.execPath, '-e', TLS_COUNT_CLIENT, good6, certs.caCert], { timeoutMs: 30_000 });
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout) as { port: number; bytesWritten: number; bytesRead: number; authorized: boolean; body: string };
      assert.equal(out.authorized, true, 'the origin\'s certificate, verified against the test upstream CA');
      assert.match(out.body, /^HTTP\/1\.1 200 /);
      assert.match(out.body, new RegExp(`"local":\\{"address":"${good6}","port":443\\}`), 'the origin was reached on its IPv6 address');
      const ex = await waitForExchange(helper.client, (e) => e.kind === 'passthrough' && e.client.port === out.port && e.state !== 'in-flight');
      assert.equal(ex.passthrough?.reason, 'no-sni');
      assert.deepEqual(ex.server, { address: good6, port: 443 });
      assert.equal(ex.passthrough?.bytesUp, out.bytesWritten, 'bytes up are what the client wrote');
      assert.equal(ex.passthrough?.bytesDown, out.bytesRead, 'bytes down are what the client read');
    });

    it('relays a protocol that is not TLS to an IPv6 destination both ways', async () => {
      const { topo } = w;
      const { good6, client6 } = topo.addrs;
      const r = await runInNs(topo.clientNs, [process.execPath, '-e', ECHO_CLIENT, good6], { timeoutMs: 30_000 });
      assert.equal(r.stdout, 'echo:ping-not-tls\n', r.stderr);
      await echo6.waitForOutput(`connection to ${good6} from `, 10_000);
      const ex = await waitForExchange(helper.client, (e) => e.kind === 'passthrough' && e.passthrough?.reason === 'not-tls' && e.server.address === good6 && e.state !== 'in-flight');
      assert.equal(ex.request.method, 'TCP');
      assert.equal(ex.request.url, `tcp://[${good6}]:${ECHO_PORT}`);
      assert.deepEqual(ex.server, { address: good6, port: ECHO_PORT });
      assert.equal(ex.client.address, client6);
      assert.equal(ex.state, 'complete');
      assert.equal(ex.passthrough?.bytesUp, 'ping-not-tls\n'.length);
      assert.equal(ex.passthrough?.bytesDown, 'echo:ping-not-tls\n'.length);
      assert.ok((ex.timing.end ?? -1) >= 0);
    });
  });
});
