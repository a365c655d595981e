/** argv builders, helper resolution, and process plumbing against ordinary local processes (no root). */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { cleanEnv } from './env.js';
import {
  DemoProcess,
  builtDemoScript,
  clientPackageRoot,
  demoPaths,
  helperArgv,
  nsArgv,
  pollUntil,
  resolveHelperMain,
  siteArgv,
  spawnLogged,
  trafficArgv,
} from './procs.js';

const paths = demoPaths('/t');

test('demo children run in a namespace through ip netns exec, with fixed argv', () => {
  assert.deepEqual(nsArgv('tpd-c-1', ['node', 'x.js']), ['ip', 'netns', 'exec', 'tpd-c-1', 'node', 'x.js']);
  assert.deepEqual(siteArgv('/node', '/d/site.js', '/t/site.pem', '/t/site-key.pem', paths, 99), [
    '/node', '/d/site.js', '--cert', '/t/site.pem', '--key', '/t/site-key.pem', '--host', '198.18.0.2', '--host', 'fd00:198:18::2',
    '--port', '443', '--ready-file', '/t/site.ready', '--parent-pid', '99',
  ]);
  const traffic = trafficArgv('/node', '/d/traffic.js', 99);
  assert.equal(traffic[1], '--use-openssl-ca', 'node clients trust the (sandboxed) system store');
  assert.ok(traffic.join(' ').includes('--site 198.18.0.2 --down 198.18.0.4 --port 443'));
});

test('the helper gets our socket, state dir and the site CA, under setpriv --pdeathsig when available', () => {
  const plain = ['/node', '/h/main.js', '--socket', '/t/helper.sock', '--state-dir', '/t/state', '--upstream-ca', '/t/ca.pem', '--log-level', 'info'];
  assert.deepEqual(helperArgv('/node', '/h/main.js', paths, '/t/ca.pem', undefined), plain);
  assert.deepEqual(helperArgv('/node', '/h/main.js', paths, '/t/ca.pem', '/usr/bin/setpriv'), ['/usr/bin/setpriv', '--pdeathsig', 'TERM', '--', ...plain]);
});

test('resolveHelperMain walks up to node_modules/.bin, else reads @tproxy/helper package.json', (t) => {
  const root = mkdtempSync(join(tmpdir(), 'tproxy-demo-resolve-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const deep = join(root, 'packages', 'client', 'dist', 'demo');
  mkdirSync(deep, { recursive: true });
  mkdirSync(join(root, 'packages', 'helper', 'dist'), { recursive: true });
  writeFileSync(join(root, 'packages', 'helper', 'package.json'), JSON.stringify({ bin: { 'tproxy-helper': 'dist/main.js' } }));
  writeFileSync(join(root, 'packages', 'helper', 'dist', 'main.js'), '');
  mkdirSync(join(root, 'node_modules', '@tproxy'), { recursive: true });
  symlinkSync(join(root, 'packages', 'helper'), join(root, 'node_modules', '@tproxy', 'helper'));
  const main = join(root, 'packages', 'helper', 'dist', 'main.js');
  assert.equal(resolveHelperMain(deep), main, 'from package.json bin');
  mkdirSync(join(root, 'node_modules', '.bin'));
  symlinkSync('../@tproxy/helper/dist/main.js', join(root, 'node_modules', '.bin', 'tproxy-helper'));
  assert.equal(resolveHelperMain(deep), main, 'from .bin, symlinks resolved');
  assert.throws(() => resolveHelperMain('/'), /cannot find tproxy-helper/);
});

test('built scripts are looked up in dist, never src', () => {
  assert.match(clientPackageRoot(), /packages\/client\/?$/);
  assert.throws(() => builtDemoScript('site', '/nonexistent'), /\/nonexistent\/dist\/demo\/site\.js is missing: build first/);
});

test('spawnLogged sends output to the log file; stop() escalates to SIGKILL within its bound', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tproxy-demo-procs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const log = join(dir, 'p.log');
  // Ignores SIGTERM, so stop() must escalate.
  const p = spawnLogged('stubborn', ['/bin/sh', '-c', "trap '' TERM; echo started; echo oops >&2; while :; do sleep 0.05; done"], log, cleanEnv());
  assert.ok(p instanceof DemoProcess && p.pid > 0);
  await pollUntil('no output', () => readFileSync(log, 'utf8').includes('oops'), { timeoutMs: 5000 });
  assert.equal(readFileSync(log, 'utf8'), 'started\noops\n');
  const status = await p.stop(200);
  assert.equal(status?.signal, 'SIGKILL');
  assert.equal(p.kill('SIGTERM'), false, 'no signal to a pid we already reaped');
  assert.deepEqual(await p.stop(200), status, 'idempotent');
});

test('pollUntil is bounded and fails fast with the reason', async () => {
  await assert.rejects(pollUntil('never', () => false, { timeoutMs: 100, intervalMs: 10 }), /never: still not ready after 100 ms/);
  await assert.rejects(pollUntil('site', () => false, { timeoutMs: 5000, failFast: () => 'exit code 1' }), /^Error: site: exit code 1$/);
});
