/**
 * Test-only child process of iptables-kernel.test.ts (the pattern of netns-child.ts). The test runs
 * it inside a network namespace it created: `ip netns exec <ns> node --import tsx
 * iptables-netns-child.ts '<json Job>'`. It drives the real IptablesSteering of one flavour with
 * realExec, snapshots the kernel after each phase, and prints one JSON Result on stdout (logs go to
 * stderr). It refuses to run unless `ip netns identify` names the expected namespace, so it can
 * never touch the host's own network namespace. Not imported by the helper.
 */
import { closeSync } from 'node:fs';
import { createServer } from 'node:net';
import type { Server } from 'node:net';
import { CaptureStartParamsSchema } from '@tproxy/protocol';
import type { CaptureStartParams } from '@tproxy/protocol';
import { ExecError, realExec } from '../exec.js';
import type { Exec } from '../exec.js';
import { createLogger } from '../log.js';
import { loadAddon, sh, tryConnect, type TrafficNative } from './netns-child-support.js';
import type { RevertReport, VerifyResult } from './apply.js';
import { IPTABLES_BINARIES, IptablesSteering } from './iptables-apply.js';
import type { IptablesFlavour } from './iptables-apply.js';
import { IPSET_NAME } from './iptables.js';
import { planSteering } from './plan.js';
import type { SteeringPlan } from './plan.js';

export interface Job {
  /** The namespace the test created; the child checks it runs there. */
  netns: string;
  flavour: IptablesFlavour;
  /**
   * lifecycle: apply, verify, revert twice. traffic: also connect through the rules.
   * expiry: heartbeats keep interception alive; without them the ipset elements expire and new
   * connections flow directly (the fail-open of a helper killed without cleanup).
   */
  mode: 'lifecycle' | 'traffic' | 'expiry' | 'scope';
  /** Scope mode: only this uid's connections are taken (`-m owner --uid-owner`). */
  scopeUid?: number;
  params: CaptureStartParams;
  /** Shortened element lifetime for the expiry mode (seconds). */
  portsTimeoutSeconds?: number;
  /** Fail the real (non --test) IPv6 restore with this stderr, to exercise rollback against the kernel. */
  failIpv6Load?: string;
}

export interface Snapshot {
  save4: string;
  save6: string;
  ipset: string;
  rules4: string;
  rules6: string;
  routes4: string;
  routes6: string;
}

export interface Result {
  applyError?: { name: string; code?: string; message: string };
  afterApply: Snapshot;
  verify?: VerifyResult;
  traffic?: Record<string, string | string[]>;
  expiry?: Record<string, string | boolean | string[]>;
  revert: RevertReport;
  afterRevert: Snapshot;
  revertAgain: RevertReport;
}

const log = createLogger('iptables-netns-child', 'debug');

async function snapshot(flavour: IptablesFlavour, table: number): Promise<Snapshot> {
  const bins = IPTABLES_BINARIES[flavour];
  return {
    save4: await sh(bins.ipv4.save),
    save6: await sh(bins.ipv6.save),
    ipset: await sh('ipset', 'list', '-n'),
    rules4: await sh('ip', '-4', 'rule', 'show'),
    rules6: await sh('ip', '-6', 'rule', 'show'),
    routes4: await sh('ip', '-4', 'route', 'show', 'table', String(table)),
    routes6: await sh('ip', '-6', 'route', 'show', 'table', String(table)),
  };
}

function failingIpv6Load(flavour: IptablesFlavour, stderr: string): Exec {
  const restore = IPTABLES_BINARIES[flavour].ipv6.restore;
  return {
    run(file, args, options) {
      if (file === restore && !args.includes('--test') && options?.input?.includes(':TPROXY_HELPER_OUT')) {
        return Promise.reject(new ExecError([file, ...args], 1, `${stderr}\n`));
      }
      return realExec.run(file, args, options);
    },
  };
}

/** Transparent listeners for the plan's families; each accepted socket's local address lands in `seen`. */
async function listen(native: TrafficNative, plan: SteeringPlan, seen: string[]): Promise<Server[]> {
  const servers: Server[] = [];
  for (const ip of [plan.config.listenV4, ...(plan.config.ipv6 ? [plan.config.listenV6] : [])]) {
    const server = createServer((sock) => {
      seen.push(`${sock.localAddress}:${sock.localPort}`);
      sock.destroy();
    });
    await new Promise<void>((resolve) => server.listen({ fd: native.createTransparentListener(ip, plan.config.listenPort) }, resolve));
    servers.push(server);
  }
  return servers;
}

async function closeAll(servers: Server[]): Promise<void> {
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
}

async function traffic(native: TrafficNative, plan: SteeringPlan): Promise<Record<string, string | string[]>> {
  const seen: string[] = [];
  const servers = await listen(native, plan, seen);
  const out: Record<string, string | string[]> = {};
  try {
    out.intercepted4 = await tryConnect('203.0.113.7', 443, 3000);
    if (plan.config.ipv6) out.intercepted6 = await tryConnect('2001:db8::7', 443, 3000);
    out.otherPort = await tryConnect('203.0.113.7', 80, 700);
    out.bypass = await native.connectMarked('203.0.113.7', 443, plan.config.bypassMark, 700).then(
      (fd: number) => {
        closeSync(fd);
        return 'connected';
      },
      (err: NodeJS.ErrnoException) => err.code ?? err.message,
    );
    out.seen = [...seen];
  } finally {
    await closeAll(servers);
  }
  return out;
}

