/**
 * Test and manual-run support: a FakeHelper (../../test/fake-helper.ts) that behaves enough like
 * tproxy-helper for the dashboard: helper.info, capture.status/start/stop with the protocol's own
 * validation, exchanges.list/get over an in-memory buffer, and a generator of plausible exchanges
 * (started → updated → completed, some failing, some hostile). Test-only.
 */
import {
  CaptureStartParamsSchema,
  ErrorCode,
  RpcError,
  formatZodError,
  type CaptureStatus,
  type Exchange,
  type ExchangeDetail,
} from '@tproxy/protocol';
import { FakeHelper } from '../../test/fake-helper.js';
import { runningStatus, sampleInfo, stoppedStatus } from '../../test/fixtures.js';

export interface FakeWorld {
  readonly fake: FakeHelper;
  status: CaptureStatus;
  readonly exchanges: Map<number, ExchangeDetail>;
  /** Stores the exchange (with bodies) and notifies subscribers with `event`. */
  emit(event: 'started' | 'updated' | 'completed', exchange: Exchange, bodies?: { request?: string | Uint8Array; response?: string | Uint8Array }): void;
}

const b64 = (body: string | Uint8Array | undefined) => (body === undefined ? '' : Buffer.from(body).toString('base64'));

/** Starts a fake helper with the dashboard's methods wired to an in-memory world. */
export async function startFakeWorld(initial: CaptureStatus = stoppedStatus()): Promise<FakeWorld> {
  const fake = await FakeHelper.start();
  const startedAt = Date.now();
  const world: FakeWorld = {
    fake,
    status: initial,
    exchanges: new Map(),
    emit(event, exchange, bodies) {
      const prev = world.exchanges.get(exchange.id);
      world.exchanges.set(exchange.id, {
        exchange,
        requestBody: bodies?.request !== undefined ? b64(bodies.request) : (prev?.requestBody ?? ''),
        responseBody: bodies?.response !== undefined ? b64(bodies.response) : (prev?.responseBody ?? ''),
      });
      fake.notifyExchange(event, exchange);
    },
  };
  fake
    .on('helper.info', () => sampleInfo({ uptimeMs: Date.now() - startedAt }))
    .on('capture.status', () => world.status)
    .on('capture.start', (params) => {
      const parsed = CaptureStartParamsSchema.safeParse(params);
      if (!parsed.success) throw new RpcError(ErrorCode.InvalidParams, formatZodError(parsed.error));
      if (world.status.running) throw new RpcError(ErrorCode.CaptureAlreadyRunning, 'capture is already running');
      world.status = runningStatus({ config: parsed.data, interceptCount: 0 });
      return world.status;
    })
    .on('capture.stop', () => {
      world.status = stoppedStatus();
      return world.status;
    })
    .on('exchanges.list', (params) => {
      const { limit = 100, cursor } = params as { limit?: number; cursor?: number };
      const all = [...world.exchanges.values()].map((d) => d.exchange).filter((e) => cursor === undefined || e.id < cursor).sort((a, b) => b.id - a.id);
      const page = all.slice(0, limit);
      return { exchanges: page, ...(all.length > limit ? { nextCursor: page[page.length - 1]!.id } : {}) };
    })
    .on('exchanges.get', (params) => {
      const d = world.exchanges.get((params as { id: number }).id);
      if (!d) throw new RpcError(ErrorCode.ExchangeNotFound, 'no such exchange');
      return d;
    });
  return world;
}

const HOSTS = ['api.example.com', 'cdn.example.net', 'auth.example.org', 'updates.example.io', 'telemetry.example.com'];
const PATHS = ['/v1/users/42', '/v1/orders?page=2', '/static/app.js', '/oauth/token', '/events', '/health', '/v2/search?q=proxy'];
const METHODS = ['GET', 'GET', 'GET', 'POST', 'PUT', 'DELETE'];
const STATUSES = [200, 200, 200, 201, 204, 301, 304, 404, 429, 500, 503];

/** A plausible exchange `n`, deterministic in `n`. */
export function generatedExchange(id: number, startedAt: number): { exchange: Exchange; response: string } {
  const host = HOSTS[id % HOSTS.length]!;
  const path = PATHS[(id * 3 + Math.floor(id / 5)) % PATHS.length]!;
  const method = METHODS[(id * 3) % METHODS.length]!;
  const status = STATUSES[(id * 5) % STATUSES.length]!;
  const json = path.startsWith('/v');
  const response = json ? JSON.stringify({ id, host, items: [{ name: 'alpha', ok: true }, { name: 'beta', ok: status < 400 }] }) : `console.log(${id});\n`;
  const failed = id % 17 === 0;
  const exchange: Exchange = {
    id,
    state: failed ? 'error' : 'complete',
    client: { address: '127.0.0.1', port: 40000 + (id % 20000) },
    server: { address: '93.184.216.34', port: 443 },
    tls: { sni: host, clientVersion: 'TLSv1.3', upstreamVersion: 'TLSv1.3', alpn: 'http/1.1' },
    request: {
      method,
      url: `https://${host}${path}`,
      httpVersion: '1.1',
      headers: [
        ['Host', host],
        ['User-Agent', 'curl/8.5.0'],
        ['Authorization', 'Bearer eyJh…[masked 120]'],
        ['Accept', '*/*'],
      ],
      body: { size: 0, captured: 0, truncated: false },
    },
    ...(failed
      ? { error: { kind: 'upstream-connect' as const, message: 'connect ECONNREFUSED 93.184.216.34:443', code: 'ECONNREFUSED' } }
      : {
          response: {
            status,
            statusMessage: status < 300 ? 'OK' : status < 400 ? 'Moved' : status < 500 ? 'Client Error' : 'Server Error',
            httpVersion: '1.1',
            headers: [['Content-Type', json ? 'application/json' : 'application/javascript']],
            body: { size: response.length, captured: response.length, truncated: false },
          },
        }),
    timing: { startedAt, upstreamConnected: 3 + (id % 7), firstByte: 20 + (id % 40), end: 30 + (id % 300) },
  };
  return { exchange, response: failed ? '' : response };
}

/** Run directly: a fake helper with `RATE` generated exchanges per second; prints its socket path. */
async function serve(): Promise<void> {
  const rate = Number(process.env.RATE ?? 20);
  const world = await startFakeWorld(runningStatus({ interceptCount: 0 }));
  process.stdout.write(`${world.fake.socketPath}\n`);
  let id = 0;
  setInterval(() => {
    for (let i = 0; i < Math.max(1, rate / 10); i++) {
      const { exchange, response } = generatedExchange(++id, Date.now());
      const started: Exchange = { ...exchange, state: 'in-flight', response: undefined, error: undefined, timing: { startedAt: exchange.timing.startedAt } };
      world.emit('started', started);
      setTimeout(() => world.emit('completed', exchange, { response }), 50 + (id % 500));
      if (world.status.running) world.status = { ...world.status, interceptCount: world.status.interceptCount + 1 };
    }
  }, 100);
  process.on('SIGTERM', () => void world.fake.close().then(() => process.exit(0)));
}

if (process.argv[1]?.endsWith('fake-traffic.ts')) await serve();
