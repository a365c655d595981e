/**
 * Steering rules as data: a pure function from the capture configuration to everything the kernel
 * must hold while capture runs (nft rules in our own table, policy-routing rules, local routes).
 * Each item can `explain()` itself in one sentence, so `capture.status` shows users what is applied
 * and tests can assert on intent, not only on rendered text (mockttp's `explain()`).
 * This module must not render command text (nft.ts, routing.ts) and must not run anything
 * (apply.ts is the only module that changes the kernel).
 *
 * How a connection is taken, end to end:
 *   1. OUTPUT (type route): a NEW local TCP connection to a chosen port (from a process in scope)
 *      gets conntrack mark `mark`; every packet of such a connection gets skb mark `mark`. A
 *      `type route` chain makes the kernel re-route a packet whose mark changed
 *      (ip_route_me_harder), which is what lets step 2 apply.
 *   2. `ip rule fwmark <mark> lookup <table>` + `local default dev lo` in that table: the marked
 *      packet is "delivered locally", i.e. looped back onto lo instead of leaving the host.
 *   3. PREROUTING on lo: the nft `tproxy` expression assigns the packet to the helper's
 *      IP_TRANSPARENT listener without rewriting its destination, so the helper reads the original
 *      destination with getsockname().
 * The helper's upstream sockets carry SO_MARK `bypassMark`, which step 1 returns on first (anti-loop).
 *
 * Marks live under `config.markMask`: every rule sets only the bits of the mask (`and ~mask or mark`)
 * and compares only them (`and mask == mark`, `fwmark mark/mask`), so the bits other users of
 * fwmarks own (VPNs, Docker, Tailscale, kube-proxy) pass through untouched and never stop a match.
 */
import type { CaptureConfig } from '@tproxy/protocol';
import { FirewallError } from './errors.js';

/** Our own nft table. Not `tproxy`: that word is an nft keyword and fails to parse as a table name (nft 1.0.6). */
export const NFT_TABLE_NAME = 'tproxy_helper';
/** `inet` covers IPv4 and IPv6 with one table and one atomic transaction (nft(8), ADDRESS FAMILIES). */
export const NFT_TABLE_FAMILY = 'inet';
/** Named set of intercepted destination ports; one set keeps every rule independent of the port count. */
export const NFT_PORTS_SET = 'ports';

/**
 * Explicit `ip rule` priority, so that `del` names exactly the rule `add` created (no "first rule
 * that matches" guesswork) and so that its position does not depend on what else is installed:
 * without one, iproute2 picks "one below the lowest existing priority", which differs per host.
 * 4233 sits after `local` (0) and before tailscale's 5210-5270 and wg-quick's/main's 327xx, so a
 * full-tunnel VPN's catch-all rule cannot route our marked packets away before ours is consulted.
 * Taking an early slot is harmless: the rule only matches packets carrying exactly our mark.
 * See ip-rule(8) "priority PREFERENCE".
 */
export const RULE_PRIORITY = 4233;

/**
 * Fail-open lifetime of each element of the `ports` set (nft(8) SETS, `flags timeout`). The helper
 * refreshes the elements every HEARTBEAT_INTERVAL_MS (capture/monitor.ts); if it dies without any
 * cleanup (SIGKILL, OOM), the elements expire within this many seconds, the mark-new rule
 * (`tcp dport @ports`) matches nothing any more, and new connections flow directly again.
 * Connections taken before that keep their conntrack mark and stay looped back to the (dead)
 * listener until they close: only NEW connections are guaranteed to flow directly.
 * Four heartbeats fit in one lifetime, so a single slow or failed refresh never drops interception.
 */
export const PORTS_TIMEOUT_SECONDS = 8;
/** How often the running helper refreshes the `ports` set elements (see PORTS_TIMEOUT_SECONDS). */
export const HEARTBEAT_INTERVAL_MS = 2_000;

