process.env.TZ = 'UTC';

import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import {
  CaptureStartParamsSchema,
  ErrorCode,
  RpcError,
  formatZodError,
  type CaptureStatus,
  type ExchangeDetail,
} from '@tproxy/protocol';
import { FakeHelper } from '../test/fake-helper.js';
import { runningStatus, sampleCa, sampleExchange, sampleInfo, stoppedStatus } from '../test/fixtures.js';
import type { Io } from './command.js';
import { main } from './main.js';

/** An Io that records output and lets the test deliver a "signal". */
function recordingIo(env: Record<string, string | undefined> = {}) {
  const out: Buffer[] = [];
  const err: string[] = [];
  let signalHandler: (() => void) | undefined;
  const io: Io = {
    stdout: { write: (chunk) => out.push(Buffer.from(chunk)) },
    stderr: { write: (chunk) => err.push(chunk) },
    env,
    onSignal(handler) {
      signalHandler = handler;
      return () => {
        signalHandler = undefined;
      };
    },
  };
  return {
    io,
    stdout: () => Buffer.concat(out).toString('utf8'),
    stdoutBytes: () => Buffer.concat(out),
    stderr: () => err.join(''),
    sendSignal: () => signalHandler?.(),
  };
}

describe('tproxyctl against a fake helper', () => {
  let fake: FakeHelper;
  let state: CaptureStatus;

  /** Runs tproxyctl with --socket pointing at the fake. */
  async function run(...argv: string[]) {
    const rec = recordingIo();
    const code = await main([...argv, '--socket', fake.socketPath], rec.io);
    return { code, stdout: rec.stdout(), stderr: rec.stderr(), bytes: rec.stdoutBytes() };
  }

  beforeEach(async () => {
    fake = await FakeHelper.start();
    state = stoppedStatus();
    fake
      .on('capture.status', () => state)
      .on('helper.info', () => sampleInfo())
      .on('ca.get', () => sampleCa())
      .on('capture.start', (params) => {
        // The real helper validates with the protocol schema and names the field; so does the fake.
        const parsed = CaptureStartParamsSchema.safeParse(params);
        if (!parsed.success) throw new RpcError(ErrorCode.InvalidParams, formatZodError(parsed.error));
        state = runningStatus({ config: parsed.data });
        return state;
      })
      .on('capture.stop', () => {
        state = stoppedStatus();
        return state;
      });
  });
  afterEach(() => fake.close());

  describe('status', () => {
    test('human summary of capture.status and helper.info', async () => {
      const r = await run('status');
      assert.equal(r.code, 0);
      assert.equal(r.stdout, 'capture: stopped\nCA: not installed\nhelper: tproxy-helper 0.1.0, protocol 1, pid 4242, up 3m 5s\n');
      assert.equal(r.stderr, '');
    });

    test('--json prints the raw status object', async () => {
      state = runningStatus();
      const r = await run('status', '--json');
      assert.equal(r.code, 0);
      assert.deepEqual(JSON.parse(r.stdout), state);
    });
  });

  describe('start', () => {
    test('passes only the given flags, hex and comma lists included, and prints the status', async () => {
      const r = await run('start', '--port', '443', '--port', '8080,9443', '--mark', '0x10', '--no-ipv6', '--body-limit', '1024');
      assert.equal(r.code, 0, r.stderr);
      const start = fake.received.find((m) => m.method === 'capture.start');
      assert.deepEqual(start?.params, { ports: [443, 8080, 9443], mark: 16, ipv6: false, bodyCaptureLimit: 1024 });
      assert.match(r.stdout, /^capture started\ncapture: running since /);
      assert.match(r.stdout, /^config: ports 443,8080,9443, mark 0x10\/0x3fff, .*ipv6 off/m);
    });

    test('scope and firewall flags', async () => {
      const r = await run('start', '--uid', '1000,1001', '--cgroup', 'system.slice/x.service', '--firewall', 'iptables');
      assert.equal(r.code, 0, r.stderr);
      const start = fake.received.find((m) => m.method === 'capture.start');
      assert.deepEqual(start?.params, { scope: { uids: [1000, 1001], cgroup: 'system.slice/x.service' }, firewall: 'iptables' });
      const bad = await run('start', '--firewall', 'pf');
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /--firewall must be auto, nft, iptables/);
    });

    test('checks state first: "capture already running" → exit 1, no capture.start', async () => {
      state = runningStatus();
      const r = await run('start');
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^error: capture already running/);
      assert.equal(r.stdout, '');
      assert.ok(!fake.received.some((m) => m.method === 'capture.start'));
    });

    test('unavailable capture → exit 1 with the reason', async () => {
      state = stoppedStatus({ available: false, reason: 'the native addon is not built' });
      const r = await run('start');
      assert.equal(r.code, 1);
      assert.equal(r.stderr, 'error: capture unavailable: the native addon is not built\n');
    });

    test("the helper's -32602 naming the field is printed; --json gives {error} with data.code", async () => {
      const human = await run('start', '--port', '70000');
      assert.equal(human.code, 1);
      assert.equal(human.stderr, 'error: ports[0]: ports[] must be between 1 and 65535\n');
      const json = await run('start', '--json', '--listen-port', '443');
      assert.equal(json.code, 1);
      assert.deepEqual(JSON.parse(json.stderr), {
        error: {
          code: -32602,
          message: 'listenPort: listenPort must not be one of the intercepted ports (the listener would intercept itself)',
          data: { code: 'invalid-params' },
        },
      });
    });

    test('usage errors exit 2 before connecting', async () => {
      for (const argv of [['--bogus'], ['--mark', 'abc'], ['--port', '-1'], ['extra']]) {
        const r = await run('start', ...argv);
        assert.equal(r.code, 2, argv.join(' '));
        assert.match(r.stderr, /Run 'tproxyctl start --help' for usage\.\n$/);
      }
      assert.deepEqual(fake.received, []);
      const unknown = await run('start', '--bogus');
      assert.match(unknown.stderr, /^tproxyctl: unknown option '--bogus'\n/);
    });
  });

  describe('stop', () => {
    test('stops a running capture and prints the status', async () => {
      state = runningStatus();
      const r = await run('stop');
      assert.equal(r.code, 0);
      assert.match(r.stdout, /^capture stopped\ncapture: stopped\n/);
      assert.ok(fake.received.some((m) => m.method === 'capture.stop'));
    });

    test('is idempotent: not running → says so, exit 0, no capture.stop', async () => {
      const r = await run('stop');
      assert.equal(r.code, 0);
      assert.match(r.stdout, /^capture is not running\n/);
      assert.ok(!fake.received.some((m) => m.method === 'capture.stop'));
    });

    test('a capture-not-running race is still success', async () => {
      state = runningStatus();
      fake.on('capture.stop', () => {
        state = stoppedStatus();
        throw new RpcError(ErrorCode.CaptureNotRunning, 'capture is not running');
      });
      const r = await run('stop', '--json');
      assert.equal(r.code, 0);
      assert.equal(JSON.parse(r.stdout).running, false);
    });
  });

  describe('get', () => {
    const hostileDetail = (): ExchangeDetail => {
      const exchange = sampleExchange();
      exchange.request.url = 'https://example.com/\x1b]0;owned\x07';
      exchange.response!.headers.push(['X-Title', '\x1b]2;pwned\x07\x9b2J']);
      return {
        exchange,
        requestBody: '',
        responseBody: Buffer.from('line one\r\n\x1b[2J\x1b[Hcleared?\rover\n').toString('base64'),
      };
    };

    test('human output escapes every control character from the capture', async () => {
      fake.on('exchanges.get', () => hostileDetail());
      const r = await run('get', '42');
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(rawControls(r.stdout), [], 'no raw BEL/ESC/CR/CSI reaches the terminal');
      assert.match(r.stdout, /^GET https:\/\/example\.com\/\\x1b\]0;owned\\x07 -> 200 OK$/m);
      assert.match(r.stdout, /^X-Title: \\x1b\]2;pwned\\x07\\x9b2J$/m);
      assert.match(r.stdout, /^line one\n\\x1b\[2J\\x1b\[Hcleared\?\\rover$/m);
      assert.deepEqual(fake.received.find((m) => m.method === 'exchanges.get')?.params, { id: 42 });
    });

    test('--body response writes the raw bytes; --json the raw result', async () => {
      const detail = hostileDetail();
      fake.on('exchanges.get', () => detail);
      const raw = await run('get', '42', '--body', 'response');
      assert.equal(raw.code, 0);
      assert.deepEqual(raw.bytes, Buffer.from(detail.responseBody, 'base64'));
      const json = await run('get', '42', '--json');
      assert.deepEqual(JSON.parse(json.stdout), detail);
      assert.deepEqual(rawControls(json.stdout), []);
    });

    test('a truncated body warns on stderr', async () => {
      const detail = hostileDetail();
      detail.exchange.response!.body = { size: 100_000, captured: 10, truncated: true };
      fake.on('exchanges.get', () => detail);
      const r = await run('get', '42', '--body', 'response');
      assert.equal(r.stderr, 'warning: the response body was 100000 bytes; only the first 10 were captured\n');
    });

    test('--body response of an exchange without a response → exit 1, nothing on stdout', async () => {
      fake.on('exchanges.get', () => ({
        exchange: sampleExchange({ state: 'error', response: undefined, error: { kind: 'upstream-connect', message: 'refused' } }),
        requestBody: '',
        responseBody: '',
      }));
      const r = await run('get', '42', '--body', 'response');
      assert.equal(r.code, 1);
      assert.equal(r.stdout, '');
      assert.equal(r.stderr, 'error: exchange 42 has no response (state: error)\n');
    });

    test('unknown id → exit 1 with the helper message; bad arguments → exit 2', async () => {
      fake.on('exchanges.get', () => {
        throw new RpcError(ErrorCode.ExchangeNotFound, 'no exchange 99 (never existed or evicted)');
      });
      const r = await run('get', '99');
      assert.equal(r.code, 1);
      assert.equal(r.stderr, 'error: no exchange 99 (never existed or evicted)\n');
      assert.equal((await run('get')).code, 2);
      assert.equal((await run('get', 'x1')).code, 2);
      assert.equal((await run('get', '1', '--body', 'headers')).code, 2);
      assert.equal((await run('get', '1', '--body', 'request', '--json')).code, 2);
    });
  });

  describe('tail', () => {
    /** Starts tail in the background; returns its promise and recorder. */
    function startTail(...argv: string[]) {
      const rec = recordingIo();
      const done = main(['tail', ...argv, '--socket', fake.socketPath], rec.io);
      return { rec, done };
    }

    test('--json --count 2 prints exactly the completed exchanges as JSON Lines, then exits 0', async () => {
      const { rec, done } = startTail('--json', '--count', '2');
      await fake.waitForSubscriber();
      fake.notifyExchange('started', sampleExchange({ id: 1, state: 'in-flight', response: undefined }));
      fake.notifyExchange('completed', sampleExchange({ id: 1 }));
      fake.notifyExchange('updated', sampleExchange({ id: 2, state: 'in-flight' }));
      fake.notifyExchange('completed', sampleExchange({ id: 2, state: 'error', error: { kind: 'upstream-tls', message: 'bad cert' } }));
      fake.notifyExchange('completed', sampleExchange({ id: 3 }));
      assert.equal(await done, 0);
      const lines = rec.stdout().trimEnd().split('\n');
      assert.deepEqual(
        lines.map((l) => JSON.parse(l) as { id: number; state: string }).map((e) => [e.id, e.state]),
        [
          [1, 'complete'],
          [2, 'error'],
        ],
      );
    });

    test('human lines, --all-events, and a signal ends it with exit 0', async () => {
      const { rec, done } = startTail('--all-events');
      await fake.waitForSubscriber();
      fake.notifyExchange('started', sampleExchange({ id: 1, state: 'in-flight', response: undefined, timing: { startedAt: sampleExchange().timing.startedAt } }));
      fake.notifyExchange('completed', sampleExchange({ id: 1 }));
      await waitUntil(() => rec.stdout().split('\n').length > 2);
      rec.sendSignal();
      assert.equal(await done, 0);
      assert.equal(
        rec.stdout(),
        '07:08:09.123 started   GET https://example.com/index.html - - -\n' +
          '07:08:09.123 completed GET https://example.com/index.html 200 1.5 KiB 153ms\n',
      );
    });

    test('the helper going away → exit 1', async () => {
      const { rec, done } = startTail();
      await fake.waitForSubscriber();
      fake.dropConnections();
      assert.equal(await done, 1);
      assert.match(rec.stderr(), /^error: tproxy-helper went away: tproxy-helper closed the connection/);
    });

    test('--timeout before --count is reached → exit 1; --timeout alone → exit 0', async () => {
      const counted = startTail('--count', '1', '--timeout', '0.05');
      assert.equal(await counted.done, 1);
      assert.match(counted.rec.stderr(), /--timeout 0\.05s reached after 0 of 1 exchanges/);
      const plain = startTail('--timeout', '0.05');
      assert.equal(await plain.done, 0);
    });

    test('bad --count / --timeout are usage errors', async () => {
      assert.equal((await run('tail', '--count', '0')).code, 2);
      assert.equal((await run('tail', '--count', 'many')).code, 2);
      assert.equal((await run('tail', '--timeout', '-1')).code, 2);
    });
  });

  describe('ca', () => {
    test('summary, --pem, --json, and --pem --json is a usage error', async () => {
      assert.ok((await run('ca')).stdout.includes('\nsha256:     AB:CD:EF:01\n'));
      assert.equal((await run('ca', '--pem')).stdout, sampleCa().pem);
      assert.deepEqual(JSON.parse((await run('ca', '--json')).stdout), sampleCa());
      assert.equal((await run('ca', '--pem', '--json')).code, 2);
    });
  });

  describe('env', () => {
    test('prints shell exports of ca.get env; --json the object; no positionals', async () => {
      const r = await run('env');
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^# .*eval "\$\(tproxyctl env\)"\n/);
      assert.ok(r.stdout.includes("\nexport NODE_EXTRA_CA_CERTS='/run/tproxy/ca.pem'\n"));
      assert.ok(r.stdout.includes("\nexport SSL_CERT_FILE='/run/tproxy/bundle.pem'\n"));
      assert.deepEqual(JSON.parse((await run('env', '--json')).stdout), sampleCa().env);
      assert.equal((await run('env', 'extra')).code, 2);
    });
  });

  test('the socket comes from $TPROXY_SOCKET, and global flags may precede the command', async () => {
    const rec = recordingIo({ TPROXY_SOCKET: fake.socketPath });
    assert.equal(await main(['status', '--json'], rec.io), 0);
    const rec2 = recordingIo();
    assert.equal(await main(['--socket', fake.socketPath, '--json', 'status'], rec2.io), 0);
    assert.deepEqual(JSON.parse(rec2.stdout()), state);
  });

  test('a helper that refuses the connection → exit 1 with the access hint', async () => {
    fake.refuseConnections = true;
    const r = await run('status');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /closed the connection without answering.*--allow-uid \d+/);
    const json = await run('status', '--json');
    assert.equal(JSON.parse(json.stderr).error.data.code, 'access-denied');
  });
});

