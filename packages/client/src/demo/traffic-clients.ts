/**
 * The demo's clients: what one iteration of the traffic generator does, as data (planIteration)
 * plus one function per client. Each client is bounded by a timeout and never throws: a failure
 * is a result line like any other, because the generator must keep going whatever happens.
 * There is no DNS in the demo namespaces, so Node clients use a fixed `lookup` and curl uses
 * `--resolve`; TLS names (SNI, Host) are the demo names. Trust is the caller's: in the demo the
 * process runs with `--use-openssl-ca` and a clean environment, so Node and curl trust exactly the
 * (sandboxed) system store into which tproxy-helper installed its CA; tests pass `ca` instead.
 */
import { execFile } from 'node:child_process';
import { request as httpsRequest } from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import { isIPv6, type LookupFunction } from 'node:net';
import { DEMO_HOSTS } from './network.js';
import { EVENT_COUNT } from './site-app.js';

export type ClientName = 'products' | 'cart' | 'home-h2' | 'events' | 'api-down' | 'image' | 'slow';

/** What the clients talk to. */
export interface TrafficTarget {
  /** Where shop.demo and events.demo resolve (the site). */
  siteAddr: string;
  /** Where api.demo resolves: nothing listens there. */
  downAddr: string;
  port: number;
  /** Port used for api.demo (default `port`). */
  downPort?: number;
  /** Per-client deadline in ms. */
  timeoutMs: number;
  /** Extra trust for tests: PEM text for Node, the same file for curl. Default: the system store. */
  ca?: { pem: string; file: string };
}

export interface ClientResult {
  name: ClientName;
  /** Whether the client saw what the demo expects (api-down expects a 502 from tproxy). */
  ok: boolean;
  /** One line for the log: request, status or error. */
  summary: string;
  ms: number;
}

/**
 * The clients of iteration `i` (0-based): the core five every time, the image every third and the
 * slow page every fourth iteration, so the list in the dashboard is varied but not noisy.
 */
export function planIteration(i: number): ClientName[] {
  const plan: ClientName[] = ['products', 'cart', 'home-h2', 'events', 'api-down'];
  if (i % 3 === 1) plan.push('image');
  if (i % 4 === 2) plan.push('slow');
  return plan;
}

/** A lookup that answers `address` for any name (both the single and the `all: true` form). */
export function fixedLookup(address: string): LookupFunction {
  const family = isIPv6(address) ? 6 : 4;
  return (_hostname, options, callback) => {
    if (options.all) callback(null, [{ address, family }]);
    else callback(null, address, family);
  };
}

interface HttpResult {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

interface HttpCall {
  host: string;
  addr: string;
  port: number;
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

/** One HTTPS request on a fresh connection (agent: false), fully read, bounded by `t.timeoutMs`. */
function fetchOnce(t: TrafficTarget, call: HttpCall): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: call.host,
        servername: call.host,
        port: call.port,
        method: call.method,
        path: call.path,
        lookup: fixedLookup(call.addr),
        agent: false,
        signal: AbortSignal.timeout(t.timeoutMs),
        headers: { 'user-agent': 'tproxy-demo-traffic/1', ...call.headers },
        ...(t.ca ? { ca: t.ca.pem } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
        // A no-op once 'end' resolved; otherwise the connection died mid-body.
        res.on('close', () => reject(new Error('connection closed before the response ended')));
      },
    );
    req.on('error', reject);
    req.end(call.body);
  });
}

function hostPart(host: string, port: number): string {
  return port === 443 ? host : `${host}:${port}`;
}

/** Counts complete SSE events (blocks ended by a blank line that carry a data field). */
export function countSseEvents(text: string): number {
  return text
    .replace(/\r\n/g, '\n')
    .split('\n\n')
    .filter((block, i, all) => i < all.length - 1 && /^data:/m.test(block)).length;
}

function curl(args: readonly string[], timeoutMs: number): Promise<{ stdout: string }> {
  return new Promise((resolve, reject) => {
    execFile('curl', [...args], { timeout: timeoutMs + 2000, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) {
        const e = err as NodeJS.ErrnoException;
        reject(new Error(e.code === 'ENOENT' ? 'curl is not installed' : stderr.trim() || err.message));
      } else resolve({ stdout });
    });
  });
}

