/**
 * Who may capture what, end to end: the real helper in the client namespace of lib/topology.ts
 * (entered with nsenter, so it keeps the host's /sys/fs/cgroup: `ip netns exec` remounts /sys and
 * hides every cgroup), real nft rules with `meta skuid` and `socket cgroupv2`, real curl clients
 * run as root and as the operator uid 65534, and the real tproxyctl, also as both.
 *
 *   client ns: curl as 65534 ──▶ nft mark-new [meta skuid 65534] ▶ lo ▶ TPROXY ▶ helper ──▶ upstream ns :443
 *              curl as root  ──▶ (no match) ─────────────────────────────────────────────▶ upstream ns :443
 *   tproxyctl run -- CMD: CMD held on fd 3 ▶ capture.run moves it into <parent>/run-N ▶ released;
 *              nft mark-new [socket cgroupv2 level N "<nft path>/run-N"] takes only CMD's sockets
 *
 * Intercepted is told apart from not intercepted by trust: an intercepted curl that trusts the
 * system store (with our CA installed) succeeds and shows up as an exchange; a curl outside the
 * scope that trusts only the test upstream CA succeeds against the real certificate and does not.
 * Run cgroups live under a test-owned parent (`--run-cgroup-parent tproxy-e2e-<pid>`), removed in after().
 */
