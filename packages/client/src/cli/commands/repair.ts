/**
 * `tproxyctl repair`: ask the helper to remove what a killed helper left behind (steering rules,
 * routes, `tproxy-*` trust-store entries) and print what was removed and which session it came
 * from. Refused by the helper while capture runs (use `tproxyctl stop`); safe to repeat.
 */
import { methods } from '@tproxy/protocol';
import { expectPositionals, type Command } from '../command.js';
import { formatRepair, jsonLine } from '../output.js';

export const repairCommand: Command = {
  name: 'repair',
  summary: 'Remove rules, routes and CA entries a killed helper left behind',
  usage: `Usage: tproxyctl repair [--json]

Remove what a helper that was killed (or crashed) during capture left behind: its nft table,
ip rules and routes (as it recorded them, and at the default marks), and every tproxy CA entry
in the OS trust store. Prints what was removed and, when the killed helper's record was found,
its session (its exchanges are lost: they lived only in its memory). Nothing to remove is not
an error. Refused while capture runs: 'tproxyctl stop' removes a running capture's rules.

  --json   Print the raw helper.repair result`,
  flags: {},
  async run(ctx, args) {
    expectPositionals(args, 0, 0, '');
    const client = await ctx.connect();
    const result = await client.call(methods.helperRepair, {});
    ctx.print(ctx.json ? jsonLine(result) : formatRepair(result));
    return 0;
  },
};