export type IpFamily = 'ipv4' | 'ipv6';

/**
 * Whose connections are taken, resolved by the capture service before planning (the plan stays pure:
 * it never looks at /proc or /sys). Both present means both must match. Empty means every local
 * process.
 */
export interface SteeringScope {
  /**
   * Only sockets owned by these uids (nft `meta skuid`, iptables `-m owner --uid-owner`). When
   * present it must name at least one uid: planSteering rejects `[]` rather than read it as "all".
   */
  readonly uids?: readonly number[];
  /** Only sockets created by processes in this cgroup v2 subtree. */
  readonly cgroup?: {
    /** Relative to the cgroup2 root, no leading slash, e.g. `tproxy/run-1` or `system.slice/foo.service`. */
    readonly path: string;
    /** Depth of `path` below the root (`tproxy/run-1` is 2): nft `socket cgroupv2 level N`. */
    readonly level: number;
    /**
     * `path` as nft 1.0.6 resolves it: relative to /sys/fs/cgroup, where nft looks it up, so
     * `unified/tproxy/run-1` on a hybrid (v1+v2) host and `tproxy/run-1` on a pure v2 host.
     */
    readonly nftPath: string;
  };
}

interface Explained {
  /** One human sentence saying what this item does and why. */
  explain(): string;
}

/** The helper's own upstream sockets (SO_MARK bypassMark) leave OUTPUT untouched: the anti-loop. */
export interface BypassRule extends Explained {
  readonly kind: 'bypass';
  readonly bypassMark: number;
  /** Compared under this mask only (`meta mark and mask == bypassMark`). */
  readonly mask: number;
}

/**
 * Conntrack-mark NEW connections to the chosen ports. Only NEW: connections that existed before
 * capture started are never hijacked mid-stream.
 */
export interface MarkNewRule extends Explained {
  readonly kind: 'mark-new';
  readonly mark: number;
  readonly bypassMark: number;
  /** Only these bits of the conntrack mark are written: `ct mark set ct mark and ~mask or mark`. */
  readonly mask: number;
  readonly ports: readonly number[];
  /** Restrict to one family (IPv4 when `ipv6` is off); undefined means both. */
  readonly family?: IpFamily;
  /** Only connections of these sockets (the plan's scope); `{}` means every local process. */
  readonly scope: SteeringScope;
}

/** Copy the conntrack mark to every packet of a taken connection, so all of them are re-routed. */
export interface RestoreMarkRule extends Explained {
  readonly kind: 'restore-mark';
  readonly mark: number;
  /** Matches `ct mark and mask == mark` and writes only these bits of the packet mark. */
  readonly mask: number;
  readonly table: number;
  readonly family?: IpFamily;
}

/**
 * Hand a marked packet looped back on lo to the transparent listener. `iifname "lo"` keeps
 * forwarded traffic (arriving on other interfaces) out of scope. The nft tproxy expression first
 * looks for an established socket for the packet and only then the listener, so reply packets
 * towards the local client (a normal, non-transparent socket) fall through untouched.
 */
export interface TproxyRule extends Explained {
  readonly kind: 'tproxy';
  readonly family: IpFamily;
  readonly mark: number;
  /** Matches `meta mark and mask == mark`. */
  readonly mask: number;
  readonly ports: readonly number[];
  readonly address: string;
  readonly port: number;
}

export type NftRule = BypassRule | MarkNewRule | RestoreMarkRule | TproxyRule;

export interface NftChain {
  readonly name: 'output' | 'prerouting';
  /** `route` re-routes packets whose mark changed (output only); `filter` is what tproxy needs. */
  readonly type: 'route' | 'filter';
  readonly hook: 'output' | 'prerouting';
  /**
   * `mangle` (-150): the conventional slot for mark changes, ahead of DNAT (-100) in output and of
   * conntrack-independent filter chains (0), see nft(8) "STANDARD PRIORITY NAMES".
   */
  readonly priority: 'mangle';
  /** Our chains only steer, never drop: everything not matched continues to other tables. */
  readonly policy: 'accept';
  readonly rules: readonly NftRule[];
}

