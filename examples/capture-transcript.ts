/**
 * Records a real JSON-RPC transcript of tproxy-helper for docs/protocol.md.
 *
 * It builds the e2e world (two throwaway network namespaces + the trust-store sandbox, exactly as
 * test/e2e does), starts the real helper under socket activation, then talks to the socket with a
 * bare `net.connect` and prints every raw line: `>>> ` for what we send, `<<< ` for what we get.
 * Nothing touches the host's network namespace or trust store.
 *
 *   cd /work/main && npm run build
 *   sudo node --import tsx examples/capture-transcript.ts > /tmp/transcript.txt
 */
import { execFileSync } from 'node:child_process';
import { chmodSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeUpstreamCa } from '../test/e2e/lib/certs.js';
import { curlInNs } from '../test/e2e/lib/curl.js';
import { startHelper } from '../test/e2e/lib/helper.js';
import { e2ePreflight } from '../test/e2e/lib/preflight.js';
import { createTopology } from '../test/e2e/lib/topology.js';
import { startUpstreams } from '../test/e2e/lib/upstream.js';

const skip = await e2ePreflight(['curl', 'systemd-socket-activate', 'update-ca-certificates']);
if (skip) {
  console.error(`cannot record: ${skip}`);
  process.exit(2);
}

/** A raw NDJSON connection that logs every line both ways. */
class Raw {
  private buf = '';
  private waiters: Array<() => void> = [];
  readonly lines: string[] = [];
  private constructor(private readonly sock: net.Socket) {
    sock.on('data', (c: Buffer) => {
      this.buf += c.toString('utf8');
      let nl;
      while ((nl = this.buf.indexOf('\n')) !== -1) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        console.log(`<<< ${line}`);
        this.lines.push(line);
        for (const w of this.waiters.splice(0)) w();
      }
    });
  }
  static open(path: string): Promise<Raw> {
    return new Promise((resolve, reject) => {
      const s = net.connect(path, () => resolve(new Raw(s)));
      s.once('error', reject);
    });
  }
  send(text: string, show = text): void {
    console.log(`>>> ${show}`);
    this.sock.write(`${text}\n`);
  }
  /** Waits until a received line satisfies `pred`; returns it parsed. */
  async until(pred: (m: Record<string, unknown>) => boolean, timeoutMs = 15_000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    let seen = 0;
    for (;;) {
      for (; seen < this.lines.length; seen++) {
        const m = JSON.parse(this.lines[seen]!) as Record<string, unknown>;
        if (pred(m)) {
          this.lines.splice(0, seen + 1);
          return m;
        }
      }
      if (Date.now() > deadline) throw new Error('timed out waiting for a line');
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 200);
      });
    }
  }
  private nextId = 1;
  async call(method: string, params?: unknown): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    this.send(JSON.stringify({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) }));
    return this.until((m) => m.id === id);
  }
  close(): void {
    this.sock.end();
  }
}

const section = (title: string) => console.log(`\n### ${title}`);

const dir = await mkdtemp(join(tmpdir(), 'tproxy-transcript-'));
const topo = await createTopology();
try {
  const certs = await makeUpstreamCa(dir);
  await startUpstreams(topo, certs);
  const helper = await startHelper(topo, dir, 'helper', certs.caCert);
  await helper.client.close();
  const c = await Raw.open(helper.socketPath);
  const curl = (path: string, extra: string[] = []) =>
    curlInNs(topo.clientNs, ['--http1.1', '--resolve', 'upstream.test:443:198.18.0.2', ...extra, `https://upstream.test${path}`]);

  section('helper.info');
  await c.call('helper.info');
  section('capture.status (stopped)');
  await c.call('capture.status', {});
  section('ca.get');
  await c.call('ca.get', {});
  section('capture.start');
  await c.call('capture.start', { ports: [443] });
  section('capture.start again (error)');
  await c.call('capture.start', {});
  section('capture.start invalid params (error)');
  await c.call('capture.start', { mark: 0, listenPort: 443 });
  section('exchanges.subscribe + notifications');
  await c.call('exchanges.subscribe', {});
  const r = await curl('/hello', ['-H', 'Authorization: Bearer sk-test-0123456789abcdef']);
  console.log(`# curl exit ${r.code}: ${JSON.stringify(r.stdout)}`);
  const done = await c.until((m) => m.method === 'exchange.completed');
  const id = ((done.params as { exchange: { id: number } }).exchange).id;
  section('capture.status (running)');
  await c.call('capture.status');
  section('exchanges.list');
  await c.call('exchanges.list', { limit: 1 });
  section('exchanges.get');
  await c.call('exchanges.get', { id });
  section('exchanges.get unknown id (error)');
  await c.call('exchanges.get', { id: 999999 });
  section('exchanges.unsubscribe');
  await c.call('exchanges.unsubscribe');
  section('error: unknown method');
  await c.call('capture.pause', {});
  section('error: unknown param');
  await c.call('exchanges.list', { limit: 5, offset: 10 });
  section('error: parse error');
  c.send('{"jsonrpc":"2.0","id":7,"method":');
  await c.until((m) => (m.error as { code?: number } | undefined)?.code === -32700);
  section('error: invalid request');
  c.send('{"jsonrpc":"2.0","id":8}');
  await c.until((m) => (m.error as { code?: number } | undefined)?.code === -32600);
  section('notification from the client (no id): no response; then a ping');
  c.send('{"jsonrpc":"2.0","method":"helper.info"}');
  await c.call('capture.status');
  section('oversize line');
  const big = 'x'.repeat(4 * 1024 * 1024 + 1);
  c.send(big, `xxxx… (${big.length} bytes, no JSON)`);
  await c.until((m) => m.id === null);
  section('CRLF line');
  c.send('{"jsonrpc":"2.0","id":99,"method":"exchanges.unsubscribe"}\r');
  await c.until((m) => m.id === 99);
  section('capture.stop');
  await c.call('capture.stop', {});
  section('capture.stop again (idempotent)');
  await c.call('capture.stop');
  c.close();

  section('access denied (uid 65534, socket made world-connectable for the demo only)');
  chmodSync(dir, 0o755);
  chmodSync(helper.socketPath, 0o666);
  const script = `const s=require('net').connect(process.argv[1]);s.on('data',d=>process.stdout.write('<<< '+d));s.on('end',()=>process.exit(0));s.on('connect',()=>{console.log('>>> '+process.argv[2]);s.write(process.argv[2]+'\\n')});`;
  const out = execFileSync(process.execPath, ['-e', script, helper.socketPath, '{"jsonrpc":"2.0","id":1,"method":"helper.info"}'], { uid: 65534, gid: 65534, encoding: 'utf8', timeout: 10_000 });
  process.stdout.write(out);
  await helper.proc.stop();
} finally {
  await topo.destroy();
  await rm(dir, { recursive: true, force: true });
}
