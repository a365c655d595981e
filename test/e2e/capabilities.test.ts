/**
 * The systemd unit's CapabilityBoundingSet= is enough, proven without systemd: the real helper
 * runs under `setpriv` with exactly the capabilities parsed from the unit as `tproxyctl install`
 * renders it (bounding set, no inheritable or ambient caps, no new privileges), socket-activated
 * like the unit, with the unit's own ExecStart flags, and does the whole job:
 *   capture.start (CA into the trust store, rules, routes, transparent listeners, marked upstream
 *   sockets) → ca.get (public CA and bundle files) → a plain curl is intercepted and decrypted →
 *   capture.stop leaves nothing →
 *   capture again, kill -9, the unit's ExecStopPost (`--cleanup --keep-socket`, same caps) leaves
 *   nothing.
 * Then each capability is removed in turn and the same flow reports where it breaks (printed as
 * `# without CAP_X: ...`), and the ones it needed are shown to be enough on their own, so the
 * set can be trimmed to them. Not emulated without systemd: ProtectSystem=, ProtectHome=,
 * RestrictAddressFamilies= and the other sandboxing settings (systemd-analyze verify checks syntax only).
 *
 *   client ns: systemd-socket-activate ─exec─▶ setpriv --bounding-set -all,+<unit caps> ─exec─▶ node tproxy-helper
 *              curl (system trust store) ──▶ nft/ip rule ──▶ helper ──▶ upstream ns
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { TproxyClient, methods } from '@tproxy/client';
import { renderUnits, templatePaths } from '../../packages/client/dist/cli/service-units.js';
import { anchors, ourSteering, waitForExchange } from './lib/checks.js';
import { curlInNs } from './lib/curl.js';
import { HELPER_MAIN } from './lib/helper.js';
import { e2ePreflight } from './lib/preflight.js';
import { runInNs } from './lib/proc.js';
import { socketActivateArgv, waitForSocket } from './lib/socket-activate.js';
import { world, type World } from './lib/world.js';

const skip = await e2ePreflight(['curl', 'setpriv', 'systemd-socket-activate', 'update-ca-certificates']);

const GOOD = ['--resolve', 'upstream.test:443:198.18.0.2'];
/** The operator the unit is rendered for (`tproxyctl install --user`), so ExecStart carries --allow-uid. */
const OPERATOR_UID = 65534;

interface Unit {
  /** `CAP_NET_ADMIN`, ... as the unit lists them. */
  caps: string[];
  /** ExecStart= flags after node and the helper path. */
  flags: string[];
  /** ExecStopPost= flags after node and the helper path. */
  stopPostFlags: string[];
}

async function renderedUnit(): Promise<Unit> {
  const paths = templatePaths();
  const units = renderUnits(
    { socket: await readFile(paths.socket, 'utf8'), service: await readFile(paths.service, 'utf8') },
    { node: process.execPath, helper: HELPER_MAIN, uid: OPERATOR_UID },
  );
  const value = (key: string) => {
    const line = units.service.split('\n').find((l) => l.startsWith(`${key}=`));
    assert.ok(line, `the rendered service has ${key}=`);
    return line.slice(key.length + 1).trim();
  };
  const execArgs = (key: string) => {
    const argv = value(key).split(/\s+/);
    assert.equal(argv[0], process.execPath);
    assert.equal(argv[1], HELPER_MAIN);
    return argv.slice(2);
  };
  return { caps: value('CapabilityBoundingSet').split(/\s+/), flags: execArgs('ExecStart'), stopPostFlags: execArgs('ExecStopPost') };
}

/** setpriv argv prefix: exactly `caps` in the bounding set, nothing inheritable or ambient, NoNewPrivileges. */
function bounded(caps: readonly string[], argv: readonly string[]): string[] {
  const set = ['-all', ...caps.map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`)].join(',');
  return ['setpriv', `--bounding-set=${set}`, '--inh-caps=-all', '--ambient-caps=-all', '--no-new-privs', ...argv];
}

function capMask(pid: number, field: 'CapBnd' | 'CapEff'): bigint {
  const m = new RegExp(`^${field}:\\s+([0-9a-f]+)$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, `${field} of pid ${pid}`);
  return BigInt(`0x${m[1]}`);
}

function popcount(n: bigint): number {
  let count = 0;
  for (let v = n; v > 0n; v >>= 1n) count += Number(v & 1n);
  return count;
}

type Outcome = { ok: true } | { ok: false; stage: string; detail: string };

let attempts = 0;

