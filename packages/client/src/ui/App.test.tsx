/**
 * The whole dashboard against a fake helper over a real Unix socket: what the screen says and what
 * the helper is asked, driven by keys. Every wait is for a screen change or a call, never a sleep.
 */
process.env.TZ = 'UTC';
// @jsxRuntime automatic (for tsx, which compiles with the root tsconfig: it has no "jsx" setting)
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { ErrorCode, RpcError, type CaptureStatus, type Exchange } from '@tproxy/protocol';
import { runningStatus, sampleExchange, stoppedStatus } from '../test/fixtures.js';
import { App } from './App.js';
import type { UiDeps } from './deps.js';
import { textWidth } from './format.js';
import { generatedExchange, startFakeWorld, type FakeWorld } from './test/fake-traffic.js';
import { KEY, render, type Rendered } from './test/render.js';

interface Recorded {
  files: Map<string, string>;
  clipboard: string[];
}

let world: FakeWorld | undefined;
let ui: Rendered | undefined;

afterEach(async () => {
  ui?.unmount();
  ui = undefined;
  await world?.fake.close();
  world = undefined;
});

/** Renders the App against `socketPath` with fast timers and recording file/clipboard sinks. */
function renderApp(socketPath: string, size: { columns?: number; rows?: number } = {}): { ui: Rendered; recorded: Recorded } {
  const recorded: Recorded = { files: new Map(), clipboard: [] };
  const deps: Partial<UiDeps> = {
    retry: { initialMs: 20, maxMs: 100 },
    pollMs: 50,
    batchMs: 20,
    cwd: () => '/exports',
    writeFile: async (path, data, exclusive) => {
      if (exclusive && recorded.files.has(path)) throw Object.assign(new Error('exists'), { code: 'EEXIST' });
      recorded.files.set(path, data);
    },
    copyToClipboard: (text) => recorded.clipboard.push(text),
  };
  ui = render(<App socketPath={socketPath} deps={deps} />, { columns: size.columns ?? 100, rows: size.rows ?? 30 });
  return { ui, recorded };
}

async function setup(status: CaptureStatus = runningStatus(), size?: { columns?: number; rows?: number }) {
  world = await startFakeWorld(status);
  const r = renderApp(world.fake.socketPath, size);
  await r.ui.waitForContent('● connected');
  await world.fake.waitForSubscriber();
  return { world, ...r };
}

