/**
 * Renders a SteeringPlan's nft part to one `nft -f -` script. One script is one netlink
 * transaction, so the kernel sees either the whole new table or none of it (nft(8), "-f").
 * This module owns only text: it must not decide what to steer (plan.ts) nor run nft (apply.ts).
 *
 * Apply and revert both start with `table <t> {}` + `delete table <t>`: declaring the empty table
 * creates it when absent, so the delete that follows never fails with "No such file or directory".
 * Apply therefore atomically replaces whatever table of ours exists (a leftover of a crashed run
 * included), and revert is idempotent.
 *
 * Fail-open heartbeat: the `ports` set has `flags timeout` and every element carries
 * `timeout <PORTS_TIMEOUT_SECONDS>s`. The heartbeat script is `flush set` + `add element` in one
 * transaction: the kernel commits both or neither, and packets never see the set empty in between
 * (nf_tables generation masks). `delete element` + `add element` would fail with ENOENT once an
 * element has expired (checked on nft 1.0.6 / Linux 6.18), `flush set` never does. The heartbeat
 * never declares the table or the set, so it cannot resurrect a table someone else deleted: it
 * fails instead ("No such file or directory") and the helper reports the loss.
 *
 * Marks under a mask: `meta mark and MASK == MARK` compares only our bits, and
 * `ct mark set ct mark and ~MASK or MARK` writes only them (nft lists the latter folded as
 * `ct mark & (~MASK | MARK) | MARK`, the same value). Scope: `meta skuid` and
 * `socket cgroupv2 level N "PATH"` on the mark-new rule only; both match in a `type route hook
 * output` chain for locally created sockets (checked on Linux 6.18 / nft 1.0.6, kernel.test.ts).
 */
import { FirewallError } from './errors.js';
import { hex, NFT_PORTS_SET, NFT_TABLE_FAMILY, NFT_TABLE_NAME } from './plan.js';
import type { IpFamily, NftChain, NftRule, SteeringPlan, SteeringScope } from './plan.js';

const INDENT = '  ';

/** nft's name for each family in `meta nfproto` and in the `tproxy <family> to` statement. */
const NFPROTO: Record<IpFamily, string> = { ipv4: 'ipv4', ipv6: 'ipv6' };
const TPROXY_FAMILY: Record<IpFamily, string> = { ipv4: 'ip', ipv6: 'ip6' };

function resetLines(family: string, name: string): string[] {
  return [`table ${family} ${name} {}`, `delete table ${family} ${name}`];
}

/** The bits outside the mask, as the `and` operand that keeps them. */
export function keepMask(mask: number): number {
  return ~mask >>> 0;
}

/**
 * A cgroup path as an nft string literal. nft has no escape inside "...", so a path with `"` or
 * `\` cannot be expressed (and must never reach the script, where it could end the string early).
 */
function quotedCgroup(path: string): string {
  // eslint-disable-next-line no-control-regex
  if (/["\\\x00-\x1f\x7f]/.test(path)) {
    throw new FirewallError('invalid-scope', `scope cgroup "${path}" contains a quote, backslash or control character, which nft cannot express; move the processes to a cgroup with a plain name`);
  }
  return `"${path}"`;
}

/** `meta skuid { 0, 1000 } socket cgroupv2 level 2 "unified/a/b" ` (each part only when scoped). */
function renderScope(scope: SteeringScope): string {
  const parts: string[] = [];
  if (scope.uids) parts.push(scope.uids.length === 1 ? `meta skuid ${scope.uids[0]}` : `meta skuid { ${scope.uids.join(', ')} }`);
  if (scope.cgroup) parts.push(`socket cgroupv2 level ${scope.cgroup.level} ${quotedCgroup(scope.cgroup.nftPath)}`);
  return parts.map((p) => `${p} `).join('');
}

function renderRule(rule: NftRule): string {
  const set = `@${NFT_PORTS_SET}`;
  switch (rule.kind) {
    case 'bypass':
      return `meta mark and ${hex(rule.mask)} == ${hex(rule.bypassMark)} return`;
    case 'mark-new': {
      const fam = rule.family ? `meta nfproto ${NFPROTO[rule.family]} ` : '';
      return `${fam}meta l4proto tcp tcp dport ${set} ct state new ${renderScope(rule.scope)}ct mark set ct mark and ${hex(keepMask(rule.mask))} or ${hex(rule.mark)}`;
    }
    case 'restore-mark': {
      const fam = rule.family ? `meta nfproto ${NFPROTO[rule.family]} ` : '';
      return `${fam}ct mark and ${hex(rule.mask)} == ${hex(rule.mark)} meta mark set meta mark and ${hex(keepMask(rule.mask))} or ${hex(rule.mark)}`;
    }
    case 'tproxy': {
      const to = rule.family === 'ipv6' ? `[${rule.address}]:${rule.port}` : `${rule.address}:${rule.port}`;
      return (
        `iifname "lo" meta l4proto tcp tcp dport ${set} meta mark and ${hex(rule.mask)} == ${hex(rule.mark)} ` +
        `meta nfproto ${NFPROTO[rule.family]} tproxy ${TPROXY_FAMILY[rule.family]} to ${to} accept`
      );
    }
  }
}

/** `{ 80 timeout 8s, 443 timeout 8s }`: every port with the plan's element lifetime. */
function timedElements(plan: SteeringPlan): string {
  return `{ ${plan.ports.map((p) => `${p} timeout ${plan.portsTimeoutSeconds}s`).join(', ')} }`;
}

function renderChain(chain: NftChain): string[] {
  return [
    `${INDENT}chain ${chain.name} {`,
    `${INDENT}${INDENT}type ${chain.type} hook ${chain.hook} priority ${chain.priority}; policy ${chain.policy};`,
    ...chain.rules.map((r) => `${INDENT}${INDENT}${renderRule(r)}`),
    `${INDENT}}`,
  ];
}

/** The whole apply transaction: reset our table, then declare it with its set and chains. */
export function renderNftApply(plan: SteeringPlan): string {
  const { family, name } = plan.table;
  const lines = [
    '# tproxy-helper steering rules; generated from packages/helper/src/firewall/plan.ts',
    ...resetLines(family, name),
    `table ${family} ${name} {`,
    `${INDENT}set ${NFT_PORTS_SET} { type inet_service; flags timeout; elements = ${timedElements(plan)} }`,
    ...plan.chains.flatMap(renderChain),
    '}',
  ];
  return `${lines.join('\n')}\n`;
}

/**
 * The heartbeat transaction: replaces the `ports` elements with fresh ones (full lifetime again),
 * atomically. Fails, changing nothing, when our table or set is gone.
 */
export function renderNftHeartbeat(plan: SteeringPlan): string {
  const set = `${plan.table.family} ${plan.table.name} ${NFT_PORTS_SET}`;
  return `flush set ${set}\nadd element ${set} ${timedElements(plan)}\n`;
}

/** Removes our table whether or not it exists; with it go its set, chains and rules. */
export function renderNftRevert(tableName: string = NFT_TABLE_NAME): string {
  return `${resetLines(NFT_TABLE_FAMILY, tableName).join('\n')}\n`;
}