/** The whole flow under `caps`; never throws for a capability problem, says where it broke instead. */
async function attempt(w: World, unit: Unit, caps: readonly string[]): Promise<Outcome> {
  const name = `caps${++attempts}`;
  const socketPath = join(w.dir, `${name}.sock`);
  const stateDir = join(w.dir, `${name}-state`);
  const local = ['--socket', socketPath, '--state-dir', stateDir, '--upstream-ca', w.certs.caCert, '--log-level', 'debug'];
  const proc = w.topo.spawn(w.topo.clientNs, socketActivateArgv(socketPath, bounded(caps, [process.execPath, HELPER_MAIN, ...unit.flags, ...local]), { fdName: 'rpc' }));
  let client: TproxyClient | undefined;
  let stage = 'start-up';
  const fail = (detail: string): Outcome => ({ ok: false, stage, detail: `${detail.split('\n')[0]}` });
  try {
    await waitForSocket(socketPath);
    client = await TproxyClient.connect({ socketPath, timeoutMs: 60_000 });
    const info = await client.call(methods.helperInfo, {});
    // The process really runs with the bounded set (same pid: every wrapper execs in place).
    assert.equal(info.pid, proc.pid);
    assert.equal(popcount(capMask(proc.pid, 'CapBnd')), caps.length, 'bounding set size');
    assert.equal(capMask(proc.pid, 'CapEff'), capMask(proc.pid, 'CapBnd'), 'root has exactly the bounding set');

    stage = 'capture.start';
    const started = await client.call(methods.captureStart, {});
    if (!started.caInstalled) return fail('the CA was not installed into the trust store');
    stage = 'ca.get';
    // Writes the public ca.pem and bundle.pem next to the socket (what `tproxyctl env` names).
    const ca = await client.call(methods.caGet, {});
    if (!readFileSync(ca.bundlePath, 'utf8').includes(ca.pem.trim().split('\n')[1]!)) return fail(`${ca.bundlePath} lacks our CA`);
    stage = 'intercepted request';
    const r = await curlInNs(w.topo.clientNs, ['--fail', ...GOOD, `https://upstream.test/hello?${name}`], { timeoutMs: 20_000 });
    if (r.code !== 0) return fail(`curl exit ${r.code}: ${r.stderr.trim()}`);
    await waitForExchange(client, (e) => e.request.url.endsWith(`?${name}`) && e.response?.status === 200);
    stage = 'capture.stop';
    await client.call(methods.captureStop, {});
    const left = await ourSteering(w.topo.clientNs);
    if (left !== '' || anchors().length > 0) return fail(`left behind: ${left} ${anchors().join(' ')}`);

    stage = 'ExecStopPost after kill -9';
    await client.call(methods.captureStart, {});
    await client.close();
    proc.kill('SIGKILL');
    await proc.waitForExit(10_000);
    const cleanup = await runInNs(w.topo.clientNs, bounded(caps, [process.execPath, HELPER_MAIN, ...unit.stopPostFlags, ...local.slice(0, 4)]), { timeoutMs: 60_000 });
    if (cleanup.code !== 0) return fail(`--cleanup exit ${cleanup.code}: ${cleanup.stderr.trim()}`);
    const after = await ourSteering(w.topo.clientNs);
    if (after !== '' || anchors().length > 0) return fail(`left behind: ${after} ${anchors().join(' ')} (${cleanup.stderr.trim().split('\n').filter((l) => /error/.test(l)).join(' | ')})`);
    return { ok: true };
  } catch (err) {
    return fail(`${(err as Error).message}${proc.exitStatus ? `; helper log: ${proc.output().stderr.split('\n').filter((l) => /error|fatal|EPERM|denied/i.test(l)).slice(0, 3).join(' | ')}` : ''}`);
  } finally {
    await client?.close().catch(() => undefined);
    await proc.stop();
    // Reset the namespace and the trust store for the next attempt, with every capability.
    await runInNs(w.topo.clientNs, [process.execPath, HELPER_MAIN, '--cleanup', ...local.slice(0, 4)], { timeoutMs: 60_000 });
  }
}

describe('the unit CapabilityBoundingSet, applied with setpriv', { skip: skip ?? false, timeout: 600_000 }, () => {
  const w = world();
  let unit: Unit;

  it('is enough for start, an intercepted request, stop, and the ExecStopPost cleanup after kill -9', async () => {
    unit = await renderedUnit();
    console.log(`# unit: CapabilityBoundingSet=${unit.caps.join(' ')}; ExecStart flags: ${unit.flags.join(' ')}; ExecStopPost flags: ${unit.stopPostFlags.join(' ')}`);
    assert.ok(unit.caps.length > 0 && unit.caps.every((c) => /^CAP_[A-Z_]+$/.test(c)), unit.caps.join(' '));
    const outcome = await attempt(w, unit, unit.caps);
    assert.deepEqual(outcome, { ok: true });
  });

  it('each capability, removed in turn: where the flow breaks without it (report)', async () => {
    assert.ok(unit, 'the first test rendered the unit');
    const report: Record<string, Outcome> = {};
    for (const cap of unit.caps) {
      const outcome = await attempt(w, unit, unit.caps.filter((c) => c !== cap));
      report[cap] = outcome;
      console.log(`# without ${cap}: ${outcome.ok ? 'the whole flow still works (not needed by it)' : `breaks at ${outcome.stage}: ${outcome.detail.slice(0, 300)}`}`);
    }
    // Without CAP_NET_ADMIN there are no rules, routes, TPROXY or SO_MARK: the proof that the
    // bounding set is really in force (a test that cannot fail proves nothing).
    assert.equal(report.CAP_NET_ADMIN?.ok, false, 'the flow must fail without CAP_NET_ADMIN');
    // And the capabilities the flow did need are, alone, enough for all of it.
    const needed = unit.caps.filter((c) => report[c]?.ok === false);
    const minimal = await attempt(w, unit, needed);
    console.log(`# needed by this flow: ${needed.join(' ')}; with only those: ${minimal.ok ? 'the whole flow works' : `breaks at ${minimal.stage}`}`);
    assert.deepEqual(minimal, { ok: true });
  });
});
