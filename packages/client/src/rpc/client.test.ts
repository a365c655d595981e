import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, beforeEach, describe, test } from 'node:test';
import { ErrorCode, RpcError, methods, type Exchange } from '@tproxy/protocol';
import { FakeHelper, NO_REPLY } from '../test/fake-helper.js';
import { runningStatus, sampleExchange, stoppedStatus } from '../test/fixtures.js';
import { TproxyClient, resolveSocketPath, type ExchangeEvent } from './client.js';
import {
  CallTimeoutError,
  ConnectionClosedError,
  DaemonUnreachableError,
  ProtocolError,
  isAccessDenied,
  isCaptureNotRunning,
  isDaemonUnreachable,
} from './errors.js';

describe('TproxyClient against a fake helper', () => {
  let fake: FakeHelper;
  let client: TproxyClient | undefined;

  beforeEach(async () => {
    fake = await FakeHelper.start();
  });
  afterEach(async () => {
    await client?.close();
    client = undefined;
    await fake.close();
  });

  test('a typed call round-trips params and the validated result', async () => {
    fake.on('capture.start', () => runningStatus());
    client = await TproxyClient.connect({ socketPath: fake.socketPath });
    const status = await client.call(methods.captureStart, { ports: [443, 8443], listenPort: 9443 });
    assert.equal(status.running, true);
    assert.deepEqual(status.listeners[0], { address: '127.0.0.1', port: 8443 });
    assert.deepEqual(fake.received, [{ method: 'capture.start', params: { ports: [443, 8443], listenPort: 9443 } }]);
  });

  test('a result that fails the schema is a ProtocolError naming the method and field', async () => {
    fake.on('capture.status', () => ({ ...stoppedStatus(), running: 'yes' }));
    client = await TproxyClient.connect({ socketPath: fake.socketPath });
    await assert.rejects(client.call(methods.captureStatus, {}), (err: unknown) => {
      assert.ok(err instanceof ProtocolError);
      assert.match(err.message, /invalid result for capture\.status: running:/);
      return true;
    });
  });

  test('an error response becomes an RpcError with its code and data', async () => {
    fake.on('exchanges.get', () => {
      throw new RpcError(ErrorCode.CaptureNotRunning, 'capture is not running', { since: 12 });
    });
    client = await TproxyClient.connect({ socketPath: fake.socketPath });
    await assert.rejects(client.call(methods.exchangesGet, { id: 1 }), (err: unknown) => {
      assert.ok(err instanceof RpcError);
      assert.equal(err.code, ErrorCode.CaptureNotRunning);
      assert.equal(err.codeName, 'capture-not-running');
      assert.equal(err.message, 'capture is not running');
      assert.deepEqual(err.detail, { since: 12 });
      assert.ok(isCaptureNotRunning(err));
      assert.ok(!isAccessDenied(err));
      return true;
    });
  });

  test('exchange notifications reach onExchange, validated, in order', async () => {
    client = await TproxyClient.connect({ socketPath: fake.socketPath });
    const seen: Array<[ExchangeEvent, Exchange]> = [];
    const errors: Error[] = [];
    client.onExchange((event, exchange) => seen.push([event, exchange]));
    client.onError((err) => errors.push(err));
    await client.call(methods.exchangesSubscribe, {});
    const ex = sampleExchange();
    fake.notifyExchange('started', { ...ex, state: 'in-flight', response: undefined });
    fake.notify('exchange.completed', { exchange: { id: 'not-an-exchange' } });
    fake.notify('capture.state', { running: true });
    fake.notifyExchange('completed', ex);
    // A call after the notifications proves they were all processed (same socket, in order).
    fake.on('capture.status', () => stoppedStatus());
    await client.call(methods.captureStatus, {});
    assert.deepEqual(
      seen.map(([event, e]) => [event, e.id, e.state]),
      [
        ['started', 42, 'in-flight'],
        ['completed', 42, 'complete'],
      ],
    );
    assert.equal(errors.length, 1);
    assert.match(errors[0]!.message, /invalid exchange\.completed notification/);
  });

  test('a call the helper never answers times out with the method named', async () => {
    fake.on('capture.status', () => NO_REPLY);
    client = await TproxyClient.connect({ socketPath: fake.socketPath, timeoutMs: 50 });
    await assert.rejects(client.call(methods.captureStatus, {}), (err: unknown) => {
      assert.ok(err instanceof CallTimeoutError);
      assert.equal(err.method, 'capture.status');
      assert.match(err.message, /^capture\.status: tproxy-helper did not answer within 50 ms$/);
      return true;
    });
    // The connection stays usable after a timeout.
    fake.on('capture.stop', () => stoppedStatus());
    assert.equal((await client.call(methods.captureStop, {})).running, false);
  });

  test('pending calls are rejected when the helper goes away, and later calls too', async () => {
    fake.on('capture.status', () => stoppedStatus());
    fake.on('capture.start', () => NO_REPLY);
    client = await TproxyClient.connect({ socketPath: fake.socketPath });
    await client.call(methods.captureStatus, {});
    const closed = new Promise<Error>((resolve) => client!.onClose(resolve));
    const pending = client.call(methods.captureStart, {});
    await fake.waitForCall('capture.start');
    fake.dropConnections();
    await assert.rejects(pending, (err: unknown) => {
      assert.ok(err instanceof ConnectionClosedError);
      assert.match(err.message, /tproxy-helper closed the connection/);
      return true;
    });
    assert.ok((await closed) instanceof ConnectionClosedError);
    await assert.rejects(client.call(methods.captureStatus, {}), ConnectionClosedError);
  });

  test('close() rejects pending calls with ConnectionClosedError', async () => {
    fake.on('capture.start', () => NO_REPLY);
    client = await TproxyClient.connect({ socketPath: fake.socketPath });
    const pending = client.call(methods.captureStart, {});
    await fake.waitForCall('capture.start');
    await client.close();
    await assert.rejects(pending, /connection closed/);
  });

  test('a helper that closes before answering is reported as access denied, with the hint', async () => {
    fake.refuseConnections = true;
    client = await TproxyClient.connect({ socketPath: fake.socketPath });
    await assert.rejects(client.call(methods.captureStatus, {}), (err: unknown) => {
      assert.ok(isAccessDenied(err));
      assert.equal(err.codeName, 'access-denied');
      assert.match(err.message, /closed the connection without answering/);
      assert.match(err.message, /--allow-uid \d+/);
      return true;
    });
  });

  test('the helper refusing a uid (an id:null AccessDenied, then close) is access denied with its message', async () => {
    fake.refuseWith = new RpcError(ErrorCode.AccessDenied, 'access denied: uid 1000 may not use tproxy-helper; start the helper with --allow-uid 1000');
    client = await TproxyClient.connect({ socketPath: fake.socketPath });
    await assert.rejects(client.call(methods.captureStatus, {}), (err: unknown) => {
      assert.ok(isAccessDenied(err));
      assert.match(err.message, /^access denied: uid 1000 may not use tproxy-helper/);
      return true;
    });
  });

  test('a line that is not JSON ends the connection with a ProtocolError', async () => {
    fake.on('capture.status', (_p, conn) => {
      conn.sendRaw('this is not json');
      return NO_REPLY;
    });
    client = await TproxyClient.connect({ socketPath: fake.socketPath });
    await assert.rejects(client.call(methods.captureStatus, {}), (err: unknown) => {
      assert.ok(err instanceof ProtocolError);
      assert.match(err.message, /not JSON/);
      return true;
    });
  });
});