/** `ip route add local <any> dev lo table <table>`: everything looked up in our table is delivered locally. */
export interface LocalRouteSpec extends Explained {
  readonly kind: 'local-route';
  readonly family: IpFamily;
  readonly table: number;
}

/** `ip rule add priority <p> fwmark <mark>/<mask> lookup <table>`: marked packets consult our table. */
export interface FwmarkRuleSpec extends Explained {
  readonly kind: 'fwmark-rule';
  readonly family: IpFamily;
  readonly priority: number;
  readonly mark: number;
  /** The rule compares only these bits (ip-rule(8) `fwmark MARK/MASK`). */
  readonly mask: number;
  readonly table: number;
}

export type RoutingSpec = LocalRouteSpec | FwmarkRuleSpec;

export interface SteeringPlan {
  /** The configuration this plan was made from. */
  readonly config: CaptureConfig;
  /** Whose connections are taken; `{}` means every local process. */
  readonly scope: SteeringScope;
  readonly table: { readonly family: typeof NFT_TABLE_FAMILY; readonly name: string };
  /** Elements of the `ports` set, ascending. */
  readonly ports: readonly number[];
  /** Each `ports` element expires this long after it was last added (PORTS_TIMEOUT_SECONDS). */
  readonly portsTimeoutSeconds: number;
  /** In render order: output, then prerouting. */
  readonly chains: readonly NftChain[];
  /** In apply order: local routes first (so a rule never points at an empty table), then rules. */
  readonly routing: readonly RoutingSpec[];
}

/** Marks and masks are conventionally written in hex (ip-rule(8), nft(8) examples). */
export function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

const FAMILY_NAME: Record<IpFamily, string> = { ipv4: 'IPv4', ipv6: 'IPv6' };

function portList(ports: readonly number[]): string {
  return ports.length === 1 ? `port ${ports[0]}` : `ports ${ports.join(', ')}`;
}

function endpoint(family: IpFamily, address: string, port: number): string {
  return family === 'ipv6' ? `[${address}]:${port}` : `${address}:${port}`;
}

/** "from this host", "from uid 1000", "from uids 0, 1000 in cgroup system.slice/x.service", ... */
function whose(scope: SteeringScope): string {
  const uids = scope.uids ? `${scope.uids.length === 1 ? 'uid' : 'uids'} ${scope.uids.join(', ')}` : '';
  const cgroup = scope.cgroup ? `in cgroup ${scope.cgroup.path}` : '';
  if (uids && cgroup) return `from processes of ${uids} ${cgroup}`;
  if (uids) return `from processes of ${uids}`;
  if (cgroup) return `from processes ${cgroup}`;
  return 'from this host';
}

/**
 * Rejects a scope no backend can render faithfully. An empty uid list would otherwise render as no
 * uid match at all, i.e. widen a capture restricted to some users to every user.
 */
function checkScope(scope: SteeringScope): void {
  if (scope.uids && scope.uids.length === 0) {
    throw new FirewallError('invalid-scope', 'scope.uids is empty: name at least one uid, or omit uids to take every user\'s connections');
  }
  for (const uid of scope.uids ?? []) {
    if (!Number.isInteger(uid) || uid < 0 || uid > 0xfffffffe) throw new FirewallError('invalid-scope', `scope.uids: ${uid} is not a uid (0..4294967294)`);
  }
  const cg = scope.cgroup;
  if (cg && (!Number.isInteger(cg.level) || cg.level < 1 || cg.path === '')) {
    throw new FirewallError('invalid-scope', `scope.cgroup "${cg.path}" must name a cgroup below the root (level ${cg.level})`);
  }
}

