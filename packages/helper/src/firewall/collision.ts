/**
 * Collision detection before apply: does the kernel already hold an ip rule, route table or nft
 * rule that would fight with the plan? Checked by Steering.apply before anything changes, so a
 * collision fails `capture.start` with nothing applied (ErrorCode.FirewallCollision) and a message
 * that names what is in the way and how to avoid it.
 *
 * `findCollisions` is pure (state in, findings out); `readCollisionState` runs only read-only
 * `show`/`list` commands. Neither changes the kernel: apply.ts stays the only module that does.
 *
 * "Would also match" is judged on typical packets, not on every bit pattern: our marked packets
 * carry `mark` under `markMask` and usually nothing else, and another tool's carry its own mark.
 * Judging every pattern would flag every tool whose mask is disjoint from ours (Tailscale's
 * `fwmark 0x80000/0xff0000`), which is exactly the coexistence masks are for.
 */
import type { CaptureConfig } from '@tproxy/protocol';
import type { Exec } from '../exec.js';
import { FirewallError } from './errors.js';
import { readSteeringState } from './inspect.js';
import type { IpRuleEntry, RouteEntry } from './inspect.js';
import { hex, NFT_TABLE_FAMILY, RULE_PRIORITY } from './plan.js';
import type { IpFamily, SteeringPlan } from './plan.js';

const FULL_MASK = 0xffffffff;

export type CollisionKind =
  /** An ip rule at our priority that is not ours (an identical one is a leftover or another tool's). */
  | 'rule-priority'
  /** An ip rule whose fwmark selector overlaps ours (see the module comment for "overlaps"). */
  | 'rule-fwmark'
  /** An ip rule, other than ours, that looks up our route table. */
  | 'rule-table'
  /** Our route table already holds routes. */
  | 'route-table'
  /** Another nft table sets or matches our mark under our mask. */
  | 'nft-mark';

export interface Collision {
  readonly kind: CollisionKind;
  /** What is in the way, as the kernel lists it, e.g. "ipv4 rule 32765: from all fwmark 0x2333 lookup 100". */
  readonly what: string;
  /** Why it collides with the plan. */
  readonly why: string;
  /** How to avoid it: which capture.start parameter (and tproxyctl flag) to change, or what to remove. */
  readonly fix: string;
}

/** Where some other nft rule sets or compares a mark. */
export interface NftMarkUse {
  /** "family table chain", e.g. "inet vpn output". */
  readonly where: string;
  readonly key: 'meta mark' | 'ct mark';
  /** `set` writes `value` (or ORs it in); `match` compares `(key & mask) == value`. */
  readonly op: 'set' | 'match';
  readonly value: number;
  /** Bits compared (match only); the full mask when the rule compares the whole mark. */
  readonly mask: number;
}

export interface CollisionState {
  /** ip rules of both families (`ip -N -j rule show`). */
  readonly rules: readonly IpRuleEntry[];
  /** Routes found in the plan's route table, both families. */
  readonly routes: readonly RouteEntry[];
  /** Mark uses in nft tables other than ours. */
  readonly nftMarks: readonly NftMarkUse[];
  /** Queries that failed: the check was incomplete (logged, never fatal: it is best-effort). */
  readonly errors: readonly string[];
}

const FIX_MARK = 'choose another mark within markMask (tproxyctl start --mark N, capture.start mark)';
const FIX_TABLE = 'choose another routeTable (tproxyctl start --table N, capture.start routeTable)';
const IF_OURS = 'if it is a leftover of an earlier tproxy run, remove it with "tproxy-helper --cleanup" (or helper.repair)';

const u32 = (n: number): number => n >>> 0;

function planFamilies(plan: SteeringPlan): Set<IpFamily> {
  return new Set(plan.routing.map((spec) => spec.family));
}

/** The rule our plan installs for this family, in the shape `ip -j rule show` reports it. */
function isIdenticalToOurs(rule: IpRuleEntry, plan: SteeringPlan): boolean {
  const c = plan.config;
  return (
    rule.priority === RULE_PRIORITY &&
    rule.fwmark !== undefined &&
    Number(rule.fwmark) === c.mark &&
    (rule.fwmask === undefined ? FULL_MASK : Number(rule.fwmask)) === c.markMask &&
    rule.table === String(c.routeTable)
  );
}

