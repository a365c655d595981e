/**
 * Renders a SteeringPlan for the iptables backend: one `iptables-restore --noflush` input per
 * family that creates our own chains in the `mangle` table plus one jump from each built-in chain,
 * and the `ipset restore` inputs for the fail-open port set. Pure: it must not decide what to steer
 * (plan.ts) nor run anything (iptables-apply.ts).
 *
 * The rules are the nft plan's, one for one (nft.ts):
 *   TPROXY_HELPER_OUT (jumped to from mangle OUTPUT; iptable_mangle re-routes a packet whose mark
 *   changed there, like nft's `type route` chain):
 *     bypass        -m mark --mark BYPASS/MASK -j RETURN
 *     mark-new      -p tcp -m set --match-set tproxy_helper_ports dst -m conntrack --ctstate NEW
 *                   [-m owner --uid-owner U] [-m cgroup --path P] -j CONNMARK --set-xmark MARK/MASK
 *     restore-mark  -m connmark --mark MARK/MASK -j MARK --set-xmark MARK/MASK
 *   TPROXY_HELPER_PRE (jumped to from mangle PREROUTING):
 *     tproxy        -i lo -p tcp -m set ... dst -m mark --mark MARK/MASK -j TPROXY --on-port P --on-ip A
 *   `--set-xmark V/M` computes `mark & ~M ^ V`, which is `mark & ~M | V` because V lies within M
 *   (the protocol rejects marks with bits outside the mask): only our bits change, as in nft.ts.
 *
 * Every rule line is written exactly as iptables-save prints it (match order, `--on-port` before
 * `--on-ip`, a full mask omitted on matches but kept on targets; checked with iptables 1.8.9, both
 * flavours), so verify can compare lines instead of guessing at normalisation.
 *
 * Fail-open: nft's timed set elements become an ipset `bitmap:port` with `timeout`: each port
 * expires PORTS_TIMEOUT_SECONDS after the last heartbeat (`ipset restore -exist` re-adding it
 * resets its timeout). One set serves both families (bitmap:port only looks at the port). The
 * heartbeat only `add`s, never `create`s, so it cannot resurrect a set someone destroyed.
 */
import { FirewallError } from './errors.js';
import { hex } from './plan.js';
import type { IpFamily, NftRule, SteeringPlan, SteeringScope } from './plan.js';

/** Our chain in mangle OUTPUT: marks new connections and restores the mark on their packets. */
export const IPT_CHAIN_OUT = 'TPROXY_HELPER_OUT';
/** Our chain in mangle PREROUTING: hands looped-back marked packets to the transparent listener. */
export const IPT_CHAIN_PRE = 'TPROXY_HELPER_PRE';
/** Every chain we create; revert deletes them and any rule jumping to them. */
export const IPT_CHAINS = [IPT_CHAIN_OUT, IPT_CHAIN_PRE] as const;
/** mangle: where marks are set and the only table TPROXY is valid in. */
export const IPT_TABLE = 'mangle';
/** The fail-open port set (ipset names are at most 31 characters). */
export const IPSET_NAME = 'tproxy_helper_ports';

/** Built-in chain → our chain it jumps to. */
const HOOKS: readonly (readonly [builtin: string, ours: string])[] = [
  ['PREROUTING', IPT_CHAIN_PRE],
  ['OUTPUT', IPT_CHAIN_OUT],
];

const FULL_MASK = 0xffffffff;

/** `--mark` match operand: iptables-save omits a full mask. */
function markMatch(value: number, mask: number): string {
  return mask >>> 0 === FULL_MASK ? hex(value) : `${hex(value)}/${hex(mask >>> 0)}`;
}

/** `--set-xmark` operand: iptables-save always prints the mask. */
function xmark(value: number, mask: number): string {
  return `${hex(value)}/${hex(mask >>> 0)}`;
}

const SET_MATCH = `-m set --match-set ${IPSET_NAME} dst`;

/**
 * A cgroup path as one iptables-restore word. iptables-restore splits on blanks and honours only
 * plain double quotes, so a path with blanks, quotes or backslashes cannot be passed faithfully.
 */