import assert from 'node:assert/strict';
import { chmod, readdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { methods, type Exchange } from '@tproxy/client';
import { cleanEnv } from './lib/env.js';
import { HELPER_MAIN, startHelper, TPROXYCTL_MAIN, type HelperHandle } from './lib/helper.js';
import { e2ePreflight } from './lib/preflight.js';
import { runInNs, type ProcHandle, type RunResult } from './lib/proc.js';
import { waitForExchange } from './lib/checks.js';
import { world } from './lib/world.js';

const preflight = await e2ePreflight(['curl', 'setpriv', 'nsenter', 'update-ca-certificates']);
/** Where cgroup2 is mounted on this host (hybrid: unified/), or null when there is none. */
const CGROUP2 = ['/sys/fs/cgroup/unified', '/sys/fs/cgroup'].find((d) => existsSync(join(d, 'cgroup.procs')) && existsSync(join(d, 'cgroup.controllers'))) ?? null;
const skip = preflight ?? (CGROUP2 === null ? 'needs a cgroup2 mount at /sys/fs/cgroup or /sys/fs/cgroup/unified' : undefined);

const OPERATOR = 65534;
const GOOD = ['--resolve', 'upstream.test:443:198.18.0.2'];
const PARENT = `tproxy-e2e-${process.pid}`;
const CLIENT_INDEX = pathToFileURL(join(TPROXYCTL_MAIN, '../../index.js')).href;

function asOperator(argv: readonly string[]): string[] {
  return ['setpriv', `--reuid=${OPERATOR}`, `--regid=${OPERATOR}`, '--clear-groups', ...argv];
}

function curlArgv(tag: string, trust: 'system' | 'upstream', caCert: string, extra: readonly string[] = []): string[] {
  return ['curl', '-q', '--noproxy', '*', '-sS', '--max-time', '20', ...GOOD, ...(trust === 'upstream' ? ['--cacert', caCert] : []), ...extra, `https://upstream.test/hello?tag=${tag}`];
}

/**
 * curlArgv for a download that keeps its connection open ~1 s (300 kB at 300 kB/s), so the
 * helper's best-effort process attribution finds the socket even on a loaded machine (a /hello
 * can be over before it looks). For the intercepted curls whose attribution is asserted.
 */
function slowCurlArgv(tag: string, trust: 'system' | 'upstream', caCert: string): string[] {
  return curlArgv(tag, trust, caCert, ['--limit-rate', '300k', '-o', '/dev/null']).map((a) => a.replace('/hello?', '/bytes?n=300000&'));
}

const tagged = (tag: string) => (e: Exchange) => e.request.url.endsWith(`tag=${tag}`);

describe('capture scopes and tproxyctl run', { skip: skip ?? false, timeout: 600_000 }, () => {
  const w = world();
  let helper: HelperHandle;
  let caCert: string;
  let ns: string;
  const parentDir = () => join(CGROUP2!, PARENT);

  const curl = (uid: 0 | typeof OPERATOR, tag: string, trust: 'system' | 'upstream'): Promise<RunResult> => {
    const argv = trust === 'system' ? slowCurlArgv(tag, trust, caCert) : curlArgv(tag, trust, caCert);
    return runInNs(ns, uid === 0 ? argv : asOperator(argv), { timeoutMs: 30_000 });
  };
  const tproxyctlArgv = (uid: 0 | typeof OPERATOR, args: readonly string[]) => {
    const argv = [process.execPath, TPROXYCTL_MAIN, '--socket', helper.socketPath, ...args];
    return uid === 0 ? argv : asOperator(argv);
  };
  const tproxyctl = (uid: 0 | typeof OPERATOR, args: readonly string[]) => runInNs(ns, tproxyctlArgv(uid, args), { timeoutMs: 60_000 });
  const exchangeTags = async () => (await helper.client.call(methods.exchangesList, { limit: 500 })).exchanges.map((e) => e.request.url);
  /** The run cgroups that exist now under the test's parent. */
  const runCgroups = async () => (existsSync(parentDir()) ? (await readdir(parentDir(), { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name) : []);

  async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 15_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (let i = 0; i < 1000 && Date.now() < deadline; i++) {
      const v = await probe();
      if (v !== undefined) return v;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`timed out waiting for ${what}`);
  }

  before(async () => {
    ns = w.topo.clientNs;
    caCert = w.certs.caCert;
    // The operator reaches the socket (0600, chowned to it) and reads the upstream CA through the dir.
    await chmod(w.dir, 0o755);
    helper = await startHelper(w.topo, w.dir, 'scope', caCert, {
      selfBind: true,
      allowUids: [OPERATOR],
      keepSysMounts: true,
      extraArgs: ['--run-cgroup-parent', PARENT],
    });
  });

  after(async () => {
    await helper?.client.close().catch(() => undefined);
    await helper?.proc.stop();
    // Only our own parent: whatever run-N the helper could not remove (a test's command may still
    // be finishing its bounded loop: retry for a while), then the parent itself.
    for (let i = 0; i < 100 && (await runCgroups().catch(() => [])).length > 0; i++) {
      for (const name of await runCgroups()) await rmdir(join(parentDir(), name)).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 100));
    }
    if (CGROUP2 && existsSync(parentDir())) await rmdir(parentDir());
  });

  it('an operator capture takes only the operator own processes', async () => {
    const started = await tproxyctl(OPERATOR, ['--json', 'start']);
    assert.equal(started.code, 0, started.stderr);
    assert.deepEqual(JSON.parse(started.stdout).config.scope, { uids: [OPERATOR] });

    const root = await curl(0, 'op-root', 'upstream');
    assert.equal(root.code, 0, `root's curl reached the real server with its real certificate: ${root.stderr}`);
    const op = await curl(OPERATOR, 'op-self', 'system');
    assert.equal(op.code, 0, op.stderr);
    const ex = await waitForExchange(helper.client, tagged('op-self'));
    assert.equal(ex.response?.status, 200);
    assert.equal(ex.process?.uid, OPERATOR);
    assert.ok(!(await exchangeTags()).some((u) => u.endsWith('tag=op-root')), 'root was not intercepted');
    const stopped = await tproxyctl(OPERATOR, ['stop']);
    assert.equal(stopped.code, 0, stopped.stderr);
  });

  it('an operator asking for root traffic gets scope-not-allowed, naming the configuration that would allow it', async () => {
    const script = `
      import { TproxyClient, methods } from ${JSON.stringify(CLIENT_INDEX)};
      const c = await TproxyClient.connect({ socketPath: process.env.TPROXY_SOCKET });
      try { await c.call(methods.captureStart, { scope: { uids: [0] } }); console.log(JSON.stringify({ started: true })); }
      catch (e) { console.log(JSON.stringify({ code: e.code, name: e.codeName, message: e.message, detail: e.detail })); }
      finally { await c.close(); }`;
    const r = await runInNs(ns, asOperator([process.execPath, '--input-type=module', '-e', script]), { env: { ...cleanEnv(), TPROXY_SOCKET: helper.socketPath } });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.name, 'scope-not-allowed', r.stdout);
    assert.match(out.message, /uid 65534 may capture only uid 65534, not 0; .*"captureUids": \[65534,0\]/);
    assert.deepEqual(out.detail, { allowedUids: [OPERATOR], refusedUids: [0] });
    assert.equal((await helper.client.call(methods.captureStatus, {})).running, false);
  });

  it('root can scope a capture to another uid', async () => {
    const status = await helper.client.call(methods.captureStart, { scope: { uids: [OPERATOR] } });
    assert.deepEqual(status.config?.scope, { uids: [OPERATOR] });
    assert.ok(status.rules.length > 0);
    try {
      assert.equal((await curl(0, 'uid-root', 'upstream')).code, 0);
      assert.equal((await curl(OPERATOR, 'uid-op', 'system')).code, 0);
      const ex = await waitForExchange(helper.client, tagged('uid-op'));
      assert.equal(ex.process?.uid, OPERATOR);
      assert.ok(!(await exchangeTags()).some((u) => u.endsWith('tag=uid-root')));
    } finally {
      await helper.client.call(methods.captureStop, {});
    }
  });

  for (const who of [0, OPERATOR] as const) {
    const name = who === 0 ? 'root' : 'the operator';
    it(`tproxyctl run as ${name} captures only its command, which keeps its exit status, and removes the cgroup`, async () => {
      const tag = `run-${who}`;
      const flag = join(w.dir, `release-${who}`);
      // CMD: curl trusting only the system store (the run env adds our CA), then wait for the test.
      const inner = slowCurlArgv(tag, 'system', caCert).map((a) => `'${a}'`).join(' ');
      const cmd = `${inner} > /dev/null || exit 99; i=0; while [ ! -e '${flag}' ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; exit 7`;
      const run: ProcHandle = w.topo.spawn(ns, tproxyctlArgv(who, ['run', '--', 'sh', '-c', cmd]));
      try {
        const ex = await waitForExchange(helper.client, tagged(tag), 20_000);
        assert.equal(ex.response?.status, 200);
        assert.equal(ex.process?.uid, who, 'attributed to the command owner');
        assert.match(ex.process?.command ?? '', /curl/);
        const status = await helper.client.call(methods.captureStatus, {});
        const cgroup = status.config?.scope?.cgroup;
        assert.match(cgroup ?? '', new RegExp(`^${PARENT}/run-\\d+$`));
        assert.deepEqual(status.config?.scope, who === 0 ? { cgroup } : { cgroup, uids: [OPERATOR] });
        assert.ok(existsSync(join(CGROUP2!, cgroup!)), 'the run cgroup exists while CMD runs');

        // Outside the run, the same user and at the same time: not captured.
        const outside = await runInNs(ns, who === 0 ? curlArgv(`out-${who}`, 'upstream', caCert) : asOperator(curlArgv(`out-${who}`, 'upstream', caCert)));
        assert.equal(outside.code, 0, outside.stderr);

        await writeFile(flag, '');
        const exit = await run.waitForExit(30_000);
        assert.equal(exit.code, 7, run.output().stderr);
        assert.match(run.output().stderr, new RegExp(`exited with status 7; 1 exchange captured in cgroup ${cgroup}\\n`));
        assert.ok(!existsSync(join(CGROUP2!, cgroup!)), 'the run cgroup is gone');
        assert.equal((await helper.client.call(methods.captureStatus, {})).running, false);
        assert.ok(!(await exchangeTags()).some((u) => u.endsWith(`tag=out-${who}`)), 'the concurrent curl outside the run was not captured');
      } finally {
        await run.stop();
      }
    });
  }

  it('tproxyctl run exits with the command status, here curl failing', async () => {
    const r = await tproxyctl(0, ['run', '--', ...curlArgv('fail', 'system', caCert, ['--fail']).map((a) => a.replace('/hello?', '/status/404?'))]);
    assert.equal(r.code, 22, r.stderr);
    assert.match(r.stderr, /exited with status 22; 1 exchange captured/);
  });

  it('an operator may not widen a run to other uids', async () => {
    const r = await tproxyctl(OPERATOR, ['run', '--uid', '0', '--', 'true']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /may capture only uid 65534, not 0/);
    assert.deepEqual(await runCgroups(), []);
  });

  it('a helper refuses to start with a configuration file others may write', async () => {
    const file = join(w.dir, 'open-helper.json');
    await writeFile(file, JSON.stringify({ operators: { [OPERATOR]: { captureUids: 'any' } } }));
    await chmod(file, 0o666);
    const r = await runInNs(ns, [process.execPath, HELPER_MAIN, '--socket', join(w.dir, 'refused.sock'), '--state-dir', join(w.dir, 'refused-state'), '--config', file]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`${file}: refusing to load: the file is group- or world-writable \\(mode 666; chmod go-w`));
    assert.ok(!existsSync(join(w.dir, 'refused.sock')), 'it never served');
  });

  it('an operator granted "any" by the root-owned configuration captures every user', async () => {
    const file = join(w.dir, 'helper.json');
    await writeFile(file, JSON.stringify({ operators: { [OPERATOR]: { captureUids: 'any' } } }));
    await chmod(file, 0o644);
    const granted = await startHelper(w.topo, w.dir, 'granted', caCert, { selfBind: true, allowUids: [OPERATOR], keepSysMounts: true, extraArgs: ['--config', file] });
    try {
      const r = await runInNs(ns, asOperator([process.execPath, TPROXYCTL_MAIN, '--socket', granted.socketPath, '--json', 'start']));
      assert.equal(r.code, 0, r.stderr);
      assert.equal(JSON.parse(r.stdout).config.scope, undefined, 'no uid restriction');
      assert.equal((await curl(0, 'granted-root', 'system')).code, 0);
      const ex = await waitForExchange(granted.client, tagged('granted-root'));
      assert.equal(ex.process?.uid, 0);
    } finally {
      await granted.client.call(methods.captureStop, {}).catch(() => undefined);
      await granted.client.close().catch(() => undefined);
      await granted.proc.stop();
    }
  });

  it('a killed tproxyctl run: the helper stops the capture, and removes the cgroup once its processes exit', async () => {
    const flag = join(w.dir, 'release-killed');
    // Its stdio is tproxyctl's pipes; it lets them go so the killed tproxyctl's handle can close.
    const cmd = `exec >/dev/null 2>&1 </dev/null; i=0; while [ ! -e '${flag}' ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done`;
    const run = w.topo.spawn(ns, tproxyctlArgv(0, ['run', '--', 'sh', '-c', cmd]));
    try {
      const cgroup = await waitFor('the run capture', async () => {
        const s = await helper.client.call(methods.captureStatus, {});
        return s.running ? s.config?.scope?.cgroup : undefined;
      });
      // Kill only once CMD itself runs in the cgroup (the wrapper has exec'd it). Killed earlier,
      // tproxyctl never releases it: the wrapper reads EOF and exits 125 without running CMD.
      await waitFor('the command released into the cgroup', async () => {
        const pids = (await readFile(join(CGROUP2!, cgroup, 'cgroup.procs'), 'utf8')).split('\n').filter(Boolean);
        const argvs = await Promise.all(pids.map((p) => readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '')));
        return argvs.some((a) => a.split('\0')[2] === cmd) ? true : undefined;
      });
      run.kill('SIGKILL');
      await run.waitForExit(10_000);
      await waitFor('capture stopped after the connection closed', async () => ((await helper.client.call(methods.captureStatus, {})).running ? undefined : true));
      assert.ok(existsSync(join(CGROUP2!, cgroup)), 'the cgroup stays while its process runs (never force-killed)');
      await writeFile(flag, '');
      await waitFor('the cgroup removed once empty', () => (existsSync(join(CGROUP2!, cgroup)) ? undefined : true), 20_000);
    } finally {
      await run.stop();
      await writeFile(flag, '').catch(() => undefined);
    }
  });
});
