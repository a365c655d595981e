/**
 * Renders a SteeringPlan's nft part to one `nft -f -` script. One script is one netlink
 * transaction, so the kernel sees either the whole new table or none of it (nft(8), "-f").
 * This module owns only text: it must not decide what to steer (plan.ts) nor run nft (apply.ts).
 *
 * Apply and revert both start with `table <t> {}` + `delete table <t>`: declaring the empty table
 * creates it when absent, so the delete that follows never fails with "No such file or directory".
 * Apply therefore atomically replaces whatever table of ours exists (a leftover of a crashed run
 * included), and revert is idempotent.
 */
import { hex, NFT_PORTS_SET, NFT_TABLE_FAMILY, NFT_TABLE_NAME } from './plan.js';
import type { IpFamily, NftChain, NftRule, SteeringPlan } from './plan.js';

const INDENT = '  ';

/** nft's name for each family in `meta nfproto` and in the `tproxy <family> to` statement. */
const NFPROTO: Record<IpFamily, string> = { ipv4: 'ipv4', ipv6: 'ipv6' };
const TPROXY_FAMILY: Record<IpFamily, string> = { ipv4: 'ip', ipv6: 'ip6' };

function resetLines(family: string, name: string): string[] {
  return [`table ${family} ${name} {}`, `delete table ${family} ${name}`];
}

function renderRule(rule: NftRule): string {
  const set = `@${NFT_PORTS_SET}`;
  switch (rule.kind) {
    case 'bypass':
      return `meta mark ${hex(rule.bypassMark)} return`;
    case 'mark-new': {
      const fam = rule.family ? `meta nfproto ${NFPROTO[rule.family]} ` : '';
      return `${fam}meta l4proto tcp tcp dport ${set} ct state new ct mark set ${hex(rule.mark)}`;
    }
    case 'restore-mark': {
      const fam = rule.family ? `meta nfproto ${NFPROTO[rule.family]} ` : '';
      return `${fam}ct mark ${hex(rule.mark)} meta mark set ${hex(rule.mark)}`;
    }
    case 'tproxy': {
      const to = rule.family === 'ipv6' ? `[${rule.address}]:${rule.port}` : `${rule.address}:${rule.port}`;
      return (
        `iifname "lo" meta l4proto tcp tcp dport ${set} meta mark ${hex(rule.mark)} ` +
        `meta nfproto ${NFPROTO[rule.family]} tproxy ${TPROXY_FAMILY[rule.family]} to ${to} accept`
      );
    }
  }
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
    `${INDENT}set ${NFT_PORTS_SET} { type inet_service; elements = { ${plan.ports.join(', ')} } }`,
    ...plan.chains.flatMap(renderChain),
    '}',
  ];
  return `${lines.join('\n')}\n`;
}

/** Removes our table whether or not it exists; with it go its set, chains and rules. */
export function renderNftRevert(tableName: string = NFT_TABLE_NAME): string {
  return `${resetLines(NFT_TABLE_FAMILY, tableName).join('\n')}\n`;
}
