/**
 * The only firewall module that changes kernel state. It runs the rendered plan through an
 * injected Exec (argv + stdin, never a shell): `apply` installs routes, then ip rules, then the nft
 * table that starts marking, so nothing is marked before routing is ready; any failure undoes
 * exactly what this attempt added, newest first, and throws a FirewallError saying what was being
 * attempted plus the command's stderr. `revert` removes everything best-effort and reports instead
 * of throwing; `verify` compares the kernel with the plan.
 * It must not decide what to steer (plan.ts) nor how commands are spelled (nft.ts, routing.ts).
 */
import { ExecError } from '../exec.js';
import type { Exec } from '../exec.js';
import type { Logger } from '../log.js';
import { collisionError, findCollisions, readCollisionState } from './collision.js';
import { FirewallError } from './errors.js';
import type { FirewallErrorCode } from './errors.js';
import { readSteeringState } from './inspect.js';
import { keepMask, renderNftApply, renderNftHeartbeat, renderNftRevert } from './nft.js';
import { hex, NFT_PORTS_SET } from './plan.js';
import type { NftRule, SteeringPlan } from './plan.js';
import { routeSteps } from './routing.js';
import type { RouteStep } from './routing.js';

/**
 * How many times revert repeats one `del` while it keeps succeeding. Normally one copy exists, but
 * a run that crashed between an add and its record could have been retried; `ip rule add` with
 * older kernels (< 4.15, no NLM_F_EXCL check in fib_nl_newrule) even accepts exact duplicates.
 * Bounded so a misbehaving `ip` that always succeeds cannot loop forever.
 */
export const MAX_DELETES_PER_STEP = 8;

/**
 * stderr of a `del` whose object is already gone: ENOENT for rules and IPv6 routes, ESRCH for IPv4
 * routes ("No such process"), a missing table, or a kernel without IPv6 (nothing to remove there).
 */
const ALREADY_GONE = /No such file or directory|No such process|FIB table does not exist|Address family not supported/i;
/** EEXIST from `ip ... add` (RTNETLINK answers: File exists). */
const ALREADY_EXISTS = /File exists/i;

export interface RevertStepResult {
  /** What was removed, e.g. "nft table inet tproxy_helper" or a RouteStep label. */
  readonly step: string;
  /** removed: at least one copy deleted; absent: nothing was there; failed: see `error`. */
  readonly outcome: 'removed' | 'absent' | 'failed';
  /** Copies deleted (ip rules and routes can be duplicated by crashed runs). */
  readonly count: number;
  readonly error?: string;
}

export interface RevertReport {
  /** Every step succeeded or found nothing to remove. */
  readonly ok: boolean;
  /** In revert order: nft table, ip rules, routes. */
  readonly steps: readonly RevertStepResult[];
}

export interface VerifyResult {
  /** Everything the plan describes is present. */
  readonly ok: boolean;
  /** One line per missing item, e.g. "ip -6 rule priority 4233 fwmark 0x2333 lookup 233". */
  readonly missing: string[];
}

/** A FirewallError('revert-failed') listing the failed steps, or null when the revert was clean. */
export function revertError(report: RevertReport): FirewallError | null {
  const failed = report.steps.filter((s) => s.outcome === 'failed');
  if (failed.length === 0) return null;
  return new FirewallError('revert-failed', `reverting steering rules left ${failed.length} item(s) behind: ${failed.map((s) => `${s.step}: ${s.error ?? 'unknown'}`).join('; ')}`);
}

/**
 * Deletes every copy of one ip rule or route (both backends share these steps): repeats `del` while
 * it succeeds, up to MAX_DELETES_PER_STEP, and reports `absent` when the first one finds nothing.
 */
