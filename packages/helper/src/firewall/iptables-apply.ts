/**
 * The iptables backend's executor: `IptablesSteering` has Steering's public API (apply, revert,
 * verify, heartbeat) and reports, for hosts without a usable nft. It runs the text iptables.ts
 * renders and the routing steps routing.ts renders, through an injected Exec (argv + stdin).
 *
 * apply, all-or-nothing: the same collision check as the nft backend (collision.ts: ip rules and
 * routes in the way fail before anything changed), create the ipset (the fail-open port set; libxt_set looks the set up by
 * name while parsing, so even the dry run needs it), `iptables-restore --test` per family (a rule
 * the kernel or the binary rejects fails before anything that steers traffic changed), local
 * routes, ip rules, then one `iptables-restore --noflush` per family, each one commit. Any failure
 * undoes exactly what this attempt added, newest first, and throws a FirewallError naming what was
 * attempted plus the command's stderr.
 * revert, idempotent and never throwing: per family, read iptables-save and remove every jump to our
 * chains and the chains themselves in one restore (repeated while something of ours is still
 * listed, bounded), destroy the ipset, then the ip rules and routes.
 * It must not decide what to steer (plan.ts) nor how rules are spelled (iptables.ts, routing.ts).
 */
import { ExecError } from '../exec.js';
import type { Exec } from '../exec.js';
import type { Logger } from '../log.js';
import { MAX_DELETES_PER_STEP, deleteRouteStep, stderrOf } from './apply.js';
import type { RevertReport, RevertStepResult, VerifyResult } from './apply.js';
import type { SteeringBackend } from './backend.js';
import { collisionError, findCollisions, readCollisionState } from './collision.js';
import { FirewallError } from './errors.js';
import { parseIpRules, parseRoutes } from './inspect.js';
import {
  IPSET_NAME,
  IPT_CHAINS,
  IPT_TABLE,
  iptablesFamilies,
  iptablesJumpLines,
  iptablesRuleLines,
  parseIpsetMembers,
  parseMangle,
  renderIpsetCreate,
  renderIpsetHeartbeat,
  renderIptablesApply,
  renderIptablesRevert,
} from './iptables.js';
import { hex } from './plan.js';
import type { IpFamily, SteeringPlan } from './plan.js';
import { routeSteps } from './routing.js';
import type { RouteStep } from './routing.js';

export type IptablesFlavour = 'iptables-nft' | 'iptables-legacy';

export interface FamilyBinaries {
  /** Loads rules (`--noflush`: adds to what is there; `--test`: parse and check only). */
  readonly restore: string;
  /** Lists rules in restore syntax. */
  readonly save: string;
}

/**
 * The flavour-specific names Debian, Ubuntu and Fedora install. Plain `iptables` is an alternatives
 * link to one of them; naming the flavour keeps the backend we detected and the one we run equal.
 */
export const IPTABLES_BINARIES: Record<IptablesFlavour, Record<IpFamily, FamilyBinaries>> = {
  'iptables-nft': {
    ipv4: { restore: 'iptables-nft-restore', save: 'iptables-nft-save' },
    ipv6: { restore: 'ip6tables-nft-restore', save: 'ip6tables-nft-save' },
  },
  'iptables-legacy': {
    ipv4: { restore: 'iptables-legacy-restore', save: 'iptables-legacy-save' },
    ipv6: { restore: 'ip6tables-legacy-restore', save: 'ip6tables-legacy-save' },
  },
};

/** Wait up to this many seconds for the xtables lock that legacy iptables takes (`-w`). */
const LOCK_WAIT_SECONDS = '10';

/**
 * `ipset destroy` right after the last rule using the set went away can still see it referenced
 * (iptables-nft releases the match from a deferred destroy). Retry this often, this far apart.
 */
export const IPSET_DESTROY_ATTEMPTS = 10;
const IPSET_RETRY_MS = 100;

/** stderr meaning "nothing of ours can be there": no such family/table, e.g. IPv6 disabled. */
const NO_TABLES = /Address family not supported|Protocol not supported|can't initialize|Table does not exist/i;
const SET_ABSENT = /does not exist/i;
const SET_IN_USE = /in use by a kernel component/i;
const SET_EXISTS = /already exists/i;
const ALREADY_EXISTS = /File exists/i;

const FLAG: Record<IpFamily, string> = { ipv4: '-4', ipv6: '-6' };

function notFound(err: unknown): boolean {
  return err instanceof ExecError && err.code === 'ENOENT';
}

interface Undo {
  readonly label: string;
  readonly run: () => Promise<void>;
}

