/**
 * tproxy-ui as a person uses it: the real dashboard in a real terminal (tmux, 100x30 and 80x24),
 * run as an unprivileged user (uid 65534) against the real helper in the client namespace of
 * lib/topology.ts, driven with send-keys and read with capture-pane. Also the README's demo:
 * `tproxy-ui --demo` builds its own namespaces, shows decrypted traffic, and leaves nothing.
 */
import assert from 'node:assert/strict';
import { chmod } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { methods } from '@tproxy/client';
import { anchors, ourSteering, waitForExchange } from './lib/checks.js';
import { curlInNs } from './lib/curl.js';
import { UI_MAIN, startHelper, type HelperHandle } from './lib/helper.js';
import { e2ePreflight } from './lib/preflight.js';
import { runCommand } from './lib/proc.js';
import { startTmux, type TmuxSession } from './lib/tmux.js';
import { world } from './lib/world.js';

const skip = await e2ePreflight(['curl', 'tmux', 'setpriv', 'openssl', 'update-ca-certificates']);

/** `nobody`: the dashboard needs no privilege; the helper lets this uid in with --allow-uid. */
const OPERATOR_UID = 65534;
const GOOD = ['--resolve', 'upstream.test:443:198.18.0.2'];
const UI_ENV = { TERM: 'xterm-256color', HOME: '/tmp', LANG: 'C.UTF-8' };

function asOperator(argv: readonly string[]): string[] {
  return ['setpriv', `--reuid=${OPERATOR_UID}`, `--regid=${OPERATOR_UID}`, '--clear-groups', ...argv];
}

/** Every screen line fits the pane: nothing wrapped or spilled past the right edge. */
function assertFits(screen: string, width: number): void {
  for (const line of screen.split('\n')) assert.ok([...line].length <= width, `line wider than ${width}: ${JSON.stringify(line)}`);
}