function ruleCollision(rule: IpRuleEntry, plan: SteeringPlan): Collision | null {
  const { mark, markMask: mask, routeTable } = plan.config;
  const what = `${rule.family} rule ${rule.text}`;
  if (isIdenticalToOurs(rule, plan)) {
    return {
      kind: 'rule-priority',
      what,
      why: `it is identical to the rule tproxy would add, so adding ours fails and removing ours later would remove it`,
      fix: `${IF_OURS}; if another tool added it, ${FIX_MARK} or ${FIX_TABLE}`,
    };
  }
  if (rule.fwmark !== undefined) {
    const theirMark = u32(Number(rule.fwmark));
    const theirMask = rule.fwmask === undefined ? FULL_MASK : u32(Number(rule.fwmask));
    // Our typical packet (exactly `mark`) matches their selector, and they are consulted first.
    const stealsOurs = u32(mark & theirMask) === theirMark && rule.priority <= RULE_PRIORITY;
    // Their typical packet (exactly their mark) matches our selector: we would take their traffic.
    const oursTakesTheirs = u32(theirMark & mask) === mark;
    if (stealsOurs || oursTakesTheirs) {
      return {
        kind: 'rule-fwmark',
        what,
        why: stealsOurs
          ? `it matches packets marked ${hex(mark)} (our mark) at a preference no later than ours (${RULE_PRIORITY}), so it would route them away from the transparent listener`
          : `packets it selects (fwmark ${hex(theirMark)}) carry our mark ${hex(mark)} under mask ${hex(mask)}, so tproxy would take them`,
        fix: FIX_MARK,
      };
    }
  }
  if (rule.table === String(routeTable)) {
    return {
      kind: 'rule-table',
      what,
      why: `it already sends traffic to route table ${routeTable}, which tproxy fills with "local default dev lo" (that traffic would be delivered to this host)`,
      fix: FIX_TABLE,
    };
  }
  if (rule.priority === RULE_PRIORITY) {
    return {
      kind: 'rule-priority',
      what,
      why: `it sits at preference ${RULE_PRIORITY}, which tproxy reserves for its own rule`,
      fix: `remove it or move it to another preference; ${IF_OURS}`,
    };
  }
  return null;
}

function routeCollisions(routes: readonly RouteEntry[], plan: SteeringPlan, families: Set<IpFamily>): Collision[] {
  const table = plan.config.routeTable;
  const out: Collision[] = [];
  for (const family of ['ipv4', 'ipv6'] as const) {
    const here = routes.filter((r) => r.family === family);
    if (!families.has(family) || here.length === 0) continue;
    const shown = here.slice(0, 3).map((r) => r.text).join(', ') + (here.length > 3 ? `, ... (${here.length} routes)` : '');
    out.push({
      kind: 'route-table',
      what: `${family} route table ${table}: ${shown}`,
      why: `tproxy needs route table ${table} for itself and would mix its "local default dev lo" into routes someone else uses`,
      fix: `${FIX_TABLE}; ${IF_OURS}`,
    });
  }
  return out;
}

function nftCollisions(uses: readonly NftMarkUse[], plan: SteeringPlan): Collision[] {
  const { mark, markMask: mask } = plan.config;
  const seen = new Set<string>();
  const out: Collision[] = [];
  for (const use of uses) {
    const sets = use.op === 'set' && u32(use.value & mask) === mark;
    // Same "typical packet" reading as for ip rules: their value carries our mark, or ours matches them.
    const matches = use.op === 'match' && (u32(use.value & mask) === mark || (use.mask !== FULL_MASK && u32(mark & use.mask) === use.value && use.value !== 0));
    if (!sets && !matches) continue;
    const what = `nft ${use.where}: ${use.op === 'set' ? `${use.key} set ${hex(use.value)}` : `${use.key}${use.mask === FULL_MASK ? '' : ` & ${hex(use.mask)}`} == ${hex(use.value)}`}`;
    if (seen.has(what)) continue;
    seen.add(what);
    out.push({
      kind: 'nft-mark',
      what,
      why: sets
        ? `it marks packets with our mark ${hex(mark)} (under mask ${hex(mask)}), so tproxy would intercept them`
        : `it acts on packets carrying our mark ${hex(mark)} (under mask ${hex(mask)}), so it would also act on the connections tproxy takes`,
      fix: FIX_MARK,
    });
  }
  return out;
}