export interface IptablesSteeringOptions {
  /** Pause between `ipset destroy` attempts; tests pass a no-op. */
  sleep?: (ms: number) => Promise<void>;
}

export class IptablesSteering implements SteeringBackend {
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(
    private readonly exec: Exec,
    private readonly log: Logger,
    readonly flavour: IptablesFlavour,
    opts: IptablesSteeringOptions = {},
  ) {
    this.sleep = opts.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  }

  /** Installs the plan (see the module comment for the order); throws FirewallError after rolling back. */
  async apply(plan: SteeringPlan): Promise<void> {
    const families = iptablesFamilies(plan);
    // Rendered first: a scope iptables cannot express throws here, before anything changed.
    const inputs = new Map(families.map((family) => [family, renderIptablesApply(plan, family)] as const));
    const undo: Undo[] = [];
    const state = await readCollisionState(this.exec, plan.config, plan.table.name);
    // A host on this backend usually has no nft binary: the nft part of the check is then moot.
    for (const e of state.errors) if (!/nft not installed|nft .*: command not found/.test(e)) this.log.warn(`collision check incomplete: ${e}`);
    const collisions = findCollisions(plan, state);
    if (collisions.length > 0) {
      const err = collisionError(collisions);
      this.log.error(err.message);
      throw err;
    }

    try {
      await this.run(['ipset', 'restore'], renderIpsetCreate(plan));
    } catch (err) {
      let hint = '';
      if (notFound(err)) {
        hint =
          `: the iptables backend needs ipset so that interception stops by itself within ${plan.portsTimeoutSeconds} s if the helper dies (fail-open).` +
          ' Install the ipset package (apt-get install ipset), or use the nft backend (--firewall nft)';
      } else if (err instanceof ExecError && SET_EXISTS.test(err.stderr)) {
        hint = ` (left over from an earlier run and left untouched: run "tproxy-helper --cleanup")`;
      }
      throw await this.failAfterRollback(`creating ipset ${IPSET_NAME}`, err, hint, undo);
    }
    undo.push({ label: `ipset ${IPSET_NAME}`, run: () => this.destroySetOnce() });

    for (const family of families) {
      const { restore } = IPTABLES_BINARIES[this.flavour][family];
      await this.runOrRollback(`checking ${this.flavour} ${family} rules (${restore} --test)`, [restore, '--test', '--noflush', '-w', LOCK_WAIT_SECONDS], inputs.get(family) ?? '', undo);
    }

    for (const step of routeSteps(plan)) {
      try {
        await this.run(step.add);
      } catch (err) {
        const hint =
          err instanceof ExecError && ALREADY_EXISTS.test(err.stderr)
            ? ` (already present: left over from an earlier run, or used by another tool; it was left untouched.` +
              ` Run "tproxy-helper --cleanup" if it is ours, or choose another mark/routeTable than ${hex(plan.config.mark)}/${plan.config.routeTable})`
            : '';
        throw await this.failAfterRollback(`adding ${step.label}`, err, hint, undo);
      }
      undo.push({ label: step.label, run: () => this.run(step.del) });
    }

    for (const family of families) {
      const { restore } = IPTABLES_BINARIES[this.flavour][family];
      const what = `${this.flavour} ${family} ${IPT_TABLE} chains ${IPT_CHAINS.join(', ')}`;
      await this.runOrRollback(`applying ${what}`, [restore, '--noflush', '-w', LOCK_WAIT_SECONDS], inputs.get(family) ?? '', undo);
      undo.push({
        label: what,
        run: async () => {
          const r = await this.removeChains(family);
          if (r.outcome === 'failed') throw new Error(r.error ?? 'failed');
        },
      });
    }
    this.log.info(
      `applied steering (${this.flavour}): ${routeSteps(plan).length} routes/rules, ${IPT_TABLE} chains for ${families.join(', ')}, ` +
        `marking new TCP connections to ${plan.ports.join(',')} (ipset ${IPSET_NAME}) with ${hex(plan.config.mark)}`,
    );
  }

  /**
   * Removes our chains (both families, whatever the plan says: they are ours by name) and the
   * ipset first, so marking stops, then the plan's ip rules and routes. Never throws.
   */
  async revert(plan: SteeringPlan): Promise<RevertReport> {
    const own = await this.revertOwn();
    const results = [...own.steps];
    for (const step of routeSteps(plan).reverse()) results.push(await this.deleteAll(step));
    for (const r of results.slice(own.steps.length)) {
      if (r.outcome === 'failed') this.log.error(`reverting ${r.step}: ${r.error ?? 'unknown error'}`);
    }
    const ok = results.every((r) => r.outcome !== 'failed');
    this.log.info(`reverted steering (${this.flavour})${ok ? '' : ' with failures'}: ${results.map((r) => `${r.step} ${r.outcome}`).join('; ')}`);
    return { ok, steps: results };
  }

