/**
 * Reads what of ours the kernel currently holds: our nft table, `ip rule`s that select our mark or
 * look up our table, and the routes in our table. Used by `Steering.verify`, by startup repair
 * (what did a crashed run leave behind?) and by tests.
 * It only runs read-only `list`/`show` commands through the injected Exec and never changes kernel
 * state: apply.ts stays the only module that does. The parsers are exported and pure.
 */
import type { CaptureConfig } from '@tproxy/protocol';
import { ExecError } from '../exec.js';
import type { Exec } from '../exec.js';
import { NFT_TABLE_FAMILY, NFT_TABLE_NAME } from './plan.js';
import type { IpFamily } from './plan.js';

/** One `ip rule` as `ip -N -j rule show` reports it. */
export interface IpRuleEntry {
  readonly family: IpFamily;
  readonly priority: number;
  /** Hex string as printed, e.g. "0x2333"; absent when the rule has no fwmark selector. */
  readonly fwmark?: string;
  /** Present only when the mask is not the full 0xffffffff. */
  readonly fwmask?: string;
  /** Numeric table id as a string (we pass -N so rt_tables names never replace it). */
  readonly table?: string;
  /** The rule re-rendered in `ip rule` syntax, for messages. */
  readonly text: string;
}

/** One route of our table as `ip -j route show table N` reports it. */
export interface RouteEntry {
  readonly family: IpFamily;
  readonly type: string;
  /** "default" for 0.0.0.0/0 and ::/0. */
  readonly dst: string;
  readonly dev?: string;
  readonly text: string;
}

export interface SteeringState {
  /** Every nft table, "family name" per entry. */
  readonly nftTables: readonly string[];
  /** `nft list table` output of our table when it exists. */
  readonly ourTable?: string;
  readonly rules: readonly IpRuleEntry[];
  /** Routes in `config.routeTable`, both families. */
  readonly routes: readonly RouteEntry[];
  /** Queries that failed (nft not installed, IPv6 disabled, ...): the state may be incomplete. */
  readonly errors: readonly string[];
}

export interface Leftovers {
  /** Our nft table exists. */
  readonly table: boolean;
  /** Rules (both families) that select our mark or look up our route table. */
  readonly rules: readonly IpRuleEntry[];
  /** Routes found in our route table. */
  readonly routes: readonly RouteEntry[];
  /** Queries that failed, so "nothing found" may not mean "clean". */
  readonly errors: readonly string[];
  /** Nothing of ours was found and every query succeeded. */
  readonly clean: boolean;
}

const FLAG: Record<IpFamily, string> = { ipv4: '-4', ipv6: '-6' };

/** Lines of `nft list tables` → ["inet tproxy_helper", ...]. */
export function parseNftTables(stdout: string): string[] {
  return stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('table '))
    .map((l) => l.slice('table '.length).trim());
}

function asRecords(stdout: string): Record<string, unknown>[] {
  const trimmed = stdout.trim();
  if (trimmed === '') return [];
  const parsed: unknown = JSON.parse(trimmed);
  if (!Array.isArray(parsed)) throw new Error('expected a JSON array');
  return parsed.filter((x): x is Record<string, unknown> => typeof x === 'object' && x !== null);
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : typeof v === 'number' ? String(v) : undefined);

/** `ip -N -j rule show` output → entries. Throws on malformed JSON (the caller records it). */
export function parseIpRules(family: IpFamily, stdout: string): IpRuleEntry[] {
  return asRecords(stdout).map((r) => {
    const priority = typeof r.priority === 'number' ? r.priority : Number(r.priority);
    const fwmark = str(r.fwmark);
    const fwmask = str(r.fwmask);
    const table = str(r.table);
    const text = [
      `${priority}:`,
      `from ${str(r.src) ?? 'all'}`,
      ...(fwmark ? [`fwmark ${fwmark}${fwmask ? `/${fwmask}` : ''}`] : []),
      ...(table ? [`lookup ${table}`] : []),
    ].join(' ');
    return { family, priority, ...(fwmark ? { fwmark } : {}), ...(fwmask ? { fwmask } : {}), ...(table ? { table } : {}), text };
  });
}