export async function deleteRouteStep(exec: Exec, log: Logger, step: RouteStep): Promise<RevertStepResult> {
  const [file, ...args] = step.del;
  if (file === undefined) throw new Error('empty argv');
  let count = 0;
  while (count < MAX_DELETES_PER_STEP) {
    try {
      log.debug(`exec: ${step.del.join(' ')}`);
      await exec.run(file, args, {});
      count += 1;
    } catch (err) {
      if (err instanceof ExecError && err.code !== 'ENOENT' && ALREADY_GONE.test(err.stderr)) break;
      return { step: step.label, outcome: 'failed', count, error: stderrOf(err) };
    }
  }
  if (count === MAX_DELETES_PER_STEP) log.warn(`${step.label}: deleted ${count} copies and stopped; more may remain`);
  return { step: step.label, outcome: count > 0 ? 'removed' : 'absent', count };
}

/** What a failed command said (its stderr), or that it is not installed. */
export function stderrOf(err: unknown): string {
  if (err instanceof ExecError) {
    if (err.code === 'ENOENT') return `${err.argv[0]} is not installed (command not found)`;
    return err.stderr.trim() || err.message;
  }
  return err instanceof Error ? err.message : String(err);
}

function notInstalled(err: unknown): FirewallErrorCode | null {
  if (!(err instanceof ExecError) || err.code !== 'ENOENT') return null;
  return err.argv[0] === 'nft' ? 'nft-missing' : 'ip-missing';
}

/**
 * A fragment that `nft list table` prints for each rule kind (nft normalises marks to 0x%08x and
 * drops the implied `meta l4proto tcp`), so verify notices a flushed chain, not only a deleted one.
 */
function listedNeedle(rule: NftRule): string {
  switch (rule.kind) {
    case 'bypass':
      return `${listedCompare('meta mark', rule.mask, rule.bypassMark)} return`;
    case 'mark-new':
      return listedSet('ct mark', rule.mask, rule.mark);
    case 'restore-mark':
      return `${listedCompare('ct mark', rule.mask, rule.mark)} ${listedSet('meta mark', rule.mask, rule.mark)}`;
    case 'tproxy':
      return `tproxy ${rule.family === 'ipv6' ? 'ip6' : 'ip'} to `;
  }
}

function hex8(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}

/** `key and mask == value` as nft lists it: `key & 0x00003fff == 0x00002333`, or `key 0x00002333` under the full mask. */
function listedCompare(key: string, mask: number, value: number): string {
  return mask >>> 0 === 0xffffffff ? `${key} ${hex8(value)}` : `${key} & ${hex8(mask)} == ${hex8(value)}`;
}

/**
 * `key set key and ~mask or mark` as nft lists it: it folds the mark into the `and` operand
 * (`& 0xffffe333 | 0x00002333` for 0x2333 under 0x3fff), which leaves the same value.
 */
function listedSet(key: string, mask: number, mark: number): string {
  return `${key} set ${key} & ${hex8((keepMask(mask) | mark) >>> 0)} | ${hex8(mark)}`;
}

/** Ports listed in `set ports { ... elements = { 80 timeout 8s expires 7s, 443 ... } }`; [] when none. */
export function listedSetElements(listing: string, setName: string = NFT_PORTS_SET): number[] {
  const start = listing.indexOf(`set ${setName} {`);
  if (start < 0) return [];
  const end = listing.indexOf('}', start + `set ${setName} {`.length);
  const body = listing.slice(start, end < 0 ? undefined : end + 1);
  const m = /elements = \{([^}]*)\}?/.exec(body);
  if (!m?.[1]) return [];
  return m[1]
    .split(',')
    .map((item) => Number(/^\s*(\d+)/.exec(item)?.[1]))
    .filter((n) => Number.isInteger(n));
}

export class Steering {
  constructor(
    private readonly exec: Exec,
    private readonly log: Logger,
  ) {}

