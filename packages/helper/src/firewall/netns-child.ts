/**
 * Test-only child process of kernel.test.ts. The test runs it inside a network namespace it
 * created: `nsenter --net=/run/netns/<ns> node --import tsx netns-child.ts '<json Job>'` (nsenter,
 * not `ip netns exec`: that remounts /sys, hiding the cgroup2 hierarchy nft resolves scope paths in). It drives the real
 * Steering with realExec, snapshots the kernel state after each phase, and prints one JSON Result
 * on stdout (logs go to stderr).
 * It refuses to run unless `ip netns identify` names the expected namespace, so it can never touch
 * the host's own network namespace. Not imported by the helper.
 */
import { spawn } from 'node:child_process';
import type { Server } from 'node:net';
import { createServer } from 'node:net';
import { closeSync } from 'node:fs';
import { CaptureStartParamsSchema, ERROR_CODE_NAMES } from '@tproxy/protocol';
import type { CaptureStartParams } from '@tproxy/protocol';
import { ExecError, realExec } from '../exec.js';
import type { Exec } from '../exec.js';
import { createLogger } from '../log.js';
import { loadAddon, sh, tryConnect } from './netns-child-support.js';
import { toRpcError } from '../rpc/errors.js';
import { Steering } from './apply.js';
import type { RevertReport, VerifyResult } from './apply.js';
import { describeLeftovers, findLeftovers } from './inspect.js';
import { planSteering } from './plan.js';
import type { SteeringPlan, SteeringScope } from './plan.js';

export interface Job {
  /** The namespace the test created; the child checks it runs there. */
  netns: string;
  mode: 'lifecycle' | 'traffic';
  params: CaptureStartParams;
  /** Fail the real (non -c) `nft -f -` with this stderr, to exercise rollback against the kernel. */
  failNftApply?: string;
  /** Use another nft table name (e.g. the keyword "tproxy", which nft rejects). */
  tableName?: string;
  /** Whose connections the plan takes (as the capture service would resolve it). */
  scope?: SteeringScope;
  /** An nft script loaded before apply (another tool's table, e.g. a "VPN" setting its own mark bit). */
  preNft?: string;
  /** An nft script loaded after apply, before the traffic checks (e.g. counters the collision check would flag). */
  postNft?: string;
  /** A table of `preNft`/`postNft` listed after the traffic checks, as `traffic.observed` (its counters). */
  observeTable?: string;
  /** Extra connections to 203.0.113.7:443 from other identities, reported as `traffic[name]`. */
  probes?: Probe[];
}

/** A connection made by a separate process: as another uid, and/or after moving into a cgroup. */
export interface Probe {
  name: string;
  uid?: number;
  /** `cgroup.procs` of the cgroup the process moves itself into before connecting. */
  cgroupProcs?: string;
}

export interface Snapshot {
  ruleset: string;
  rules4: string;
  rules6: string;
  routes4: string;
  routes6: string;
}

export interface Result {
  /** `wire` is the JSON-RPC error code name the helper would answer with (rpc/errors.ts). */
  applyError?: { name: string; code?: string; wire?: string; message: string };
  afterApply: Snapshot;
  verify?: VerifyResult;
  leftoversAfterApply: string[];
  traffic?: Record<string, string | string[]>;
  revert: RevertReport;
  afterRevert: Snapshot;
  revertAgain: RevertReport;
  leftoversAfterRevert: string[];
  cleanAfterRevert: boolean;
}

const log = createLogger('netns-child', 'debug');

async function snapshot(table: number): Promise<Snapshot> {
  return {
    ruleset: await sh('nft', 'list', 'ruleset'),
    rules4: await sh('ip', '-4', 'rule', 'show'),
    rules6: await sh('ip', '-6', 'rule', 'show'),
    routes4: await sh('ip', '-4', 'route', 'show', 'table', String(table)),
    routes6: await sh('ip', '-6', 'route', 'show', 'table', String(table)),
  };
}

function failingNft(stderr: string): Exec {
  return {
    run(file, args, options) {
      if (file === 'nft' && args.join(' ') === '-f -' && options?.input?.includes('set ports')) {
        return Promise.reject(new ExecError([file, ...args], 1, `${stderr}\n`));
      }
      return realExec.run(file, args, options);
    },
  };
}

/** Connects to 203.0.113.7:443 from a node process and prints connected / timeout / the error code. */
const PROBE_SCRIPT =
  "const s=require('net').createConnection({host:'203.0.113.7',port:443});" +
  "const t=setTimeout(()=>{console.log('timeout');process.exit(0)},1500);" +
  "s.on('connect',()=>{console.log('connected');process.exit(0)});" +
  "s.on('error',(e)=>{console.log(e.code||e.message);process.exit(0)});";