export function planSteering(config: CaptureConfig, scope: SteeringScope = {}): SteeringPlan {
  checkScope(scope);
  const { mark, bypassMark, markMask: mask, routeTable: table, listenPort } = config;
  const ports = [...new Set(config.ports)].sort((a, b) => a - b);
  const families: IpFamily[] = config.ipv6 ? ['ipv4', 'ipv6'] : ['ipv4'];
  /** With IPv6 off the output chain must not mark IPv6 connections it cannot hand to any listener. */
  const only: IpFamily | undefined = config.ipv6 ? undefined : 'ipv4';
  const familyWord = only ? `${FAMILY_NAME[only]} ` : '';

  const output: NftRule[] = [
    {
      kind: 'bypass',
      bypassMark,
      mask,
      explain: () => `let the helper's own upstream connections (marked ${hex(bypassMark)}) pass untouched, so nothing is intercepted twice`,
    },
    {
      kind: 'mark-new',
      mark,
      bypassMark,
      mask,
      ports,
      ...(only ? { family: only } : {}),
      scope,
      explain: () =>
        `mark new ${familyWord}TCP connections ${whose(scope)} to ${portList(ports)} with ${hex(mark)} (except the helper's own, marked ${hex(bypassMark)}), ` +
        `changing only mark bits ${hex(mask)}`,
    },
    {
      kind: 'restore-mark',
      mark,
      mask,
      table,
      ...(only ? { family: only } : {}),
      explain: () => `give every packet of a connection marked ${hex(mark)} the same packet mark, so policy routing sends it to table ${table}`,
    },
  ];

  const prerouting: NftRule[] = families.map((family) => {
    const address = family === 'ipv6' ? config.listenV6 : config.listenV4;
    return {
      kind: 'tproxy',
      family,
      mark,
      mask,
      ports,
      address,
      port: listenPort,
      explain: () =>
        `hand marked ${FAMILY_NAME[family]} TCP packets to ${portList(ports)} looped back on lo to the transparent listener ${endpoint(family, address, listenPort)}`,
    } satisfies TproxyRule;
  });

  const routes: RoutingSpec[] = families.map((family) => ({
    kind: 'local-route',
    family,
    table,
    explain: () =>
      `deliver every ${FAMILY_NAME[family]} destination looked up in route table ${table} to this host (local ${family === 'ipv6' ? '::/0' : '0.0.0.0/0'} dev lo)`,
  }));
  const rules: RoutingSpec[] = families.map((family) => ({
    kind: 'fwmark-rule',
    family,
    priority: RULE_PRIORITY,
    mark,
    mask,
    table,
    explain: () =>
      `send ${FAMILY_NAME[family]} packets marked ${hex(mark)} to route table ${table} (ip rule priority ${RULE_PRIORITY}, fwmark ${hex(mark)}/${hex(mask)})`,
  }));

  return {
    config,
    scope,
    table: { family: NFT_TABLE_FAMILY, name: NFT_TABLE_NAME },
    ports,
    portsTimeoutSeconds: PORTS_TIMEOUT_SECONDS,
    chains: [
      { name: 'output', type: 'route', hook: 'output', priority: 'mangle', policy: 'accept', rules: output },
      { name: 'prerouting', type: 'filter', hook: 'prerouting', priority: 'mangle', policy: 'accept', rules: prerouting },
    ],
    routing: [...routes, ...rules],
  };
}

/**
 * One line per route, rule and nft rule, in apply order (routes, ip rules, then the nft table that
 * starts the marking): what `capture.status` reports as applied.
 */
export function describePlan(plan: SteeringPlan): string[] {
  const nft = plan.chains.flatMap((chain) =>
    chain.rules.map((rule) => `nft ${chain.name}: ${rule.explain()}`),
  );
  const routing = plan.routing.map((spec) => `${spec.kind === 'local-route' ? 'ip route' : 'ip rule'}: ${spec.explain()}`);
  return [...routing, ...nft];
}