  /**
   * Installs the plan. Order: collision check (collision.ts: an ip rule, route table or nft rule
   * already using our priority, mark or table fails with FirewallError('collision') before anything
   * changed), `nft -c` dry run (a script the kernel rejects fails before anything changed), local
   * routes, ip rules, then the nft table in one atomic transaction.
   *
   * A route or rule that already exists (EEXIST) fails the apply instead of being deleted and
   * re-added: an identical entry is either a crashed run's leftover, which startup repair removes
   * from the applied record, or another tool's, which we must not take over and later delete.
   * Failing leaves it untouched and names the fix.
   */
  async apply(plan: SteeringPlan): Promise<void> {
    const table = `table ${plan.table.family} ${plan.table.name}`;
    const script = renderNftApply(plan);
    const state = await readCollisionState(this.exec, plan.config, plan.table.name);
    for (const e of state.errors) this.log.warn(`collision check incomplete: ${e}`);
    const collisions = findCollisions(plan, state);
    if (collisions.length > 0) {
      const err = collisionError(collisions);
      this.log.error(err.message);
      throw err;
    }
    await this.runOrThrow(['nft', '-c', '-f', '-'], script, `checking nft ruleset (${table})`, []);

    const done: RouteStep[] = [];
    for (const step of routeSteps(plan)) {
      let hint = '';
      try {
        await this.run(step.add);
      } catch (err) {
        if (err instanceof ExecError && ALREADY_EXISTS.test(err.stderr)) {
          hint =
            ` (already present: left over from an earlier run, or used by another tool; it was left untouched.` +
            ` Run "tproxy-helper --cleanup" if it is ours, or choose another mark/routeTable than ${hex(plan.config.mark)}/${plan.config.routeTable})`;
        }
        throw await this.failAfterRollback(`adding ${step.label}`, err, hint, done);
      }
      done.push(step);
    }

    await this.runOrThrow(['nft', '-f', '-'], script, `applying nft ruleset (${table})`, done);
    this.log.info(`applied steering: ${done.length} routes/rules, ${table} marking new TCP connections to ${plan.ports.join(',')} with ${hex(plan.config.mark)}`);
  }

  /**
   * Removes the nft table first (stops marking), then ip rules, then routes. Each `del` repeats
   * while it succeeds (up to MAX_DELETES_PER_STEP) to clear duplicates; "already gone" counts as
   * done. Never throws: every failure is logged and reported, and the remaining steps still run.
   */
  async revert(plan: SteeringPlan): Promise<RevertReport> {
    const results: RevertStepResult[] = [];
    const tableLabel = `nft table ${plan.table.family} ${plan.table.name}`;
    try {
      await this.run(['nft', '-f', '-'], renderNftRevert(plan.table.name));
      results.push({ step: tableLabel, outcome: 'removed', count: 1 });
    } catch (err) {
      results.push({ step: tableLabel, outcome: 'failed', count: 0, error: stderrOf(err) });
    }
    for (const step of routeSteps(plan).reverse()) {
      results.push(await this.deleteAll(step));
    }
    for (const r of results) {
      if (r.outcome === 'failed') this.log.error(`reverting ${r.step}: ${r.error ?? 'unknown error'}`);
    }
    const ok = results.every((r) => r.outcome !== 'failed');
    this.log.info(`reverted steering${ok ? '' : ' with failures'}: ${results.map((r) => `${r.step} ${r.outcome}`).join('; ')}`);
    return { ok, steps: results };
  }

  /**
   * The fail-open heartbeat: gives every `ports` element its full lifetime again in one atomic
   * transaction (nft.ts renderNftHeartbeat). Never re-creates a missing table or set; throws
   * FirewallError('heartbeat-failed') with nft's stderr instead. Not logged here (it runs every
   * HEARTBEAT_INTERVAL_MS): the caller logs changes.
   */
  async heartbeat(plan: SteeringPlan): Promise<void> {
    try {
      await this.exec.run('nft', ['-f', '-'], { input: renderNftHeartbeat(plan), timeoutMs: 5_000 });
    } catch (err) {
      const set = `${plan.table.family} ${plan.table.name} ${NFT_PORTS_SET}`;
      throw new FirewallError(notInstalled(err) ?? 'heartbeat-failed', `refreshing nft set ${set}: ${stderrOf(err)}`, { cause: err });
    }
  }