function cgroupWord(path: string): string {
  // eslint-disable-next-line no-control-regex
  if (/[\s"'\\\x00-\x1f\x7f]/.test(path)) {
    throw new FirewallError('invalid-scope', `scope cgroup "${path}" contains a blank, quote, backslash or control character, which iptables-restore cannot express; move the processes to a cgroup with a plain name, or use the nft backend`);
  }
  return path;
}

/** One owner/cgroup fragment per rule line: `-m owner` takes one uid, so each uid gets its own line. */
function scopeFragments(scope: SteeringScope): string[] {
  const cgroup = scope.cgroup ? ` -m cgroup --path ${cgroupWord(scope.cgroup.path)}` : '';
  if (!scope.uids) return [cgroup];
  return scope.uids.map((uid) => ` -m owner --uid-owner ${uid}${cgroup}`);
}

function appliesTo(rule: NftRule, family: IpFamily): boolean {
  if (rule.kind === 'bypass') return true;
  if (rule.kind === 'tproxy') return rule.family === family;
  return rule.family === undefined || rule.family === family;
}

/** The `-A CHAIN ...` lines of one plan rule, exactly as iptables-save prints them. */
function ruleLines(rule: NftRule): string[] {
  switch (rule.kind) {
    case 'bypass':
      return [`-A ${IPT_CHAIN_OUT} -m mark --mark ${markMatch(rule.bypassMark, rule.mask)} -j RETURN`];
    case 'mark-new':
      return scopeFragments(rule.scope).map(
        (scope) => `-A ${IPT_CHAIN_OUT} -p tcp ${SET_MATCH} -m conntrack --ctstate NEW${scope} -j CONNMARK --set-xmark ${xmark(rule.mark, rule.mask)}`,
      );
    case 'restore-mark':
      return [`-A ${IPT_CHAIN_OUT} -m connmark --mark ${markMatch(rule.mark, rule.mask)} -j MARK --set-xmark ${xmark(rule.mark, rule.mask)}`];
    case 'tproxy':
      return [
        `-A ${IPT_CHAIN_PRE} -i lo -p tcp ${SET_MATCH} -m mark --mark ${markMatch(rule.mark, rule.mask)} ` +
          `-j TPROXY --on-port ${rule.port} --on-ip ${rule.address} --tproxy-mark ${xmark(rule.mark, rule.mask)}`,
      ];
  }
}

/** Families that get iptables rules: those with a listener (IPv4 only when `ipv6` is off). */
export function iptablesFamilies(plan: SteeringPlan): IpFamily[] {
  const tproxy = plan.chains.flatMap((c) => c.rules).filter((r) => r.kind === 'tproxy');
  return (['ipv4', 'ipv6'] as const).filter((f) => tproxy.some((r) => r.family === f));
}

/** Our chains' rule lines for one family, in order (what verify expects in iptables-save). */
export function iptablesRuleLines(plan: SteeringPlan, family: IpFamily): string[] {
  return plan.chains.flatMap((chain) => chain.rules.filter((r) => appliesTo(r, family)).flatMap(ruleLines));
}

/** The jump lines as iptables-save prints them (`-A OUTPUT -j TPROXY_HELPER_OUT`). */
export function iptablesJumpLines(): string[] {
  return HOOKS.map(([builtin, ours]) => `-A ${builtin} -j ${ours}`);
}

/**
 * The `iptables-restore --noflush` input for one family. Declaring a chain creates it (or empties a
 * leftover one); the jumps are inserted at position 1 so that ours run before rules other tools
 * appended to the built-in chains, as nft's `mangle` priority puts our chains early. One input is
 * one commit: the kernel takes all of it or none (legacy: one table replace; nft: one batch).
 */
export function renderIptablesApply(plan: SteeringPlan, family: IpFamily): string {
  const lines = [
    `# tproxy-helper steering rules (${family}); generated from packages/helper/src/firewall/plan.ts`,
    `*${IPT_TABLE}`,
    ...IPT_CHAINS.map((c) => `:${c} - [0:0]`),
    ...iptablesRuleLines(plan, family),
    ...HOOKS.map(([builtin, ours]) => `-I ${builtin} 1 -j ${ours}`),
    'COMMIT',
  ];
  return `${lines.join('\n')}\n`;
}

/** The mangle section of iptables-save output: declared chains and `-A` lines. Empty when absent. */
export function parseMangle(saved: string): { chains: Set<string>; rules: string[] } {
  const chains = new Set<string>();
  const rules: string[] = [];
  let inMangle = false;
  for (const raw of saved.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('*')) inMangle = line === `*${IPT_TABLE}`;
    else if (!inMangle) continue;
    else if (line === 'COMMIT') inMangle = false;
    else if (line.startsWith(':')) chains.add(line.slice(1).split(/\s+/)[0] ?? '');
    else if (line.startsWith('-A ')) rules.push(line);
  }
  return { chains, rules };
}