/** Connects as another uid (setpriv + bash /dev/tcp): 'connected', or why not. */
async function connectAs(uid: number, host: string, port: number): Promise<string> {
  try {
    const { stdout } = await realExec.run('setpriv', ['--reuid', String(uid), '--regid', String(uid), '--clear-groups', 'timeout', '3', 'bash', '-c', `exec 3<>/dev/tcp/${host}/${port} && echo connected`]);
    return stdout.trim();
  } catch (err) {
    return err instanceof ExecError ? `failed (exit ${err.exitCode ?? 'killed'}): ${err.stderr.trim()}` : String(err);
  }
}

/** Only the scoped uid's new connections reach the listener; root's do not. */
async function scoped(native: TrafficNative, plan: SteeringPlan, uid: number): Promise<Record<string, string | string[]>> {
  const seen: string[] = [];
  const servers = await listen(native, plan, seen);
  try {
    const root = await tryConnect('203.0.113.7', 443, 1000);
    const other = await connectAs(uid, '203.0.113.7', 443);
    return { root, other, seen: [...seen] };
  } finally {
    await closeAll(servers);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Heartbeats every 500 ms for twice the element lifetime: a new connection is still intercepted.
 * Then no heartbeat (the helper "died"): after the lifetime plus a margin, the set is empty and a
 * new connection is no longer intercepted (times out at the unanswered next hop).
 */
async function expiry(native: TrafficNative, steering: IptablesSteering, plan: SteeringPlan): Promise<Record<string, string | boolean | string[]>> {
  const seen: string[] = [];
  const servers = await listen(native, plan, seen);
  const out: Record<string, string | boolean | string[]> = {};
  try {
    const lifetimeMs = plan.portsTimeoutSeconds * 1000;
    for (let t = 0; t < 2 * lifetimeMs; t += 500) {
      await steering.heartbeat(plan);
      await sleep(500);
    }
    out.afterHeartbeats = await tryConnect('203.0.113.7', 443, 2000);
    await sleep(lifetimeMs + 1500);
    out.members = (await sh('ipset', 'list', IPSET_NAME)).split('Members:')[1]?.trim() ?? 'ERROR: no Members';
    out.afterExpiry = await tryConnect('203.0.113.7', 443, 1500);
    const v = await steering.verify(plan);
    out.verifyMissing = v.missing;
    out.seen = [...seen];
  } finally {
    await closeAll(servers);
  }
  return out;
}

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2] ?? '{}') as Job;
  const here = (await sh('ip', 'netns', 'identify', String(process.pid))).trim();
  if (!job.netns || here !== job.netns) {
    throw new Error(`refusing to run: expected network namespace "${job.netns}", running in "${here || 'the host namespace'}"`);
  }
  const config = CaptureStartParamsSchema.parse(job.params);
  const base = planSteering(config, job.scopeUid !== undefined ? { uids: [job.scopeUid] } : {});
  const plan: SteeringPlan = job.portsTimeoutSeconds ? { ...base, portsTimeoutSeconds: job.portsTimeoutSeconds } : base;
  const exec = job.failIpv6Load ? failingIpv6Load(job.flavour, job.failIpv6Load) : realExec;
  const steering = new IptablesSteering(exec, log, job.flavour);

  let applyError: Result['applyError'];
  try {
    await steering.apply(plan);
  } catch (err) {
    const e = err as Error & { code?: string };
    applyError = { name: e.name, ...(e.code ? { code: e.code } : {}), message: e.message };
  }
  const afterApply = await snapshot(job.flavour, config.routeTable);
  const verify = applyError ? undefined : await steering.verify(plan);

  let trafficResult: Result['traffic'];
  let expiryResult: Result['expiry'];
  if (!applyError && job.mode !== 'lifecycle') {
    const { native, reason } = await loadAddon();
    if (!native) trafficResult = { skipped: `native addon unavailable: ${reason ?? 'unknown'}` };
    else if (job.mode === 'traffic') trafficResult = await traffic(native, plan);
    else if (job.mode === 'scope') trafficResult = await scoped(native, plan, job.scopeUid ?? 65534);
    else expiryResult = await expiry(native, steering, plan);
  }

  const revert = await steering.revert(plan);
  if (trafficResult && !('skipped' in trafficResult)) trafficResult.afterRevert = await tryConnect('203.0.113.7', 443, 700);
  const afterRevert = await snapshot(job.flavour, config.routeTable);
  const revertAgain = await steering.revert(plan);

  const result: Result = {
    ...(applyError ? { applyError } : {}),
    afterApply,
    ...(verify ? { verify } : {}),
    ...(trafficResult ? { traffic: trafficResult } : {}),
    ...(expiryResult ? { expiry: expiryResult } : {}),
    revert,
    afterRevert,
    revertAgain,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`iptables-netns-child: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