/** Runs one probe process (bounded: killed after 10 s); resolves its one-word result. */
function runProbe(probe: Probe): Promise<string> {
  const argv = probe.cgroupProcs
    ? ['sh', ['-c', 'echo $$ > "$2" && exec "$0" -e "$1"', process.execPath, PROBE_SCRIPT, probe.cgroupProcs]]
    : [process.execPath, ['-e', PROBE_SCRIPT]];
  return new Promise((resolve) => {
    const child = spawn(argv[0] as string, argv[1] as string[], {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(probe.uid !== undefined ? { uid: probe.uid, gid: probe.uid } : {}),
      timeout: 10_000,
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', (e) => resolve(`spawn failed: ${e.message}`));
    child.on('close', (code) => resolve(out.trim() || `exit ${code}: ${err.trim()}`));
  });
}

/**
 * Real interception through the applied rules: transparent listeners from the native addon, a
 * client connecting to addresses that only exist behind an unanswered next hop. Intercepted
 * connections complete locally and the listener sees the original destination as its local address.
 */
/**
 * `refresh` gives the fail-open `ports` elements their full lifetime again (Steering.heartbeat, as
 * the helper's monitor does every 2 s): on a loaded machine the checks below can take longer than
 * the 8 s lifetime, and an expired set would make every connection look "not intercepted".
 */
async function traffic(plan: SteeringPlan, refresh: () => Promise<void>, probes: readonly Probe[] = []): Promise<Record<string, string | string[]>> {
  const { native, reason } = await loadAddon();
  if (!native) return { skipped: `native addon unavailable: ${reason ?? 'unknown'}` };
  const seen: string[] = [];
  const servers: Server[] = [];
  const listenOn = [plan.config.listenV4, ...(plan.config.ipv6 ? [plan.config.listenV6] : [])];
  for (const ip of listenOn) {
    const server = createServer((sock) => {
      seen.push(`${sock.localAddress}:${sock.localPort}`);
      sock.destroy();
    });
    await new Promise<void>((resolve) => server.listen({ fd: native.createTransparentListener(ip, plan.config.listenPort) }, resolve));
    servers.push(server);
  }
  const out: Record<string, string | string[]> = {};
  try {
    await refresh();
    out.intercepted4 = await tryConnect('203.0.113.7', 443, 3000);
    out.intercepted6 = await tryConnect('2001:db8::7', 443, 3000);
    out.otherPort = await tryConnect('203.0.113.7', 80, 700);
    await refresh();
    out.bypass = await native.connectMarked('203.0.113.7', 443, plan.config.bypassMark, 700).then(
      (fd: number) => {
        closeSync(fd);
        return 'connected';
      },
      (err: NodeJS.ErrnoException) => err.code ?? err.message,
    );
    for (const probe of probes) {
      await refresh();
      out[probe.name] = await runProbe(probe);
    }
    out.seen = [...seen];
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
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
  const base = planSteering(config, job.scope ?? {});
  const plan: SteeringPlan = job.tableName ? { ...base, table: { ...base.table, name: job.tableName } } : base;
  const exec = job.failNftApply ? failingNft(job.failNftApply) : realExec;
  const steering = new Steering(exec, log);

  if (job.preNft !== undefined) await realExec.run('nft', ['-f', '-'], { input: job.preNft });

  let applyError: Result['applyError'];
  try {
    await steering.apply(plan);
  } catch (err) {
    const e = err as Error & { code?: string };
    const wire = ERROR_CODE_NAMES[toRpcError(err, log).code as keyof typeof ERROR_CODE_NAMES];
    applyError = { name: e.name, ...(e.code ? { code: e.code } : {}), ...(wire ? { wire } : {}), message: e.message };
  }
  const afterApply = await snapshot(config.routeTable);
  if (job.postNft !== undefined && !applyError) await realExec.run('nft', ['-f', '-'], { input: job.postNft });
  const verify = applyError ? undefined : await steering.verify(plan);
  const leftoversAfterApply = describeLeftovers(await findLeftovers(realExec, config, plan.table.name), plan.table.name);
  const trafficResult = job.mode === 'traffic' && !applyError ? await traffic(plan, () => steering.heartbeat(plan), job.probes) : undefined;
  if (trafficResult && job.observeTable) trafficResult.observed = await sh('nft', 'list', 'table', 'inet', job.observeTable);

  const revert = await steering.revert(plan);
  if (job.mode === 'traffic' && trafficResult && !('skipped' in trafficResult)) {
    trafficResult.afterRevert = await tryConnect('203.0.113.7', 443, 700);
  }
  const afterRevert = await snapshot(config.routeTable);
  const revertAgain = await steering.revert(plan);
  const left = await findLeftovers(realExec, config, plan.table.name);

  const result: Result = {
    ...(applyError ? { applyError } : {}),
    afterApply,
    ...(verify ? { verify } : {}),
    leftoversAfterApply,
    ...(trafficResult ? { traffic: trafficResult } : {}),
    revert,
    afterRevert,
    revertAgain,
    leftoversAfterRevert: describeLeftovers(left, plan.table.name),
    cleanAfterRevert: left.clean,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`netns-child: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