const OURS = new Set<string>(IPT_CHAINS);

/**
 * The `iptables-restore --noflush` input that removes what the saved state holds of ours: every
 * rule of another chain that jumps to one of ours (exactly as saved, so a duplicate or someone
 * else's conditional jump goes too, or `-X` would fail), then each of our chains flushed and
 * deleted. null when nothing of ours is there. `count` is the number of jumps and chains removed.
 */
export function renderIptablesRevert(saved: string): { input: string; count: number } | null {
  const { chains, rules } = parseMangle(saved);
  const jumps = rules.filter((line) => {
    const words = line.split(/\s+/);
    const at = words.findIndex((w) => w === '-j' || w === '-g');
    return at > 0 && !OURS.has(words[1] ?? '') && OURS.has(words[at + 1] ?? '');
  });
  const ours = IPT_CHAINS.filter((c) => chains.has(c));
  if (jumps.length === 0 && ours.length === 0) return null;
  const lines = [
    `*${IPT_TABLE}`,
    ...jumps.map((line) => `-D${line.slice(2)}`),
    ...ours.flatMap((c) => [`-F ${c}`, `-X ${c}`]),
    'COMMIT',
  ];
  return { input: `${lines.join('\n')}\n`, count: jumps.length + ours.length };
}

function addLines(plan: SteeringPlan): string[] {
  return plan.ports.map((p) => `add ${IPSET_NAME} ${p} timeout ${plan.portsTimeoutSeconds}`);
}

/**
 * `ipset restore` input creating the port set with its elements. The bitmap covers only the plan's
 * port range (a bitmap:port with timeouts over 1-65535 would take ~0.5 MiB of kernel memory). No
 * `-exist`: a set of that name already there fails the apply instead of being adopted.
 */
export function renderIpsetCreate(plan: SteeringPlan): string {
  const min = Math.min(...plan.ports);
  const max = Math.max(...plan.ports);
  return `${[`create ${IPSET_NAME} bitmap:port range ${min}-${max} timeout ${plan.portsTimeoutSeconds}`, ...addLines(plan)].join('\n')}\n`;
}

/** `ipset restore -exist` input giving every port its full lifetime again; fails if the set is gone. */
export function renderIpsetHeartbeat(plan: SteeringPlan): string {
  return `${addLines(plan).join('\n')}\n`;
}

/**
 * What capture.status reports as applied on this backend, in apply order (routes, ip rules, the
 * set, then our chains): plan.ts describePlan's sentences under iptables names.
 */
export function describeIptablesPlan(plan: SteeringPlan): string[] {
  const routing = plan.routing.map((spec) => `${spec.kind === 'local-route' ? 'ip route' : 'ip rule'}: ${spec.explain()}`);
  const set = `ipset ${IPSET_NAME}: ports ${plan.ports.join(', ')}, each expiring ${plan.portsTimeoutSeconds} s after the helper last refreshed it (fail-open)`;
  const chains = plan.chains.flatMap((chain) => chain.rules.map((rule) => `iptables ${chain.name === 'output' ? IPT_CHAIN_OUT : IPT_CHAIN_PRE}: ${rule.explain()}`));
  return [...routing, set, ...chains];
}

/** Ports listed under `Members:` in `ipset list <set>` output (`443 timeout 5`). */
export function parseIpsetMembers(listing: string): number[] {
  const at = listing.indexOf('Members:');
  if (at < 0) return [];
  return listing
    .slice(at + 'Members:'.length)
    .split('\n')
    .map((l) => Number(/^\s*(\d+)/.exec(l)?.[1]))
    .filter((n) => Number.isInteger(n));
}
