/**
 * ca.install / ca.uninstall / ca.rotate end to end, with the real helper, update-ca-certificates
 * and curl, and `tproxyctl ca install|uninstall --nss` with the real certutil run by the real
 * tproxyctl as an unprivileged user, inside the trust sandbox (lib/sandbox.ts), so only the
 * sandbox's copy of the trust store changes. Every child runs with cleanEnv(): no SSL_CERT_FILE,
 * CURL_CA_BUNDLE, NODE_EXTRA_CA_CERTS or REQUESTS_CA_BUNDLE, so curl trusts exactly the
 * (sandboxed) system store.
 *
 *   client ns: tproxy-helper ── ca.install ──▶ /usr/local/share/ca-certificates/tproxy-persistent-<serial>.crt
 *              │   ▲                           + update-ca-certificates ──▶ /etc/ssl/certs/ca-certificates.crt
 *              │   └─ ca.get (socket 0600, owned by the user, --allow-uid) ── tproxyctl ca install --nss
 *              │                                   (uid of the test user, HOME=<home>) ──▶ certutil ──▶ <home>/.pki/nssdb
 *              └─ curl (system store only) ──▶ 198.18.0.2:443 (intercepted)
 *
 * The NSS user exists only in this run: the test process (inside the sandbox's private mount
 * namespace) bind-mounts copies of /etc/passwd and /etc/group that add it over the real files, so
 * the user's processes have a name as on a real host. The host's user database is never written
 * (checked through the host view).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmod, chown, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ErrorCode, methods, RpcError } from '@tproxy/client';
import { anchors, ourSteering, waitForExchange } from './lib/checks.js';
import { CURL_EXIT, curlInNs } from './lib/curl.js';
import { cleanEnv } from './lib/env.js';
import { HELPER_MAIN, TPROXYCTL_MAIN, startHelper, tproxyctl, type HelperHandle } from './lib/helper.js';
import { e2ePreflight } from './lib/preflight.js';
import { runCommand, runInNs, type RunResult } from './lib/proc.js';
import { hostViewPath, inTrustSandbox } from './lib/sandbox.js';
import { HELLO_BODY } from './lib/upstream-app.js';
import { world } from './lib/world.js';

const skip = await e2ePreflight(['curl', 'systemd-socket-activate', 'update-ca-certificates', 'certutil', 'getent', 'mount', 'umount', 'setpriv']);

const SYSTEM_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';
const USER = `tpxe2e${process.pid}`;

/** The base64 body of a PEM, which is how it appears inside the concatenated system bundle. */
const body = (pem: string) => pem.replace(/-----[^-]+-----/g, '').replace(/\s/g, '');
const bundleHas = async (pem: string) => (await readFile(SYSTEM_BUNDLE, 'utf8')).replace(/\s/g, '').includes(body(pem));
const serialOf = (pem: string) => new X509Certificate(pem).serialNumber.toLowerCase();

/** A uid and gid in neither passwd nor group (the range useradd leaves alone). */
function unusedId(): number {
  for (let id = 61000; id < 61999; id++) {
    const taken = (db: string) => {
      try {
        execFileSync('getent', [db, String(id)], { stdio: 'ignore' });
        return true;
      } catch {
        return false;
      }
    };
    if (!taken('passwd') && !taken('group')) return id;
  }
  throw new Error('no unused uid in 61000-61998');
}

/** Nicknames in a `certutil -L` listing. */
const parseNicknames = (listing: string) =>
  listing
    .split('\n')
    .map((l) => /^(\S.*?)\s+\S*,\S*,\S*\s*$/.exec(l)?.[1])
    .filter((n): n is string => n !== undefined && n !== 'Certificate Nickname');

/** Our nickname for a CA (tproxyctl's rule, restated: the test must not borrow the code it checks). */
const nicknameOf = (fingerprintSha256: string) => `tproxy CA ${fingerprintSha256.replace(/:/g, '').slice(0, 8)}`;