describe('tproxy-ui against a real helper, as an unprivileged user', { skip: skip ?? false, timeout: 300_000 }, () => {
  const w = world();
  let helper: HelperHandle;
  let ui: TmuxSession;

  before(async () => {
    // The operator must be able to reach the socket: the directory is traversable, the socket
    // itself is 0600 and owned by the operator (the helper chowns it to the first allowed uid).
    await chmod(w.dir, 0o755);
    helper = await startHelper(w.topo, w.dir, 'ui', w.certs.caCert, { selfBind: true, allowUids: [OPERATOR_UID] });
    ui = await startTmux(asOperator([process.execPath, UI_MAIN, '--socket', helper.socketPath]), { width: 100, height: 30, env: UI_ENV });
  });

  after(async () => {
    await ui?.kill();
    await helper?.client.close().catch(() => undefined);
    await helper?.proc.stop();
  });

  it('shows the helper connected and capture stopped', async () => {
    const screen = await ui.waitFor(/connected[\s\S]*■ stopped/);
    assertFits(screen, 100);
  });

  it('starts capture with one key', async () => {
    await ui.send('s');
    // An operator's capture covers only its own uid, and the header says so.
    await ui.waitFor(/● running · ports 443 · uid 65534/);
    assert.notEqual(await ourSteering(w.topo.clientNs), '', 'the rules are applied');
    assert.equal(anchors().length, 1, 'the CA is in the (sandboxed) trust store');
  });

  it('lists decrypted exchanges live, with status and errors', async () => {
    // As the operator: its capture covers only its own uid (a root curl would not be intercepted).
    const ok = await curlInNs(w.topo.clientNs, ['--fail', ...GOOD, 'https://upstream.test/hello'], { asUid: OPERATOR_UID });
    assert.equal(ok.code, 0, ok.stderr);
    await curlInNs(w.topo.clientNs, ['--resolve', 'upstream.test:443:198.18.0.4', 'https://upstream.test/down'], { asUid: OPERATOR_UID });
    const screen = await ui.waitFor((s) => /GET\s+upstream\.test\s+\/hello\s+200/.test(s) && /\/down\s+\S*connect/.test(s));
    assertFits(screen, 100);
  });

  it('keeps hostile captured bytes from acting on the terminal', async () => {
    // A body that would set the window title and clear the screen if printed raw.
    const hostile = '\x1b]2;PWNED\x07\x1b[2J\x1b[31mred';
    const r = await curlInNs(w.topo.clientNs, ['--fail', ...GOOD, '--data-binary', hostile, 'https://upstream.test/echo?hostile'], { asUid: OPERATOR_UID });
    assert.equal(r.code, 0, r.stderr);
    await waitForExchange(helper.client, (e) => e.request.url.endsWith('/echo?hostile'));
    // Typed text and Enter in one write, as a fast typist or a paste delivers them.
    await ui.send('/hostile\r', { literal: true });
    await ui.waitFor(/\/echo\?hostile[\s\S]*1 of \d+ · \/ edit/); // the filter is applied, no longer being typed
    await ui.send('Enter');
    const detail = await ui.waitFor(/Request headers[\s\S]*PWNED/);
    assert.match(detail, /\\x1b\]2;PWNED/, 'the escape is shown as text');
    const title = await runCommand(['tmux', '-L', ui.server, 'display-message', '-p', '-t', 'ui', '#{pane_title}'], { timeoutMs: 5000 });
    assert.doesNotMatch(title.stdout, /PWNED/, 'the pane title was not changed');
    await ui.send('Escape');
    await ui.send('Escape'); // clears the filter
    await ui.waitFor(/\/hello/);
  });

  it('filters as you type', async () => {
    await ui.send('/');
    await ui.send('status:5xx', { literal: true });
    const screen = await ui.waitFor((s) => /\/down/.test(s) && !/\/hello\s/.test(s));
    assert.doesNotMatch(screen, /GET\s+upstream\.test\s+\/hello/);
    await ui.send('Escape');
    await ui.waitFor(/\/hello/);
  });

  it('stops capture with the same key, reverting everything, and quits cleanly', async () => {
    await ui.send('s');
    await ui.waitFor(/■ stopped/);
    assert.equal(await ourSteering(w.topo.clientNs), '');
    assert.deepEqual(anchors(), []);
    const status = await helper.client.call(methods.captureStatus, {});
    assert.equal(status.running, false);
    await ui.send('q');
    for (let i = 0; i < 50 && (await ui.alive()); i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(await ui.alive(), false, 'tproxy-ui exited on q');
  });
});

describe('tproxy-ui --demo (the README first command) in 80x24', { skip: skip ?? false, timeout: 300_000 }, () => {
  let ui: TmuxSession | undefined;
  after(async () => {
    await ui?.kill();
  });

  it('shows decrypted demo traffic, then removes its namespaces on quit', async () => {
    const before = await runCommand(['ip', 'netns', 'list'], { timeoutMs: 5000 });
    ui = await startTmux([process.execPath, UI_MAIN, '--demo'], { width: 80, height: 24, env: UI_ENV });
    const screen = await ui.waitFor((s) => /shop\.demo/.test(s) && /\/api\/products\s+200/.test(s) && /api\.demo\s+\S+\s+\S*connect/.test(s), 60_000);
    assertFits(screen, 80);
    const during = await runCommand(['ip', 'netns', 'list'], { timeoutMs: 5000 });
    assert.match(during.stdout, /tpd-c-/);
    await ui.send('q');
    for (let i = 0; i < 200 && (await ui.alive()); i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(await ui.alive(), false, 'tproxy-ui --demo exited on q');
    const afterList = await runCommand(['ip', 'netns', 'list'], { timeoutMs: 5000 });
    assert.doesNotMatch(afterList.stdout, /tpd-/, 'the demo namespaces are gone');
    assert.equal(afterList.stdout, before.stdout);
  });
});