async function waitUntil(check: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('header', () => {
  test('helper unreachable: says why, with the hint, and keeps retrying', async () => {
    // Given no helper at the socket path
    const { ui } = renderApp('/nonexistent/tproxy/helper.sock');
    // Then the header says it is unreachable and how to start it
    const screen = await ui.waitForContent('unreachable');
    assert.match(screen, /helper ✗ unreachable: tproxy-helper is not running at \/nonexistent\/tproxy\/helper\.sock/);
    assert.match(screen, /hint: start it with `sudo node_modules\/\.bin\/tproxy-helper`/);
    assert.match(screen, /retrying in the background; q quits/);
  });

  test('access denied: the helper refuses our uid, and the header gives the --allow-uid hint', async () => {
    // Given a helper that refuses this uid the way the real one does
    world = await startFakeWorld();
    world.fake.refuseWith = new RpcError(ErrorCode.AccessDenied, 'access denied: uid 1000 may not use tproxy-helper; run as root or start the helper with --allow-uid 1000');
    const { ui } = renderApp(world.fake.socketPath);
    // Then
    const screen = await ui.waitForContent('access denied');
    assert.match(screen, /helper ✗ access denied: access denied: uid 1000 may not use tproxy-helper/);
    assert.match(screen, /hint: .*--allow-uid/);
  });

  test('capture running: listener, ports, interception count, CA', async () => {
    // Given a running capture
    const { ui } = await setup(runningStatus({ interceptCount: 7 }));
    // Then
    const screen = await ui.waitForContent('intercepted 7');
    assert.match(screen, /capture ● running · ports 443 · listener 127\.0\.0\.1:8443 \[::1\]:8443/);
    assert.match(screen, /intercepted 7 · CA installed · 0\.0\/s/);
  });

  test('capture stopped, and unavailable with its reason', async () => {
    const { ui, world } = await setup(stoppedStatus());
    assert.match(ui.screen(), /capture ■ stopped/);
    assert.match(ui.screen(), /capture is stopped: press s to start it/);
    // When the helper reports that capture cannot run here (next status poll)
    world.status = stoppedStatus({ available: false, reason: 'native addon not loaded' });
    // Then
    await ui.waitForContent('✗ unavailable: native addon not loaded');
  });
});

describe('live list', () => {
  test('rows appear as notifications arrive and update in place', async () => {
    const { ui, world } = await setup();
    // When an exchange starts
    const ex = sampleExchange({ id: 5, request: { ...sampleExchange().request, url: 'https://api.example.com/v1/things' } });
    world.emit('started', { ...ex, state: 'in-flight', response: undefined, timing: { startedAt: ex.timing.startedAt } });
    // Then it is listed as waiting
    let screen = await ui.waitForContent('/v1/things');
    assert.match(screen, /07:08:09\.123 GET\s+api\.example\.com\s+\/v1\/things\s+…/);
    // When it completes
    world.emit('completed', { ...ex, response: { ...ex.response!, status: 404 } });
    // Then the same row shows the status, size and duration, and there is still one row
    screen = await ui.waitForContent(/\/v1\/things\s+404\s+http\/1\.1\s+1\.5 KiB\s+153ms/);
    assert.equal(screen.split('\n').filter((l) => l.includes('/v1/things')).length, 1);
    assert.match(screen, /rows 1 · follow/);
  });

  test('errors show the error kind in the status column', async () => {
    const { ui, world } = await setup();
    world.emit('completed', sampleExchange({ id: 9, state: 'error', response: undefined, error: { kind: 'upstream-tls', message: 'cert rejected' } }));
    await ui.waitForContent(/\/index\.html\s+tls\s/);
  });

  test('hundreds of exchanges in a burst are batched into few renders and windowed to the screen', async () => {
    const { ui, world } = await setup(runningStatus(), { columns: 100, rows: 30 });
    const before = ui.stdout.frames.length;
    // When 600 exchanges complete at once
    for (let id = 1; id <= 600; id++) {
      const g = generatedExchange(id, Date.now());
      world.emit('completed', g.exchange, { response: g.response });
    }
    // Then all are counted, only a screenful is drawn, and far fewer frames than events were rendered
    const screen = await ui.waitForContent('rows 600');
    assert.ok(ui.stdout.frames.length - before < 60, `${ui.stdout.frames.length - before} frames for 600 events`);
    assert.equal(screen.split('\n').length, 30);
    assert.match(screen, /\/health|\/v1|\/v2|\/static|\/oauth|\/events/);
  });

  test('the list loads what the helper buffered before we connected', async () => {
    world = await startFakeWorld(runningStatus());
    for (let id = 1; id <= 3; id++) world.emit('completed', generatedExchange(id, Date.now()).exchange);
    const r = renderApp(world.fake.socketPath);
    ui = r.ui;
    await ui.waitForContent('rows 3');
  });
});

describe('keys', () => {
  test('s starts capture with the current options, and s again stops it', async () => {
    const { ui, world } = await setup(stoppedStatus());
    // When s is pressed
    ui.stdin.write('s');
    // Then capture.start is called and the header shows it running
    await world.fake.waitForCall('capture.start');
    assert.deepEqual(world.fake.received.find((r) => r.method === 'capture.start')!.params, { ports: [443], ipv6: true });
    await ui.waitForContent('capture ● running');
    await ui.waitForContent('capture started: ports 443');
    // When s is pressed again
    ui.stdin.write('s');
    await world.fake.waitForCall('capture.stop');
    await ui.waitForContent('capture ■ stopped');
  });

  test('o opens the options form; the helper names the bad field; a good value starts capture', async () => {
    const { ui, world } = await setup(stoppedStatus());
    // When the form is opened and the ports changed to an invalid one
    await ui.sendInputAndWaitForChange('o');
    assert.match(ui.screen(), /capture options · Enter starts capture/);
    assert.match(ui.screen(), /› Ports\s+443/);
    await ui.sendInputAndWaitForChange(KEY.backspace);
    await ui.sendInputAndWaitForChange(KEY.backspace);
    await ui.sendInputAndWaitForChange(KEY.backspace);
    await ui.sendInputAndWaitForChange('0');
    await ui.sendInputAndWaitForChange(KEY.tab);
    await ui.sendInputAndWaitForChange(' ');
    assert.match(ui.screen(), /IPv6\s+\[ \]/);
    ui.stdin.write(KEY.enter);
    // Then the helper's message, naming the field, is shown in the form
    await ui.waitForContent('ports[0]: ports[] must be between 1 and 65535');
    assert.deepEqual(world.fake.received.find((r) => r.method === 'capture.start')!.params, { ports: [0], ipv6: false });
    // When fixed and submitted
    await ui.sendInputAndWaitForChange(KEY.tab);
    await ui.sendInputAndWaitForChange(KEY.backspace);
    await ui.sendInputAndWaitForChange('443,9443');
    ui.stdin.write(KEY.enter);
    // Then capture starts with those options
    await ui.waitForContent('capture ● running');
    assert.deepEqual(world.fake.received.filter((r) => r.method === 'capture.start')[1]!.params, { ports: [443, 9443], ipv6: false });
    assert.match(ui.screen(), /ports 443,9443 \(IPv4 only\)/);
  });

  test('while capture runs, a bad option is refused before anything is stopped; several Backspaces in one read all count', async () => {
    const { ui, world } = await setup(runningStatus());
    await ui.sendInputAndWaitForChange('o');
    assert.match(ui.screen(), /Enter restarts capture/);
    // A held Backspace can arrive as one read
    await ui.sendInputAndWaitForChange('\x7f\x7f\x7f');
    assert.match(ui.screen(), /› Ports\s+destination ports/);
    await ui.sendInputAndWaitForChange('70000');
    ui.stdin.write(KEY.enter);
    await ui.waitForContent('ports[0]: ports[] must be between 1 and 65535');
    assert.deepEqual(world.fake.received.filter((r) => r.method === 'capture.stop' || r.method === 'capture.start'), []);
    assert.match(ui.screen(), /capture ● running/);
  });

  test('/ filters as you type; Esc clears', async () => {
    const { ui, world } = await setup();
    for (let id = 1; id <= 20; id++) world.emit('completed', generatedExchange(id, Date.now()).exchange);
    await ui.waitForContent('rows 20');
    // When a status filter is typed
    await ui.sendInputAndWaitForChange('/');
    for (const c of 'status:5xx') ui.stdin.write(c);
    // Then only 5xx rows are listed and the count says so
    const screen = await ui.waitForContent(/\/status:5xx .* of 20/);
    const statuses = screen.split('\n').filter((l) => /^\d\d:\d\d/.test(l)).map((l) => /\s(\d{3}|…|connect)\s/.exec(l)?.[1]);
    assert.ok(statuses.length > 0 && statuses.every((s) => s === '500' || s === '503'), JSON.stringify(statuses));
    // When Esc is pressed
    await ui.sendInputAndWaitForChange(KEY.escape);
    assert.match(ui.screen(), /rows 20 ·/);
    assert.doesNotMatch(ui.screen(), /status:5xx/);
  });

  test('Enter opens the detail view with the pretty-printed JSON body; Esc goes back', async () => {
    const { ui, world } = await setup();
    const ex = sampleExchange({ id: 3, response: { ...sampleExchange().response!, headers: [['Content-Type', 'application/json']], body: { size: 27, captured: 27, truncated: false } } });
    world.emit('completed', ex, { response: '{"user":{"id":1,"tags":["a"]}}' });
    await ui.waitForContent('/index.html');
    // When Enter is pressed on the selected row
    await ui.sendInputAndWaitForChange(KEY.enter);
    // Then the bodies are fetched and the JSON is indented
    const screen = await ui.waitForContent('"tags": [');
    await world.fake.waitForCall('exchanges.get');
    assert.match(screen, /exchange #3/);
    assert.match(screen, /GET https:\/\/example\.com\/index\.html/);
    assert.match(screen, /200 OK · complete · #3/);
    assert.match(screen, /\{\n {2}"user": \{\n {4}"id": 1,\n {4}"tags": \[\n {6}"a"\n {4}\]\n {2}\}\n\}/);
    assert.match(screen, /TLS\s+SNI example\.com · client TLSv1\.3 · upstream TLSv1\.3 · ALPN http\/1\.1/);
    assert.match(screen, /Timing\s+█+/);
    assert.match(screen, /connect 10ms\s+█ first byte 30ms\s+█ receive 112ms/);
    assert.match(screen, /Response headers \(1\) · HTTP\/1\.1/);
    // When Esc is pressed
    await ui.sendInputAndWaitForChange(KEY.escape);
    assert.match(ui.screen(), /TIME\s+METHOD\s+HOST/);
  });

  test('c clears the dashboard list without calling the helper; ? shows the keys', async () => {
    const { ui, world } = await setup();
    world.emit('completed', sampleExchange({ id: 1 }));
    await ui.waitForContent('rows 1');
    const calls = world.fake.received.length;
    await ui.sendInputAndWaitForChange('c');
    assert.match(ui.screen(), /rows 0/);
    assert.deepEqual(world.fake.received.slice(calls).filter((r) => r.method !== 'capture.status'), []);
    await ui.sendInputAndWaitForChange('?');
    assert.match(ui.screen(), /keys · \? or Esc closes/);
    assert.match(ui.screen(), /e\s+export the filtered list/);
  });

  test('e exports the filtered list as HAR, with bodies fetched from the helper', async () => {
    const { ui, world, recorded } = await setup();
    world.emit('completed', sampleExchange({ id: 1 }), { response: 'hello' });
    world.emit('completed', sampleExchange({ id: 2, request: { ...sampleExchange().request, method: 'POST' } }), { request: 'a=1', response: '{}' });
    await ui.waitForContent('rows 2');
    // When e is pressed
    ui.stdin.write('e');
    // Then a tproxy-<timestamp>.har is written in the cwd and its path shown
    const screen = await ui.waitForContent('exported 2 to');
    const [path, text] = [...recorded.files.entries()][0]!;
    assert.match(path, /^\/exports\/tproxy-\d{8}-\d{6}\.har$/);
    assert.ok(screen.includes(path));
    const har = JSON.parse(text);
    assert.equal(har.log.version, '1.2');
    assert.deepEqual(har.log.entries.map((e: { response: { content: { text: string } } }) => e.response.content.text), ['hello', '{}']);
    assert.equal(har.log.entries[1].request.postData.text, 'a=1');
    assert.equal(world.fake.received.filter((r) => r.method === 'exchanges.get').length, 2);
  });

  test('y copies the request as curl via OSC 52 and writes it to a file', async () => {
    const { ui, world, recorded } = await setup();
    world.emit('completed', sampleExchange({ id: 4, request: { ...sampleExchange().request, method: 'POST', body: { size: 3, captured: 3, truncated: false } } }), { request: 'x=1' });
    await ui.waitForContent('rows 1');
    ui.stdin.write('y');
    await ui.waitForContent('curl for #4 copied (OSC 52) and written to /exports/tproxy-curl-4.sh');
    assert.equal(recorded.clipboard.length, 1);
    assert.match(recorded.clipboard[0]!, /^# tproxy exchange 4: headers as captured/);
    assert.match(recorded.clipboard[0]!, /curl 'https:\/\/example\.com\/index\.html' \\\n {2}-H 'Accept: \*\/\*' \\\n {2}--data-binary \$'x=1'/);
    assert.equal(recorded.files.get('/exports/tproxy-curl-4.sh'), recorded.clipboard[0]);
  });
});

describe('quitting', () => {
  for (const [name, key] of [['q', 'q'], ['Ctrl-C', KEY.ctrlC]] as const) {
    test(`${name} exits the app and closes the connection to the helper`, async () => {
      const { ui, world } = await setup();
      ui.stdin.write(key);
      await ui.waitUntilExit();
      await waitUntil(() => world.fake.connections.size === 0);
    });
  }

  test('q in the detail view goes back instead', async () => {
    const { ui, world } = await setup();
    world.emit('completed', sampleExchange({ id: 1 }));
    await ui.waitForContent('rows 1');
    await ui.sendInputAndWaitForChange(KEY.enter);
    await ui.sendInputAndWaitForChange('q');
    assert.match(ui.screen(), /TIME\s+METHOD/);
  });

  test('s while the helper is unreachable says so instead of failing silently', async () => {
    const { ui } = renderApp('/nonexistent/helper.sock');
    await ui.waitForContent('unreachable');
    ui.stdin.write('s');
    await ui.waitForContent('not connected to tproxy-helper');
  });
});

describe('untrusted data', () => {
  const hostile = (): Exchange =>
    sampleExchange({
      id: 66,
      request: {
        method: 'GET\x1b[2J',
        url: 'https://evil.example/\x1b]0;owned\x07\x1b]52;c;cHduZWQ=\x07\r\x9b31m\u202eexe.txt',
        httpVersion: '1.1',
        headers: [['X-Evil\x1b[1A', 'value\x1b[H\x1bc\x07\x7f']],
        body: { size: 0, captured: 0, truncated: false },
      },
      response: {
        status: 200,
        statusMessage: 'OK\x1b]2;title\x07',
        httpVersion: '1.1',
        headers: [['Content-Type', 'text/plain']],
        body: { size: 30, captured: 30, truncated: false },
      },
    });

  /** Everything in the frame that is an escape sequence other than Ink's own colours, or a control character. */
  function rawControls(frame: string): string[] {
    // eslint-disable-next-line no-control-regex -- looking for control characters is the point
    return frame.replace(/\x1b\[[0-9;]*m/g, '').match(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g) ?? [];
  }

  test('hostile URL, method, headers and body are escaped in the list and in the detail view', async () => {
    const { ui, world } = await setup(runningStatus(), { columns: 200, rows: 40 });
    world.emit('completed', hostile(), { response: 'body\x1b[2J\x1b]52;c;eA==\x07\u202eend' });
    // Then the list shows the escapes as text, and the frame has no control characters of its own
    let screen = await ui.waitForContent('\\x1b]0;owned');
    assert.match(screen, /GET\\x1…/, 'the method column is 7 wide');
    assert.match(screen, /\\x1b\]52;c;cHduZWQ=\\x07\\r\\x9b31m\\u202eexe\.txt/);
    assert.deepEqual(rawControls(ui.rawFrame()), []);
    // When the detail is opened
    await ui.sendInputAndWaitForChange(KEY.enter);
    screen = await ui.waitForContent('body\\x1b[2J');
    assert.match(screen, /GET\\x1b\[2J https:\/\/evil\.example/);
    assert.match(screen, /X-Evil\\x1b\[1A: value\\x1b\[H\\x1bc\\x07\\x7f/);
    assert.match(screen, /200 OK\\x1b\]2;title\\x07/);
    assert.match(screen, /body\\x1b\[2J\\x1b\]52;c;eA==\\x07\\u202eend/);
    assert.deepEqual(rawControls(ui.rawFrame()), []);
  });
});

describe('layout', () => {
  test('80x24: nothing wider than 80 columns, exactly 24 lines, process and protocol columns dropped', async () => {
    const { ui, world } = await setup(runningStatus(), { columns: 80, rows: 24 });
    for (let id = 1; id <= 40; id++) {
      const g = generatedExchange(id, Date.now());
      world.emit('completed', { ...g.exchange, request: { ...g.exchange.request, url: `${g.exchange.request.url}/${'very-long-segment/'.repeat(6)}日本語` } }, { response: g.response });
    }
    const screen = await ui.waitForContent('rows 40');
    const lines = screen.split('\n');
    assert.equal(lines.length, 24);
    for (const line of lines) assert.ok(textWidth(line) <= 80, `too wide (${textWidth(line)}): ${line}`);
    assert.match(lines[2]!, /^TIME\s+METHOD\s+HOST\s+PATH\s+STATUS\s+SIZE\s+DUR$/);
    // The detail view fits too
    await ui.sendInputAndWaitForChange(KEY.enter);
    await ui.waitForContent('Response headers');
    await ui.sendInputAndWaitForChange('G');
    const detail = await ui.waitForContent('── Response body');
    for (const line of detail.split('\n')) assert.ok(textWidth(line) <= 80, `too wide (${textWidth(line)}): ${line}`);
  });

  test('resizing re-lays the columns', async () => {
    const { ui, world } = await setup(runningStatus(), { columns: 80, rows: 24 });
    world.emit('completed', sampleExchange({ id: 1 }));
    await ui.waitForContent('rows 1');
    ui.resize(130, 30);
    const screen = await ui.waitForContent('PROCESS');
    assert.match(screen, /^TIME\s+PROCESS\s+METHOD\s+HOST\s+PATH\s+STATUS\s+PROTO\s+SIZE\s+DUR\s*$/m);
    assert.equal(screen.split('\n').length, 30);
  });
});

describe('reconnect', () => {
  test('when the helper restarts, the header says reconnecting, then the dashboard resubscribes and reloads', async () => {
    const { ui, world } = await setup();
    world.emit('completed', sampleExchange({ id: 1 }));
    await ui.waitForContent('rows 1');
    // When the helper goes away
    await world.fake.stop();
    // Then the header says so, with the reason
    await ui.waitForContent(/helper ↻ reconnecting.*(closed the connection|not running)/);
    // When it comes back (a new process: its buffer holds other exchanges)
    world.exchanges.clear();
    world.emit('completed', sampleExchange({ id: 1, request: { ...sampleExchange().request, url: 'https://example.com/after-restart' } }));
    world.emit('completed', sampleExchange({ id: 2, request: { ...sampleExchange().request, url: 'https://example.com/after-restart-2' } }));
    await world.fake.restart();
    // Then it reconnects, subscribes again and reloads the list with exchanges.list
    await ui.waitForContent('● connected');
    await world.fake.waitForSubscriber();
    await ui.waitForContent('after-restart-2');
    assert.equal(world.fake.received.filter((r) => r.method === 'exchanges.subscribe').length, 2);
    assert.ok(world.fake.received.filter((r) => r.method === 'exchanges.list').length >= 2);
    // And live notifications flow again
    world.emit('completed', sampleExchange({ id: 3, request: { ...sampleExchange().request, url: 'https://example.com/live-again' } }));
    await ui.waitForContent('/live-again');
  });
});