describe('ca.install, ca.uninstall, ca.rotate; tproxyctl ca install --nss as the user', { skip: skip ?? false, timeout: 600_000 }, () => {
  const w = world();
  let helper: HelperHandle;
  let home: string;
  let homeParent: string;
  let uid: number;
  const mounted: string[] = [];

  /** curl from the client namespace with the system store only. */
  const curlSystem = () => curlInNs(w.topo.clientNs, ['--resolve', 'upstream.test:443:198.18.0.2', 'https://upstream.test/hello']);
  /** curl trusting exactly `pem` (no default CA path either). */
  const curlTrusting = async (pem: string) => {
    const file = join(w.dir, `trust-${Date.now()}.pem`);
    await writeFile(file, pem);
    return curlInNs(w.topo.clientNs, ['--cacert', file, '--capath', '/nonexistent', '--resolve', 'upstream.test:443:198.18.0.2', 'https://upstream.test/hello']);
  };
  const rpcFails = async (p: Promise<unknown>, code: ErrorCode, message: RegExp) =>
    assert.rejects(p, (e) => e instanceof RpcError && e.code === code && message.test(e.message));
  /** `argv` as the test user (uid and gid, no supplementary groups) with HOME=<home> unless `env` says otherwise. */
  const asUser = (argv: readonly string[], env: Record<string, string | undefined> = {}): Promise<RunResult> =>
    runCommand(['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', ...argv], { env: cleanEnv({ HOME: home, USER, LOGNAME: USER, ...env }), timeoutMs: 60_000 });
  /** The real tproxyctl as the test user. */
  const userCtl = (args: readonly string[], env: Record<string, string | undefined> = {}) =>
    asUser([process.execPath, TPROXYCTL_MAIN, '--socket', helper.socketPath, ...args], env);
  const db = () => join(home, '.pki', 'nssdb');
  /** certutil -L of the user's database, run as the user (root must not leave files there). */
  const nicknames = async (): Promise<string[]> => {
    const r = await asUser(['certutil', '-L', '-d', `sql:${db()}`]);
    assert.equal(r.code, 0, r.stderr);
    return parseNicknames(r.stdout);
  };
  /**
   * The helper under socket activation with the user allowed, and the socket as the installed
   * tproxy-helper.socket makes it (SocketUser=<operator>, SocketMode=0600): systemd-socket-activate
   * leaves the umask's mode and root's ownership.
   */
  const startCaHelper = async (name: string, stateName?: string): Promise<HelperHandle> => {
    const h = await startHelper(w.topo, w.dir, name, w.certs.caCert, { allowUids: [uid], ...(stateName ? { stateName } : {}) });
    await chown(h.socketPath, uid, -1);
    await chmod(h.socketPath, 0o600);
    return h;
  };

  before(async () => {
    // Only ever inside the private mount namespace: the bind mounts below die with it.
    assert.ok(inTrustSandbox(), 'must run inside the trust sandbox');
    uid = unusedId();
    homeParent = await mkdtemp(join(tmpdir(), 'tproxy-e2e-home-'));
    await chmod(homeParent, 0o755);
    home = join(homeParent, USER);
    await mkdir(home, { mode: 0o700 });
    await chown(home, uid, uid);
    for (const [file, line] of [
      ['/etc/passwd', `${USER}:x:${uid}:${uid}:tproxy e2e:${home}:/usr/sbin/nologin`],
      ['/etc/group', `${USER}:x:${uid}:`],
    ] as const) {
      const copy = join(homeParent, file.split('/').pop()!);
      await writeFile(copy, `${(await readFile(file, 'utf8')).trimEnd()}\n${line}\n`, { mode: 0o644 });
      execFileSync('mount', ['--bind', copy, file]);
      mounted.push(file);
    }
    assert.match(execFileSync('getent', ['passwd', USER], { encoding: 'utf8' }), new RegExp(`^${USER}:x:${uid}:`));
    assert.ok(!(await readFile(hostViewPath('/etc/passwd'), 'utf8')).includes(USER), 'the host passwd is untouched');
    // The user reaches the socket in the world's dir (the upstream CA key there is a test throwaway).
    await chmod(w.dir, 0o755);
    helper = await startCaHelper('ca');
  });
  after(async () => {
    await helper?.client.close().catch(() => undefined);
    await helper?.proc.stop().catch(() => undefined);
    for (const file of mounted.reverse()) execFileSync('umount', [file]);
    if (homeParent) await rm(homeParent, { recursive: true, force: true });
  });

  it('ca.install: the system bundle holds the CA, plain curl trusts interception; stop, kill -9 + cleanup and a restart keep it', async () => {
    const ca = await helper.client.call(methods.caInstall, {});
    const anchor = `/usr/local/share/ca-certificates/tproxy-persistent-${serialOf(ca.pem)}.crt`;
    assert.equal(ca.persistent, true);
    assert.equal(ca.installed, true);
    assert.equal(ca.trustStorePath, anchor);
    assert.ok(await bundleHas(ca.pem), 'update-ca-certificates put our CA into the system bundle');

    const started = await helper.client.call(methods.captureStart, {});
    assert.equal(started.trustStorePath, anchor, 'capture uses the persistent entry');
    assert.deepEqual(anchors(), [anchor.split('/').pop()], 'capture adds no second entry');
    const r = await curlSystem();
    assert.equal(r.code, CURL_EXIT.ok, r.stderr);
    assert.equal(r.stdout, HELLO_BODY);
    await waitForExchange(helper.client, (e) => e.request.url === 'https://upstream.test/hello');

    const stopped = await helper.client.call(methods.captureStop, {});
    assert.equal(stopped.caInstalled, true);
    assert.deepEqual(anchors(), [anchor.split('/').pop()]);
    assert.ok(await bundleHas(ca.pem));

    // The helper is killed mid-capture and the unit's ExecStopPost cleanup runs: the steering goes,
    // the persistent install stays.
    await helper.client.call(methods.captureStart, {});
    assert.notEqual(await ourSteering(w.topo.clientNs), '');
    await helper.client.close();
    helper.proc.kill('SIGKILL');
    await helper.proc.waitForExit(10_000);
    const cleanup = await runInNs(w.topo.clientNs, [process.execPath, HELPER_MAIN, '--cleanup', '--keep-socket', '--state-dir', helper.stateDir, '--socket', helper.socketPath], { timeoutMs: 60_000 });
    assert.equal(cleanup.code, 0, cleanup.stderr);
    assert.match(cleanup.stderr, /cleanup removed: .*nft table inet tproxy_helper/);
    assert.doesNotMatch(cleanup.stderr, /trust-store entry/);
    assert.equal(await ourSteering(w.topo.clientNs), '');
    assert.deepEqual(anchors(), [anchor.split('/').pop()]);
    assert.ok(await bundleHas(ca.pem));
    helper = await startCaHelper('ca2', 'ca');
    const again = await helper.client.call(methods.caGet, {});
    assert.equal(again.fingerprintSha256, ca.fingerprintSha256);
    assert.equal(again.persistent, true);
    assert.equal(again.trustStorePath, anchor);
  });

  it('tproxyctl ca install --nss as the user: certutil as that user fills ~/.pki/nssdb; uninstall --nss removes exactly ours', async () => {
    // Root with the user's HOME (sudo without -H) is refused before anything is created.
    const asRoot = await runCommand([process.execPath, TPROXYCTL_MAIN, '--socket', helper.socketPath, 'ca', 'install', '--nss'], { env: cleanEnv({ HOME: home }), timeoutMs: 60_000 });
    assert.equal(asRoot.code, 1, asRoot.stdout);
    assert.match(asRoot.stderr, new RegExp(`${home} belongs to uid ${uid}, not to this process \\(uid 0\\).*sudo -u <user> -H`));
    assert.deepEqual(await readdir(home), [], 'root created nothing in the user\'s home');
    const noHome = await userCtl(['ca', 'install', '--nss'], { HOME: undefined });
    assert.equal(noHome.code, 1);
    assert.match(noHome.stderr, /HOME is not set/);

    const r = await userCtl(['ca', 'install', '--nss']);
    assert.equal(r.code, 0, r.stderr);
    const ca = await helper.client.call(methods.caGet, {});
    const nick = nicknameOf(ca.fingerprintSha256);
    assert.match(r.stdout, new RegExp(`^CA added to the NSS database ${db()} \\(created\\) as "${nick}"\n`));
    assert.deepEqual(await nicknames(), [nick]);
    // The database holds exactly the helper's CA certificate.
    const exported = await asUser(['certutil', '-L', '-d', `sql:${db()}`, '-n', nick, '-a']);
    assert.equal(new X509Certificate(exported.stdout).fingerprint256, ca.fingerprintSha256);
    // Everything in the user's home was made by the user; the directories are private.
    for (const path of [join(home, '.pki'), db(), join(db(), 'cert9.db'), join(db(), 'key4.db')]) {
      assert.equal((await stat(path)).uid, uid, path);
    }
    assert.equal((await stat(db())).mode & 0o777, 0o700);

    // Someone else's root in the same database stays.
    const other = await asUser(['certutil', '-A', '-d', `sql:${db()}`, '-n', 'Other Root', '-t', 'C,,', '-i', w.certs.caCert]);
    assert.equal(other.code, 0, other.stderr);
    const removed = await userCtl(['ca', 'uninstall', '--nss']);
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal(removed.stdout, `removed ${nick} from the NSS database ${db()}\n`);
    assert.deepEqual(await nicknames(), ['Other Root']);
    assert.equal((await helper.client.call(methods.caGet, {})).persistent, true, 'the NSS uninstall keeps the OS entry');
  });

  it('ca.rotate: refused while capturing; then a new CA, interception signed by it; install --nss replaces the old nickname', async () => {
    const installed = await userCtl(['ca', 'install', '--nss']);
    assert.equal(installed.code, 0, installed.stderr);
    const old = await helper.client.call(methods.caGet, {});
    await helper.client.call(methods.captureStart, {});
    await rpcFails(helper.client.call(methods.caRotate, {}), ErrorCode.CaptureRunning, /stop capture/);
    await helper.client.call(methods.captureStop, {});

    const out = await tproxyctl(helper.socketPath, ['ca', 'rotate']);
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, new RegExp(`^CA rotated; replaced ${old.fingerprintSha256}\n`));
    assert.match(out.stdout, /\nNSS databases .* still trust the old CA: run `tproxyctl ca install --nss`/);
    const rotated = await helper.client.call(methods.caGet, {});
    assert.notEqual(rotated.fingerprintSha256, old.fingerprintSha256);
    assert.equal(rotated.persistent, true);
    assert.deepEqual(anchors(), [`tproxy-persistent-${serialOf(rotated.pem)}.crt`]);
    assert.ok(await bundleHas(rotated.pem), 'the new CA is in the system bundle');
    assert.ok(!(await bundleHas(old.pem)), 'the old CA is gone from it');
    assert.equal(await readFile(rotated.caPath, 'utf8'), rotated.pem, 'public ca.pem regenerated');
    assert.ok((await readFile(rotated.bundlePath, 'utf8')).endsWith(rotated.pem), 'public bundle.pem regenerated');
    const keyMode = (await stat(join(helper.stateDir, 'ca-key.pem'))).mode & 0o777;
    assert.equal(keyMode, 0o600);
    // The helper cannot reach the user's database: the old entry is there until the user replaces it.
    assert.deepEqual((await nicknames()).sort(), ['Other Root', nicknameOf(old.fingerprintSha256)].sort());
    const replaced = await userCtl(['ca', 'install', '--nss']);
    assert.equal(replaced.code, 0, replaced.stderr);
    assert.match(replaced.stdout, new RegExp(`\nremoved the older "${nicknameOf(old.fingerprintSha256)}" \\(a rotated CA\\)\n`));
    assert.deepEqual((await nicknames()).sort(), ['Other Root', nicknameOf(rotated.fingerprintSha256)].sort());

    await helper.client.call(methods.captureStart, {});
    const plain = await curlSystem();
    assert.equal(plain.code, CURL_EXIT.ok, plain.stderr);
    const withNew = await curlTrusting(rotated.pem);
    assert.equal(withNew.code, CURL_EXIT.ok, withNew.stderr);
    const withOld = await curlTrusting(old.pem);
    assert.equal(withOld.code, CURL_EXIT.peerFailedVerification, `the leaf must not chain to the old CA: ${withOld.stderr}`);
  });

  it('ca.uninstall during a capture: the capture keeps its own entry until stop, then nothing is trusted', async () => {
    const ca = await helper.client.call(methods.caUninstall, {});
    assert.equal(ca.persistent, false);
    assert.deepEqual(anchors(), [`tproxy-${serialOf(ca.pem)}.crt`], 'capture-scoped entry replaced the persistent one');
    const during = await curlSystem();
    assert.equal(during.code, CURL_EXIT.ok, during.stderr);

    const stopped = await helper.client.call(methods.captureStop, {});
    assert.equal(stopped.caInstalled, false);
    assert.deepEqual(anchors(), []);
    assert.ok(!(await bundleHas(ca.pem)));
    // Idempotent.
    assert.equal((await helper.client.call(methods.caUninstall, {})).installed, false);
  });

  it('tproxyctl ca uninstall --nss needs no helper: with it stopped, the user still removes the entry', async () => {
    await helper.client.close();
    await helper.proc.stop();
    const r = await userCtl(['ca', 'uninstall', '--nss']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^removed tproxy CA [0-9A-F]{8} from the NSS database /);
    assert.deepEqual(await nicknames(), ['Other Root']);
  });
});