  /**
   * Only what is ours by name: the chains of both families and the ipset, not routes or ip rules
   * (those depend on the config; startup repair removes them through the nft backend's revert).
   */
  async revertOwn(): Promise<RevertReport> {
    const steps = [...(await this.revertChains()), await this.revertSet()];
    return { ok: steps.every((r) => r.outcome !== 'failed'), steps };
  }

  /** Our chains and every jump to them, both families, this flavour only; failures logged. */
  async revertChains(): Promise<RevertStepResult[]> {
    const steps: RevertStepResult[] = [];
    for (const family of ['ipv4', 'ipv6'] as const) steps.push(this.logged(await this.removeChains(family)));
    return steps;
  }

  /**
   * The ipset, shared by both flavours: destroy it only after every flavour's chains are gone (a
   * rule still using it keeps it busy). Failure logged.
   */
  async revertSet(): Promise<RevertStepResult> {
    return this.logged(await this.removeSet());
  }

  private logged(r: RevertStepResult): RevertStepResult {
    if (r.outcome === 'failed') this.log.error(`reverting ${r.step}: ${r.error ?? 'unknown error'}`);
    return r;
  }

  /**
   * The fail-open heartbeat: re-adds every port with its full timeout in one `ipset restore -exist`
   * batch. Never creates the set; throws FirewallError('heartbeat-failed') when it is gone.
   */
  async heartbeat(plan: SteeringPlan): Promise<void> {
    try {
      await this.exec.run('ipset', ['restore', '-exist'], { input: renderIpsetHeartbeat(plan), timeoutMs: 5_000 });
    } catch (err) {
      throw new FirewallError('heartbeat-failed', `refreshing ipset ${IPSET_NAME}: ${stderrOf(err)}`, { cause: err });
    }
  }

  /**
   * Compares the kernel with the plan (read-only): for each family our chains, their rules and the
   * jumps (line for line, as iptables-save prints them), the ipset's elements (absent once the
   * fail-open timeout expired), the ip rules and the local routes.
   */
  async verify(plan: SteeringPlan): Promise<VerifyResult> {
    const missing: string[] = [];
    for (const family of iptablesFamilies(plan)) {
      const { save } = IPTABLES_BINARIES[this.flavour][family];
      const prefix = `${this.flavour} ${family} ${IPT_TABLE}`;
      let saved: string;
      try {
        saved = (await this.exec.run(save, [], { timeoutMs: 5_000 })).stdout;
      } catch (err) {
        missing.push(`${prefix} rules (cannot list them: ${stderrOf(err)})`);
        continue;
      }
      const { chains, rules } = parseMangle(saved);
      for (const chain of IPT_CHAINS) if (!chains.has(chain)) missing.push(`${prefix} chain ${chain}`);
      for (const line of [...iptablesJumpLines(), ...iptablesRuleLines(plan, family)]) {
        // A missing chain is reported once above, not once per rule in it or jump to it.
        if (IPT_CHAINS.some((c) => !chains.has(c) && line.split(' ').includes(c))) continue;
        if (!rules.includes(line)) missing.push(`${prefix}: ${line}`);
      }
    }

    try {
      const members = parseIpsetMembers((await this.exec.run('ipset', ['list', IPSET_NAME], { timeoutMs: 5_000 })).stdout);
      const absent = plan.ports.filter((p) => !members.includes(p));
      if (absent.length > 0) missing.push(`ipset ${IPSET_NAME} element(s) ${absent.join(', ')}`);
    } catch (err) {
      missing.push(err instanceof ExecError && SET_ABSENT.test(err.stderr) ? `ipset ${IPSET_NAME}` : `ipset ${IPSET_NAME} (cannot list it: ${stderrOf(err)})`);
    }

    for (const step of routeSteps(plan)) {
      const { spec } = step;
      const flag = FLAG[spec.family];
      try {
        const present =
          spec.kind === 'fwmark-rule'
            ? parseIpRules(spec.family, (await this.exec.run('ip', ['-N', '-j', flag, 'rule', 'show'])).stdout).some(
                (r) =>
                  r.priority === spec.priority &&
                  r.fwmark !== undefined &&
                  Number(r.fwmark) === spec.mark &&
                  (r.fwmask === undefined ? 0xffffffff : Number(r.fwmask)) === spec.mask >>> 0 &&
                  r.table === String(spec.table),
              )
            : parseRoutes(spec.family, (await this.exec.run('ip', ['-j', flag, 'route', 'show', 'table', String(spec.table)])).stdout).some(
                (r) => r.type === 'local' && r.dst === 'default' && r.dev === 'lo',
              );
        if (!present) missing.push(step.label);
      } catch (err) {
        missing.push(`${step.label} (cannot list: ${stderrOf(err)})`);
      }
    }
    return { ok: missing.length === 0, missing };
  }