async function runOne(name: ClientName, t: TrafficTarget): Promise<Omit<ClientResult, 'ms' | 'name'>> {
  const shop = { host: DEMO_HOSTS.shop, addr: t.siteAddr, port: t.port };
  switch (name) {
    case 'products': {
      const r = await fetchOnce(t, { ...shop, method: 'GET', path: '/api/products', headers: { accept: 'application/json' } });
      const count = r.status === 200 ? (JSON.parse(r.body.toString()) as { products: unknown[] }).products.length : 0;
      return { ok: r.status === 200, summary: `GET https://${hostPart(shop.host, t.port)}/api/products -> ${r.status} (${count} products)` };
    }
    case 'cart': {
      const body = JSON.stringify({ items: [{ id: 1, qty: 1 }, { id: 2, qty: 3 }], coupon: 'DEMO10' });
      const r = await fetchOnce(t, {
        ...shop,
        method: 'POST',
        path: '/api/cart',
        // A bearer token, so the dashboard can show tproxy masking secrets in captured headers.
        headers: { 'content-type': 'application/json', authorization: 'Bearer demo-token-4f1c2a9e7b', 'content-length': String(Buffer.byteLength(body)) },
        body,
      });
      return { ok: r.status === 200, summary: `POST https://${hostPart(shop.host, t.port)}/api/cart -> ${r.status} ${r.body.toString().trim().slice(0, 60)}` };
    }
    case 'home-h2': {
      // Offers h2 via ALPN; tproxy answers HTTP/1.1 to clients today, so curl falls back.
      const args = ['-q', '--noproxy', '*', '-sS', '--http2', '--max-time', String(Math.ceil(t.timeoutMs / 1000)),
        '--resolve', `${shop.host}:${t.port}:${t.siteAddr}`, ...(t.ca ? ['--cacert', t.ca.file] : []),
        '-o', '/dev/null', '-w', '%{http_code} HTTP/%{http_version}', `https://${hostPart(shop.host, t.port)}/`];
      const { stdout } = await curl(args, t.timeoutMs);
      return { ok: stdout.startsWith('200 '), summary: `curl --http2 https://${hostPart(shop.host, t.port)}/ -> ${stdout.trim()}` };
    }
    case 'events': {
      const r = await fetchOnce(t, { host: DEMO_HOSTS.events, addr: t.siteAddr, port: t.port, method: 'GET', path: '/events', headers: { accept: 'text/event-stream' } });
      const events = countSseEvents(r.body.toString());
      return { ok: r.status === 200 && events === EVENT_COUNT, summary: `GET https://${hostPart(DEMO_HOSTS.events, t.port)}/events -> ${r.status}, ${events} events` };
    }
    case 'api-down': {
      const port = t.downPort ?? t.port;
      const r = await fetchOnce(t, { host: DEMO_HOSTS.api, addr: t.downAddr, port, method: 'GET', path: '/', headers: { accept: 'application/json' } });
      return { ok: r.status === 502, summary: `GET https://${hostPart(DEMO_HOSTS.api, port)}/ -> ${r.status} (api.demo is down${r.status === 502 ? ': tproxy answered' : ''})` };
    }
    case 'image': {
      const r = await fetchOnce(t, { ...shop, method: 'GET', path: '/image.png' });
      return { ok: r.status === 200, summary: `GET https://${hostPart(shop.host, t.port)}/image.png -> ${r.status} (${r.body.length} bytes ${r.headers['content-type']})` };
    }
    case 'slow': {
      const r = await fetchOnce(t, { ...shop, method: 'GET', path: '/slow' });
      return { ok: r.status === 200, summary: `GET https://${hostPart(shop.host, t.port)}/slow -> ${r.status}` };
    }
  }
}

/** Runs one client; never rejects. */
export async function runClient(name: ClientName, t: TrafficTarget): Promise<ClientResult> {
  const started = performance.now();
  try {
    const r = await runOne(name, t);
    return { name, ...r, ms: Math.round(performance.now() - started) };
  } catch (err) {
    return { name, ok: false, summary: `${name} failed: ${(err as Error).message}`, ms: Math.round(performance.now() - started) };
  }
}
