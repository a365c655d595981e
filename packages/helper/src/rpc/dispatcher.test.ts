import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CAPTURE_DEFAULTS, defineMethod, type CaptureStatus } from '@tproxy/protocol';
import { z } from 'zod';
import { ExchangeStore } from '../capture/store.js';
import { silentLogger } from '../log.js';
import type { CaptureControl, RequestContext } from './context.js';
import { captureDouble, servicesDouble } from './test-support.js';
import { Dispatcher, route, type DispatcherOptions, type Route } from './dispatcher.js';
import { routes } from './handlers/index.js';

const stopped: CaptureStatus = { running: false, available: true, interceptCount: 0, listeners: [], rules: [], caInstalled: false };

class FakeCapture implements CaptureControl {
  started: unknown[] = [];
  caInstall = captureDouble().caInstall;
  caUninstall = captureDouble().caUninstall;
  caRotate = captureDouble().caRotate;
  onStatusChange = captureDouble().onStatusChange;
  async start(config: Parameters<CaptureControl['start']>[0]) {
    this.started.push(config);
    return { ...stopped, running: true, config };
  }
  async stop() {
    return stopped;
  }
  status() {
    return stopped;
  }
  async ca() {
    return { pem: 'PEM', fingerprintSha256: 'AA', subject: 'CN', notAfter: '2036-01-01T00:00:00.000Z', installed: false, caPath: '/run/tproxy/ca.pem', bundlePath: '/run/tproxy/bundle.pem', env: {} };
  }
}

function setup(write = true, extraRoutes?: Route[], options?: DispatcherOptions) {
  const capture = new FakeCapture();
  let repairs = 0;
  const ctx: RequestContext = {
    peer: { uid: write ? 0 : 1000, gid: 0, pid: 1 },
    permissions: { read: true, write },
    connection: { id: 1, subscribed: false, subscribe() {}, unsubscribe() {}, notify: async () => {}, onClose() {} },
    services: servicesDouble({
      capture,
      store: new ExchangeStore(),
      repair: async () => {
        repairs++;
        return { removed: ['nft table inet tproxy_helper'] };
      },
    }),
    log: silentLogger,
  };
  const d = new Dispatcher(extraRoutes ? [...routes, ...extraRoutes] : routes, silentLogger, options);
  const call = async (msg: unknown) => d.receive(typeof msg === 'string' ? msg : JSON.stringify(msg), ctx);
  return { capture, call, repairs: () => repairs };
}