  /**
   * Removes every jump to our chains and the chains of one family, from what iptables-save lists,
   * in one restore; repeats while something of ours is still listed (a concurrent add), bounded.
   */
  private async removeChains(family: IpFamily): Promise<RevertStepResult> {
    const { save, restore } = IPTABLES_BINARIES[this.flavour][family];
    const step = `${this.flavour} ${family} ${IPT_TABLE} chains ${IPT_CHAINS.join(', ')}`;
    let count = 0;
    for (let round = 0; round < MAX_DELETES_PER_STEP; round++) {
      let saved: string;
      try {
        saved = (await this.exec.run(save, [], { timeoutMs: 10_000 })).stdout;
      } catch (err) {
        // Without the binary or the family nothing of ours can be listed, let alone removed.
        if (notFound(err) || (err instanceof ExecError && NO_TABLES.test(err.stderr))) return { step, outcome: count > 0 ? 'removed' : 'absent', count };
        return { step, outcome: 'failed', count, error: `listing: ${stderrOf(err)}` };
      }
      const revert = renderIptablesRevert(saved);
      if (!revert) return { step, outcome: count > 0 ? 'removed' : 'absent', count };
      try {
        await this.run([restore, '--noflush', '-w', LOCK_WAIT_SECONDS], revert.input);
      } catch (err) {
        return { step, outcome: 'failed', count, error: stderrOf(err) };
      }
      count += revert.count;
    }
    return { step, outcome: 'failed', count, error: `still listed after ${MAX_DELETES_PER_STEP} removals` };
  }

  /** `ipset destroy`, retried while the kernel still holds a reference; absent counts as done. */
  private async removeSet(): Promise<RevertStepResult> {
    const step = `ipset ${IPSET_NAME}`;
    let last = '';
    for (let attempt = 1; attempt <= IPSET_DESTROY_ATTEMPTS; attempt++) {
      try {
        await this.run(['ipset', 'destroy', IPSET_NAME]);
        return { step, outcome: 'removed', count: 1 };
      } catch (err) {
        if (notFound(err) || (err instanceof ExecError && SET_ABSENT.test(err.stderr))) return { step, outcome: 'absent', count: 0 };
        last = stderrOf(err);
        if (!(err instanceof ExecError && SET_IN_USE.test(err.stderr))) break;
        if (attempt < IPSET_DESTROY_ATTEMPTS) await this.sleep(IPSET_RETRY_MS);
      }
    }
    return { step, outcome: 'failed', count: 0, error: last };
  }

  private async destroySetOnce(): Promise<void> {
    const r = await this.removeSet();
    if (r.outcome === 'failed') throw new Error(r.error ?? 'failed');
  }

  private deleteAll(step: RouteStep): Promise<RevertStepResult> {
    return deleteRouteStep(this.exec, this.log, step);
  }

  private async run(argv: readonly string[], input?: string): Promise<void> {
    const [file, ...args] = argv;
    if (file === undefined) throw new Error('empty argv');
    this.log.debug(`exec: ${argv.join(' ')}`);
    await this.exec.run(file, args, input !== undefined ? { input } : {});
  }

  private async runOrRollback(what: string, argv: readonly string[], input: string, undo: Undo[]): Promise<void> {
    try {
      await this.run(argv, input);
    } catch (err) {
      const hint = notFound(err) ? ': install the iptables package, or choose another backend with --firewall' : '';
      throw await this.failAfterRollback(what, err, hint, undo);
    }
  }

  /** Undoes `undo` newest first and builds the error to throw. */
  private async failAfterRollback(what: string, err: unknown, hint: string, undo: Undo[]): Promise<FirewallError> {
    const failures: string[] = [];
    for (const step of [...undo].reverse()) {
      try {
        await step.run();
      } catch (undoErr) {
        const msg = `${step.label}: ${stderrOf(undoErr)}`;
        this.log.error(`rolling back after failed apply: removing ${msg}`);
        failures.push(msg);
      }
    }
    const tail = failures.length ? `; rollback also failed for ${failures.join('; ')}` : undo.length ? '; rolled back' : '';
    const message = `${what}: ${stderrOf(err)}${hint}${tail}`;
    this.log.error(message);
    return new FirewallError('apply-failed', message, { cause: err });
  }
}