/** Every collision between the plan and what the kernel already holds; [] when none. Pure. */
export function findCollisions(plan: SteeringPlan, state: CollisionState): Collision[] {
  const families = planFamilies(plan);
  const rules = state.rules.filter((r) => families.has(r.family)).flatMap((r) => ruleCollision(r, plan) ?? []);
  return [...rules, ...routeCollisions(state.routes, plan, families), ...nftCollisions(state.nftMarks, plan)];
}

/** The FirewallError('collision') that apply throws, naming every collision and its fix. */
export function collisionError(collisions: readonly Collision[]): FirewallError {
  const lines = collisions.map((c) => `${c.what}: ${c.why}; to avoid it, ${c.fix}`);
  return new FirewallError('collision', `steering would collide with existing rules, nothing was applied: ${lines.join(' | ')}`);
}

type Json = Record<string, unknown>;
const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `{"meta":{"key":"mark"}}` → 'meta mark'; `{"ct":{"key":"mark"}}` → 'ct mark'; else null. */
function markKey(v: unknown): NftMarkUse['key'] | null {
  if (!isObj(v)) return null;
  if (isObj(v.meta) && v.meta.key === 'mark') return 'meta mark';
  if (isObj(v.ct) && v.ct.key === 'mark' && v.ct.dir === undefined) return 'ct mark';
  return null;
}

/** The constant a `mangle` value writes into the mark's bits: `N`, `key | N`, `(key & A) | N`. */
function setValue(v: unknown): number | null {
  if (typeof v === 'number') return v;
  if (isObj(v) && Array.isArray(v['|']) && typeof v['|'][1] === 'number') return v['|'][1];
  return null;
}

function exprUses(expr: unknown, where: string): NftMarkUse[] {
  if (!isObj(expr)) return [];
  if (isObj(expr.mangle)) {
    const key = markKey(expr.mangle.key);
    const value = setValue(expr.mangle.value);
    return key && value !== null ? [{ where, key, op: 'set', value: u32(value), mask: FULL_MASK }] : [];
  }
  if (isObj(expr.match) && (expr.match.op === '==' || expr.match.op === 'in') && typeof expr.match.right === 'number') {
    const left = expr.match.left;
    const direct = markKey(left);
    if (direct) return [{ where, key: direct, op: 'match', value: u32(expr.match.right), mask: FULL_MASK }];
    if (isObj(left) && Array.isArray(left['&']) && typeof left['&'][1] === 'number') {
      const key = markKey(left['&'][0]);
      if (key) return [{ where, key, op: 'match', value: u32(expr.match.right), mask: u32(left['&'][1]) }];
    }
  }
  return [];
}

/**
 * Mark uses in `nft -j list ruleset` output, skipping our own table (apply replaces it atomically).
 * Best-effort: only constant marks (`meta/ct mark set N`, `... or N`, `mark [& M] == N`) are seen;
 * marks from maps, sets or other expressions are not. Throws on malformed JSON.
 */
export function parseNftMarkUses(json: string, ourTable: string): NftMarkUse[] {
  const trimmed = json.trim();
  if (trimmed === '') return [];
  const doc: unknown = JSON.parse(trimmed);
  const items = isObj(doc) && Array.isArray(doc.nftables) ? doc.nftables : [];
  const out: NftMarkUse[] = [];
  for (const item of items) {
    if (!isObj(item) || !isObj(item.rule)) continue;
    const { family, table, chain, expr } = item.rule;
    if (family === NFT_TABLE_FAMILY && table === ourTable) continue;
    if (!Array.isArray(expr)) continue;
    const where = `${String(family)} ${String(table)} ${String(chain)}`;
    for (const e of expr) out.push(...exprUses(e, where));
  }
  return out;
}

/** Reads (read-only) what findCollisions needs. Never throws: failed queries land in `errors`. */
export async function readCollisionState(exec: Exec, config: Pick<CaptureConfig, 'mark' | 'routeTable'>, ourTable: string): Promise<CollisionState> {
  const state = await readSteeringState(exec, config, ourTable);
  const errors = [...state.errors];
  let nftMarks: NftMarkUse[] = [];
  try {
    nftMarks = parseNftMarkUses((await exec.run('nft', ['-j', 'list', 'ruleset'])).stdout, ourTable);
  } catch (err) {
    errors.push(`listing the nft ruleset as JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  return { rules: state.rules, routes: state.routes, nftMarks, errors };
}