describe('Dispatcher', () => {
  it('parses params with defaults before the handler runs', async () => {
    const { capture, call } = setup();
    const res = await call({ jsonrpc: '2.0', id: 1, method: 'capture.start', params: { ports: [443, 8443], listenPort: 9443 } });
    assert.ok(res && !Array.isArray(res) && 'result' in res);
    assert.deepEqual(capture.started, [{ ...CAPTURE_DEFAULTS, ports: [443, 8443], listenPort: 9443 }]);
  });

  it('answers invalid params with -32602 naming the field', async () => {
    const { capture, call } = setup();
    const res = await call({ jsonrpc: '2.0', id: 2, method: 'capture.start', params: { mark: 0 } });
    assert.deepEqual(res, {
      jsonrpc: '2.0',
      id: 2,
      error: { code: -32602, message: 'invalid params for capture.start: mark: mark must be greater than 0 (0 means "no mark")', data: { code: 'invalid-params' } },
    });
    assert.equal(capture.started.length, 0);
  });

  it('refuses write methods to a read-only connection', async () => {
    const { capture, call } = setup(false);
    const res = await call({ jsonrpc: '2.0', id: 3, method: 'capture.start' });
    assert.ok(res && !Array.isArray(res) && 'error' in res);
    assert.equal(res.error?.code, -32001);
    assert.equal(capture.started.length, 0);
    const read = await call({ jsonrpc: '2.0', id: 4, method: 'capture.status' });
    assert.ok(read && !Array.isArray(read) && 'result' in read);
  });

  it('gives standard errors a data.code too', async () => {
    const { call } = setup();
    const parse = await call('{not json');
    assert.ok(parse && !Array.isArray(parse) && 'error' in parse);
    assert.equal(parse.error?.code, -32700);
    assert.deepEqual(parse.error?.data, { code: 'parse-error' });
    const unknown = await call({ jsonrpc: '2.0', id: 5, method: 'nope' });
    assert.ok(unknown && !Array.isArray(unknown) && 'error' in unknown);
    assert.equal(unknown.error?.code, -32601);
    assert.deepEqual(unknown.error?.data, { code: 'method-not-found' });
  });

  it('maps a missing exchange to ExchangeNotFound', async () => {
    const { call } = setup();
    const res = await call({ jsonrpc: '2.0', id: 6, method: 'exchanges.get', params: { id: 99 } });
    assert.ok(res && !Array.isArray(res) && 'error' in res);
    assert.equal(res.error?.code, -32020);
  });

  it('answers nothing to a notification', async () => {
    const { call } = setup();
    assert.equal(await call({ jsonrpc: '2.0', method: 'capture.status' }), null);
  });

  it('rejects huge numbers and deep nesting as invalid params without failing', async () => {
    const { call } = setup();
    const huge = await call('{"jsonrpc":"2.0","id":7,"method":"exchanges.get","params":{"id":1e400}}');
    assert.ok(huge && !Array.isArray(huge) && 'error' in huge);
    assert.equal(huge.error?.code, -32602);
    const deep = '{"jsonrpc":"2.0","id":8,"method":"capture.status","params":' + '['.repeat(5000) + ']'.repeat(5000) + '}';
    const res = await call(deep);
    assert.ok(res && !Array.isArray(res) && 'error' in res);
    assert.equal(res.error?.code, -32602);
  });

  it('serves helper.repair to write connections only', async () => {
    const ok = setup();
    const res = await ok.call({ jsonrpc: '2.0', id: 9, method: 'helper.repair' });
    assert.deepEqual(res, { jsonrpc: '2.0', id: 9, result: { removed: ['nft table inet tproxy_helper'] } });
    assert.equal(ok.repairs(), 1);
    const ro = setup(false);
    const denied = await ro.call({ jsonrpc: '2.0', id: 10, method: 'helper.repair', params: {} });
    assert.ok(denied && !Array.isArray(denied) && 'error' in denied);
    assert.equal(denied.error?.code, -32001);
    assert.equal(ro.repairs(), 0);
    const bad = await ok.call({ jsonrpc: '2.0', id: 11, method: 'helper.repair', params: { force: true } });
    assert.ok(bad && !Array.isArray(bad) && 'error' in bad);
    assert.equal(bad.error?.code, -32602);
  });

  it('answers request-timeout when a handler outlives its bound, and keeps serving', async () => {
    const slowMethod = defineMethod({ method: 'test.slow', summary: 'sleeps', params: z.object({ ms: z.number() }).strict(), result: z.object({ ok: z.boolean() }), access: 'read' });
    const exempt = defineMethod({ method: 'test.stream', summary: 'sleeps, exempt', params: z.object({ ms: z.number() }).strict(), result: z.object({ ok: z.boolean() }), access: 'read' });
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    let lateFailure = false;
    const failing = defineMethod({ method: 'test.failLate', summary: 'fails after its bound', params: z.object({}).strict(), result: z.object({}), access: 'read' });
    const { call } = setup(true, [
      route(slowMethod, async ({ ms }) => (await sleep(ms), { ok: true })),
      route(exempt, async ({ ms }) => (await sleep(ms), { ok: true })),
      route(failing, async () => {
        await sleep(150);
        lateFailure = true;
        throw new Error('late failure must not become an unhandled rejection');
      }),
    ], { defaultTimeoutMs: 100, timeoutsMs: { 'test.stream': null } });
    const t0 = Date.now();
    const timedOut = await call({ jsonrpc: '2.0', id: 20, method: 'test.slow', params: { ms: 400 } });
    assert.ok(timedOut && !Array.isArray(timedOut) && 'error' in timedOut);
    assert.equal(timedOut.error?.code, -32019);
    assert.deepEqual(timedOut.error?.data, { timeoutMs: 100, code: 'request-timeout' });
    assert.match(timedOut.error!.message, /^test\.slow did not finish within 0\.1 s/);
    assert.ok(Date.now() - t0 < 350, 'answered at the bound, not when the handler finished');
    const fast = await call({ jsonrpc: '2.0', id: 21, method: 'test.slow', params: { ms: 1 } });
    assert.deepEqual(fast, { jsonrpc: '2.0', id: 21, result: { ok: true } });
    const streamed = await call({ jsonrpc: '2.0', id: 22, method: 'test.stream', params: { ms: 250 } });
    assert.deepEqual(streamed, { jsonrpc: '2.0', id: 22, result: { ok: true } });
    let unhandled: unknown = null;
    const onUnhandled = (err: unknown) => (unhandled = err);
    process.on('unhandledRejection', onUnhandled);
    try {
      const late = await call({ jsonrpc: '2.0', id: 23, method: 'test.failLate' });
      assert.ok(late && !Array.isArray(late) && 'error' in late);
      assert.equal(late.error?.code, -32019);
      await sleep(200);
      assert.ok(lateFailure, 'the abandoned handler ran to its end');
      assert.equal(unhandled, null);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('gives wrong types and unknown methods the right codes', async () => {
    const { call } = setup();
    const code = async (line: string) => {
      const r = await call(line);
      assert.ok(r && !Array.isArray(r) && 'error' in r, line);
      return r.error!.code;
    };
    assert.equal(await code('{"jsonrpc":"2.0","id":1,"method":5}'), -32600);
    assert.equal(await code('{"jsonrpc":"2.0","id":1}'), -32600);
    assert.equal(await code('[1'), -32700);
    assert.equal(await code('{"jsonrpc":"2.0","id":1,"method":"capture.start","params":"x"}'), -32602);
    assert.equal(await code('{"jsonrpc":"2.0","id":1,"method":"exchanges.get","params":{"id":"7"}}'), -32602);
    assert.equal(await code('{"jsonrpc":"2.0","id":1,"method":"exchanges.list","params":{"limit":1e308}}'), -32602);
    assert.equal(await code('{"jsonrpc":"2.0","id":1,"method":"no.such"}'), -32601);
    assert.equal(await code('"just a string"'), -32600);
  });

  it('never echoes an id it could not write back: deep, non-finite or structured ids get invalid-request with id null', async () => {
    const { call } = setup();
    for (const id of ['['.repeat(10_000) + ']'.repeat(10_000), '1e400', '{"a":1}', 'true']) {
      const r = await call(`{"jsonrpc":"2.0","id":${id},"method":"helper.info"}`);
      assert.ok(r && !Array.isArray(r) && 'error' in r);
      assert.equal(r.id, null);
      assert.equal(r.error?.code, -32600);
      assert.match(r.error!.message, /"id" must be a string, a finite number or null/);
      JSON.stringify(r);
    }
  });

  it('answers batches element by element and bounds their size', async () => {
    const { call } = setup();
    const batch = await call('[{"jsonrpc":"2.0","id":1,"method":"capture.status"},{"jsonrpc":"2.0","id":2,"method":5},{"jsonrpc":"2.0","method":"capture.status"}]');
    assert.ok(Array.isArray(batch));
    assert.equal(batch.length, 2, 'the notification gets no response');
    assert.ok('result' in batch[0]! && batch[0].id === 1);
    assert.equal(batch[1]!.id, 2);
    assert.equal('error' in batch[1]! && batch[1].error?.code, -32600);
    const huge = await call(JSON.stringify(Array.from({ length: 10_000 }, (_, i) => ({ jsonrpc: '2.0', id: i, method: 'capture.status' }))));
    assert.ok(huge && !Array.isArray(huge) && 'error' in huge);
    assert.equal(huge.error?.code, -32600);
    assert.match(huge.error!.message, /at most 64 per batch/);
    const empty = await call('[]');
    assert.ok(empty && !Array.isArray(empty) && 'error' in empty);
    assert.equal(empty.error?.code, -32600);
  });
});