/** `ip -j route show table N` output → entries. */
export function parseRoutes(family: IpFamily, stdout: string): RouteEntry[] {
  return asRecords(stdout).map((r) => {
    const type = str(r.type) ?? 'unicast';
    const dst = str(r.dst) ?? '?';
    const dev = str(r.dev);
    return { family, type, dst, ...(dev ? { dev } : {}), text: `${type} ${dst}${dev ? ` dev ${dev}` : ''}` };
  });
}

/** A rule is ours when it selects our mark (any mask) or sends anything to our table. */
export function isOurRule(rule: IpRuleEntry, config: Pick<CaptureConfig, 'mark' | 'routeTable'>): boolean {
  const markMatches = rule.fwmark !== undefined && Number(rule.fwmark) === config.mark;
  return markMatches || rule.table === String(config.routeTable);
}

function describeFailure(what: string, err: unknown): string {
  if (err instanceof ExecError) {
    return `${what}: ${err.code === 'ENOENT' ? `${err.argv[0]} not installed` : err.stderr.trim() || err.message}`;
  }
  return `${what}: ${err instanceof Error ? err.message : String(err)}`;
}

/** "FIB table does not exist" only means our table holds no route yet. */
const NO_TABLE = /FIB table does not exist/i;

/**
 * Queries the kernel (read-only) for everything the given config could have put there. Never
 * throws: failed queries land in `errors`.
 */
export async function readSteeringState(exec: Exec, config: Pick<CaptureConfig, 'mark' | 'routeTable'>, tableName = NFT_TABLE_NAME): Promise<SteeringState> {
  const errors: string[] = [];
  const ourName = `${NFT_TABLE_FAMILY} ${tableName}`;
  let nftTables: string[] = [];
  let ourTable: string | undefined;
  try {
    nftTables = parseNftTables((await exec.run('nft', ['list', 'tables'])).stdout);
    if (nftTables.includes(ourName)) {
      ourTable = (await exec.run('nft', ['list', 'table', NFT_TABLE_FAMILY, tableName])).stdout;
    }
  } catch (err) {
    errors.push(describeFailure('listing nft tables', err));
  }

  const rules: IpRuleEntry[] = [];
  const routes: RouteEntry[] = [];
  for (const family of ['ipv4', 'ipv6'] as const) {
    try {
      rules.push(...parseIpRules(family, (await exec.run('ip', ['-N', '-j', FLAG[family], 'rule', 'show'])).stdout));
    } catch (err) {
      errors.push(describeFailure(`listing ${family} ip rules`, err));
    }
    try {
      const out = await exec.run('ip', ['-j', FLAG[family], 'route', 'show', 'table', String(config.routeTable)]);
      routes.push(...parseRoutes(family, out.stdout));
    } catch (err) {
      if (!(err instanceof ExecError && NO_TABLE.test(err.stderr))) {
        errors.push(describeFailure(`listing ${family} routes in table ${config.routeTable}`, err));
      }
    }
  }
  return { nftTables, ...(ourTable !== undefined ? { ourTable } : {}), rules, routes, errors };
}

/** Pure: what of ours a state holds. */
export function leftoversIn(state: SteeringState, config: Pick<CaptureConfig, 'mark' | 'routeTable'>, tableName = NFT_TABLE_NAME): Leftovers {
  const table = state.nftTables.includes(`${NFT_TABLE_FAMILY} ${tableName}`);
  const rules = state.rules.filter((r) => isOurRule(r, config));
  const routes = state.routes;
  return { table, rules, routes, errors: state.errors, clean: !table && rules.length === 0 && routes.length === 0 && state.errors.length === 0 };
}

/** Lists what of ours is present on this host (or in the namespace the Exec runs in). */
export async function findLeftovers(exec: Exec, config: Pick<CaptureConfig, 'mark' | 'routeTable'>, tableName = NFT_TABLE_NAME): Promise<Leftovers> {
  return leftoversIn(await readSteeringState(exec, config, tableName), config, tableName);
}

/** Human one-liners for logs: "nft table inet tproxy_helper", "ipv4 rule 4233: from all fwmark 0x2333 lookup 233", ... */
export function describeLeftovers(l: Leftovers, tableName = NFT_TABLE_NAME): string[] {
  return [
    ...(l.table ? [`nft table ${NFT_TABLE_FAMILY} ${tableName}`] : []),
    ...l.rules.map((r) => `${r.family} rule ${r.text}`),
    ...l.routes.map((r) => `${r.family} route ${r.text}`),
  ];
}