describe('DaemonUnreachableError', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tproxy-client-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('ENOENT: no socket file → not running, with the start hint', async () => {
    const path = join(dir, 'missing.sock');
    await assert.rejects(TproxyClient.connect({ socketPath: path }), (err: unknown) => {
      assert.ok(isDaemonUnreachable(err));
      assert.equal(err.errno, 'ENOENT');
      assert.equal(err.reason, 'not-running');
      assert.equal(
        err.message,
        `tproxy-helper is not running at ${path}: start it with \`sudo node_modules/.bin/tproxy-helper\` ` +
          '(or `systemctl enable --now tproxy-helper.socket`)',
      );
      return true;
    });
  });

  test('ECONNREFUSED: a stale socket file nobody listens on → not running', async () => {
    const live = join(dir, 'live.sock');
    const stale = join(dir, 'stale.sock');
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(live, resolve));
    // Closing a server unlinks its path; renaming first leaves a socket file with no listener.
    renameSync(live, stale);
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await assert.rejects(TproxyClient.connect({ socketPath: stale }), (err: unknown) => {
      assert.ok(err instanceof DaemonUnreachableError);
      assert.equal(err.errno, 'ECONNREFUSED');
      assert.match(err.message, /^tproxy-helper is not running at .*stale\.sock: start it with/);
      return true;
    });
  });

  test('EACCES gets the permission hint', () => {
    const err = new DaemonUnreachableError('/run/tproxy/helper.sock', Object.assign(new Error('x'), { code: 'EACCES' }));
    assert.equal(err.reason, 'permission-denied');
    assert.match(
      err.message,
      /^permission denied on \/run\/tproxy\/helper\.sock: the socket is 0600; run as root or start the helper with --allow-uid \d+$/,
    );
  });
});

test('resolveSocketPath: option, then $TPROXY_SOCKET, then the default', () => {
  assert.equal(resolveSocketPath('/a.sock', { TPROXY_SOCKET: '/b.sock' }), '/a.sock');
  assert.equal(resolveSocketPath(undefined, { TPROXY_SOCKET: '/b.sock' }), '/b.sock');
  assert.equal(resolveSocketPath(undefined, {}), '/run/tproxy/helper.sock');
});