  /**
   * Compares the kernel with the plan (read-only): our table, each chain and rule, the `ports`
   * elements (absent once the fail-open timeout expired), the ip rules and the local routes.
   */
  async verify(plan: SteeringPlan): Promise<VerifyResult> {
    const state = await readSteeringState(this.exec, plan.config, plan.table.name);
    for (const e of state.errors) this.log.warn(`verifying steering: ${e}`);
    const missing: string[] = [];
    const table = `${plan.table.family} ${plan.table.name}`;
    if (state.ourTable === undefined) {
      missing.push(`nft table ${table}`);
    } else {
      const elements = listedSetElements(state.ourTable);
      const absent = plan.ports.filter((p) => !elements.includes(p));
      if (absent.length > 0) missing.push(`nft set ${table} ${NFT_PORTS_SET} element(s) ${absent.join(', ')}`);
      for (const chain of plan.chains) {
        if (!state.ourTable.includes(`chain ${chain.name} {`)) {
          missing.push(`nft chain ${table} ${chain.name}`);
          continue;
        }
        for (const rule of chain.rules) {
          const needle = listedNeedle(rule);
          if (state.ourTable.includes(needle)) continue;
          missing.push(rule.kind === 'tproxy' ? `nft ${table} ${chain.name}: ${needle.trim()} listener` : `nft ${table} ${chain.name}: ${rule.kind} rule`);
        }
      }
    }
    for (const step of routeSteps(plan)) {
      const { spec } = step;
      const present =
        spec.kind === 'fwmark-rule'
          ? state.rules.some(
              (r) =>
                r.family === spec.family &&
                r.priority === spec.priority &&
                r.fwmark !== undefined &&
                Number(r.fwmark) === spec.mark &&
                // `ip -j rule show` omits fwmask when it is the full mask.
                (r.fwmask === undefined ? 0xffffffff : Number(r.fwmask)) === spec.mask >>> 0 &&
                r.table === String(spec.table),
            )
          : state.routes.some((r) => r.family === spec.family && r.type === 'local' && r.dst === 'default' && r.dev === 'lo');
      if (!present) missing.push(step.label);
    }
    return { ok: missing.length === 0, missing };
  }

  private async run(argv: readonly string[], input?: string): Promise<void> {
    const [file, ...args] = argv;
    if (file === undefined) throw new Error('empty argv');
    this.log.debug(`exec: ${argv.join(' ')}`);
    await this.exec.run(file, args, input !== undefined ? { input } : {});
  }

  private async runOrThrow(argv: readonly string[], input: string, what: string, done: RouteStep[]): Promise<void> {
    try {
      await this.run(argv, input);
    } catch (err) {
      throw await this.failAfterRollback(what, err, '', done);
    }
  }

  /** Undoes `done` newest first (one exact `del` each) and builds the error to throw. */
  private async failAfterRollback(what: string, err: unknown, hint: string, done: RouteStep[]): Promise<FirewallError> {
    const rollbackFailures: string[] = [];
    for (const step of [...done].reverse()) {
      try {
        await this.run(step.del);
      } catch (undoErr) {
        const msg = `${step.label}: ${stderrOf(undoErr)}`;
        this.log.error(`rolling back after failed apply: removing ${msg}`);
        rollbackFailures.push(msg);
      }
    }
    const tail = rollbackFailures.length ? `; rollback also failed for ${rollbackFailures.join('; ')}` : done.length ? '; rolled back' : '';
    const message = `${what}: ${stderrOf(err)}${hint}${tail}`;
    this.log.error(message);
    return new FirewallError(notInstalled(err) ?? 'apply-failed', message, { cause: err });
  }

  private deleteAll(step: RouteStep): Promise<RevertStepResult> {
    return deleteRouteStep(this.exec, this.log, step);
  }
}
