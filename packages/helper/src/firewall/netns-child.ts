/**
 * Test-only child process of kernel.test.ts. The test runs it inside a network namespace it
 * created: `ip netns exec <ns> node --import tsx netns-child.ts '<json Job>'`. It drives the real
 * Steering with realExec, snapshots the kernel state after each phase, and prints one JSON Result
 * on stdout (logs go to stderr).
 * It refuses to run unless `ip netns identify` names the expected namespace, so it can never touch
 * the host's own network namespace. Not imported by the helper.
 */
import { createConnection } from 'node:net';
import type { Server } from 'node:net';
import { createServer } from 'node:net';
import { closeSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CaptureStartParamsSchema } from '@tproxy/protocol';
import type { CaptureStartParams } from '@tproxy/protocol';
import { ExecError, realExec } from '../exec.js';
import type { Exec } from '../exec.js';
import { createLogger } from '../log.js';
import { Steering } from './apply.js';
import type { RevertReport, VerifyResult } from './apply.js';
import { describeLeftovers, findLeftovers } from './inspect.js';
import { planSteering } from './plan.js';
import type { SteeringPlan } from './plan.js';

export interface Job {
  /** The namespace the test created; the child checks it runs there. */
  netns: string;
  mode: 'lifecycle' | 'traffic';
  params: CaptureStartParams;
  /** Fail the real (non -c) `nft -f -` with this stderr, to exercise rollback against the kernel. */
  failNftApply?: string;
  /** Use another nft table name (e.g. the keyword "tproxy", which nft rejects). */
  tableName?: string;
}

export interface Snapshot {
  ruleset: string;
  rules4: string;
  rules6: string;
  routes4: string;
  routes6: string;
}

export interface Result {
  applyError?: { name: string; code?: string; message: string };
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

async function sh(file: string, ...args: string[]): Promise<string> {
  try {
    return (await realExec.run(file, args)).stdout;
  } catch (err) {
    return `ERROR: ${err instanceof ExecError ? err.stderr.trim() : String(err)}`;
  }
}

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

/** Resolves 'connected', a Node error code, or 'timeout'; never hangs longer than timeoutMs. */
function tryConnect(host: string, port: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    const s = createConnection({ host, port });
    const timer = setTimeout(() => {
      s.destroy();
      resolve('timeout');
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.destroy();
      resolve('connected');
    });
    s.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(err.code ?? err.message);
    });
  });
}

/** The two addon calls the traffic check needs (see native/lib/index.ts NativeNet). */
interface TrafficNative {
  createTransparentListener(ip: string, port: number): number;
  connectMarked(ip: string, port: number, mark: number, timeoutMs: number): Promise<number>;
}
type LoadNative = () => { native: TrafficNative | null; reason?: string };

/**
 * The addon's front door: the built package when it exports loadNative, else its TypeScript source
 * through tsx (the package's dist can lag behind while native/ is being developed). Any failure
 * just skips the traffic check, with the reason.
 */
async function loadAddon(): Promise<{ native: TrafficNative | null; reason?: string }> {
  const candidates = ['@tproxy/native', pathToFileURL(fileURLToPath(new URL('../../../../native/lib/index.ts', import.meta.url))).href];
  const reasons: string[] = [];
  for (const spec of candidates) {
    try {
      const mod = (await import(spec)) as { loadNative?: LoadNative };
      if (typeof mod.loadNative === 'function') return mod.loadNative();
      reasons.push(`${spec}: no loadNative export`);
    } catch (err) {
      reasons.push(`${spec}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return { native: null, reason: reasons.join('; ') };
}

/**
 * Real interception through the applied rules: transparent listeners from the native addon, a
 * client connecting to addresses that only exist behind an unanswered next hop. Intercepted
 * connections complete locally and the listener sees the original destination as its local address.
 */
async function traffic(plan: SteeringPlan): Promise<Record<string, string | string[]>> {
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
    out.intercepted4 = await tryConnect('203.0.113.7', 443, 3000);
    out.intercepted6 = await tryConnect('2001:db8::7', 443, 3000);
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
  const base = planSteering(config);
  const plan: SteeringPlan = job.tableName ? { ...base, table: { ...base.table, name: job.tableName } } : base;
  const exec = job.failNftApply ? failingNft(job.failNftApply) : realExec;
  const steering = new Steering(exec, log);

  let applyError: Result['applyError'];
  try {
    await steering.apply(plan);
  } catch (err) {
    const e = err as Error & { code?: string };
    applyError = { name: e.name, ...(e.code ? { code: e.code } : {}), message: e.message };
  }
  const afterApply = await snapshot(config.routeTable);
  const verify = applyError ? undefined : await steering.verify(plan);
  const leftoversAfterApply = describeLeftovers(await findLeftovers(realExec, config, plan.table.name), plan.table.name);
  const trafficResult = job.mode === 'traffic' && !applyError ? await traffic(plan) : undefined;

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
