/**
 * The demo's HTTPS site ("Demo Shop"): a request handler with a fixed set of endpoints and a starter
 * that serves it with one certificate on several addresses, HTTP/2 and HTTP/1.1 on the same port
 * (ALPN picks; tproxy-helper's upstream leg speaks HTTP/1.1 today). It owns HTTP semantics only:
 * site.ts owns argv and process lifetime. Every response is small and every timer is cleared when
 * the client goes away, so nothing accumulates however long the demo runs.
 *
 *   GET  /               a small HTML page
 *   GET  /api/products   JSON list of products
 *   POST /api/cart       echoes the JSON body back with a cart total (400 on bad JSON, 413 > 64 KiB)
 *   GET  /events         Server-Sent Events: one event every 200 ms, 10 events, then the stream ends
 *   GET  /image.png      a 1x1 PNG (binary body)
 *   GET  /slow           200 after 800 ms
 */
import http2, { type Http2SecureServer, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import type { AddressInfo } from 'node:net';

/** SSE cadence: an event every EVENT_INTERVAL_MS, EVENT_COUNT of them, then end. */
export const EVENT_INTERVAL_MS = 200;
export const EVENT_COUNT = 10;
/** /slow's delay: long enough to stand out in the dashboard's timing column. */
export const SLOW_DELAY_MS = 800;
/** Largest /api/cart body accepted; the traffic generator sends a few hundred bytes. */
export const CART_MAX_BYTES = 64 * 1024;

export const PRODUCTS = [
  { id: 1, name: 'Mechanical keyboard', price: 89.0, currency: 'EUR' },
  { id: 2, name: 'USB-C cable (2 m)', price: 9.5, currency: 'EUR' },
  { id: 3, name: 'Laptop stand', price: 34.9, currency: 'EUR' },
] as const;

/** A valid 1x1 transparent PNG (67 bytes). */
export const PIXEL_PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==',
  'base64',
);

export const HOME_HTML = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Demo Shop</title></head>
<body>
<h1>Demo Shop</h1>
<p>A local site inside a throwaway network namespace, so tproxy has something to decrypt.</p>
<ul>
<li><a href="/api/products">/api/products</a></li>
<li><a href="/events">/events</a> (Server-Sent Events)</li>
<li><img src="/image.png" alt="pixel"></li>
</ul>
</body>
</html>
`;

/** Both request flavours the compat API hands us with allowHTTP1 (h2 streams and HTTP/1.1). */
type Req = Http2ServerRequest;
type Res = Http2ServerResponse;

function send(res: Res, status: number, body: string | Buffer, contentType: string): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function sendJson(res: Res, status: number, value: unknown): void {
  send(res, status, `${JSON.stringify(value)}\n`, 'application/json');
}

function readCart(req: Req, res: Res): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let tooBig = false;
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > CART_MAX_BYTES) tooBig = true;
    else chunks.push(chunk);
  });
  req.on('end', () => {
    if (tooBig) return sendJson(res, 413, { error: `cart body over ${CART_MAX_BYTES} bytes` });
    let cart: unknown;
    try {
      cart = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      return sendJson(res, 400, { error: 'body is not JSON' });
    }
    const items = Array.isArray((cart as { items?: unknown })?.items) ? (cart as { items: { id?: number; qty?: number }[] }).items : [];
    const total = items.reduce((sum, item) => sum + (PRODUCTS.find((p) => p.id === item.id)?.price ?? 0) * (Number(item.qty) || 0), 0);
    sendJson(res, 200, { ok: true, cart, total: Math.round(total * 100) / 100, currency: 'EUR' });
  });
}

function streamEvents(res: Res): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  let sent = 0;
  const timer = setInterval(() => {
    sent++;
    res.write(`id: ${sent}\nevent: stock\ndata: ${JSON.stringify({ seq: sent, productId: PRODUCTS[sent % PRODUCTS.length]?.id, inStock: 10 - sent })}\n\n`);
    if (sent >= EVENT_COUNT) {
      clearInterval(timer);
      res.end();
    }
  }, EVENT_INTERVAL_MS);
  res.on('close', () => clearInterval(timer));
}

/** The site's request handler; `log` gets one line per finished request. */
export function siteHandler(log: (line: string) => void = () => {}): (req: Req, res: Res) => void {
  return (req, res) => {
    const started = Date.now();
    const host = req.headers[':authority'] ?? req.headers.host ?? '-';
    res.on('finish', () => log(`${req.method} ${host}${req.url} HTTP/${req.httpVersion} -> ${res.statusCode} (${Date.now() - started} ms)`));
    const path = (req.url ?? '/').split('?')[0];
    const route = `${req.method} ${path}`;
    switch (route) {
      case 'GET /':
        return send(res, 200, HOME_HTML, 'text/html; charset=utf-8');
      case 'GET /api/products':
        return sendJson(res, 200, { products: PRODUCTS });
      case 'POST /api/cart':
        return readCart(req, res);
      case 'GET /events':
        return streamEvents(res);
      case 'GET /image.png':
        return send(res, 200, PIXEL_PNG, 'image/png');
      case 'GET /slow': {
        const timer = setTimeout(() => sendJson(res, 200, { slow: true, delayMs: SLOW_DELAY_MS }), SLOW_DELAY_MS);
        res.on('close', () => clearTimeout(timer));
        return;
      }
      default:
        return sendJson(res, 404, { error: `no route for ${route}` });
    }
  };
}

export interface SiteOptions {
  cert: string | Buffer;
  key: string | Buffer;
  hosts: readonly string[];
  /** 0 picks a free port (tests); the demo uses 443. */
  port: number;
  log?: (line: string) => void;
}

export interface RunningSite {
  /** Bound endpoints, one per host. */
  addresses: AddressInfo[];
  close(): Promise<void>;
}

/** Serves the site on every host (one server each: a server listens once); resolves when all listen. */
export async function startSite(opts: SiteOptions): Promise<RunningSite> {
  const handler = siteHandler(opts.log);
  const servers: Http2SecureServer[] = [];
  const close = async () => {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  };
  try {
    for (const host of opts.hosts) {
      const server = http2.createSecureServer({ cert: opts.cert, key: opts.key, allowHTTP1: true, ALPNProtocols: ['h2', 'http/1.1'] }, handler);
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(opts.port, host, () => {
          server.off('error', reject);
          resolve();
        });
      });
    }
  } catch (err) {
    await close();
    throw err;
  }
  return { addresses: servers.map((s) => s.address() as AddressInfo), close };
}