describe('tproxyctl without a helper', () => {
  test('no helper socket → exit 1 with the start hint', async () => {
    const rec = recordingIo();
    const code = await main(['status', '--socket', '/nonexistent/tproxy.sock'], rec.io);
    assert.equal(code, 1);
    assert.match(rec.stderr(), /^error: tproxy-helper is not running at \/nonexistent\/tproxy\.sock: start it with `sudo node_modules\/\.bin\/tproxy-helper`/);
  });

  test('help and usage errors', async () => {
    const help = recordingIo();
    assert.equal(await main(['--help'], help.io), 0);
    assert.match(help.stdout(), /^Usage: tproxyctl <command> \[options\]$/m);
    const cmdHelp = recordingIo();
    assert.equal(await main(['tail', '--help'], cmdHelp.io), 0);
    assert.match(cmdHelp.stdout(), /^Usage: tproxyctl tail /);
    const helpTopic = recordingIo();
    assert.equal(await main(['help', 'get'], helpTopic.io), 0);
    assert.match(helpTopic.stdout(), /^Usage: tproxyctl get ID/);
    const none = recordingIo();
    assert.equal(await main([], none.io), 2);
    assert.match(none.stderr(), /^tproxyctl: control tproxy-helper/);
    const unknown = recordingIo();
    assert.equal(await main(['frobnicate'], unknown.io), 2);
    assert.equal(unknown.stderr(), "tproxyctl: unknown command 'frobnicate'\nRun 'tproxyctl --help' for usage.\n");
  });
});

/** Characters a terminal would act on, other than \n and \t. */
function rawControls(text: string): string[] {
  return [...text].filter((c) => {
    const n = c.codePointAt(0)!;
    return (n < 0x20 && c !== '\n' && c !== '\t') || (n >= 0x7f && n <= 0x9f);
  });
}

async function waitUntil(predicate: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for condition');
    await new Promise((r) => setTimeout(r, 5));
  }
}
