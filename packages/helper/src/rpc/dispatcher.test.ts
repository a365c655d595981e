import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CAPTURE_DEFAULTS, type CaptureStatus } from '@tproxy/protocol';
import { ExchangeStore } from '../capture/store.js';
import { silentLogger } from '../log.js';
import type { CaptureControl, RequestContext } from './context.js';
import { Dispatcher } from './dispatcher.js';
import { routes } from './handlers/index.js';

const stopped: CaptureStatus = { running: false, available: true, interceptCount: 0, listeners: [], rules: [], caInstalled: false };

class FakeCapture implements CaptureControl {
  started: unknown[] = [];
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

function setup(write = true) {
  const capture = new FakeCapture();
  const ctx: RequestContext = {
    peer: { uid: write ? 0 : 1000, gid: 0, pid: 1 },
    permissions: { read: true, write },
    connection: { id: 1, subscribed: false, subscribe() {}, unsubscribe() {} },
    services: {
      capture,
      store: new ExchangeStore(),
      info: () => ({ name: 'tproxy-helper', version: '0', protocolVersion: 1, pid: 1, uptimeMs: 0, native: { available: true }, stateDir: '/x' }),
    },
    log: silentLogger,
  };
  const d = new Dispatcher(routes, silentLogger);
  const call = async (msg: unknown) => d.receive(typeof msg === 'string' ? msg : JSON.stringify(msg), ctx);
  return { capture, call };
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
});
