/**
 * `tproxyctl clear`: empty the helper's exchange buffer. Exchanges in flight go on on the wire but
 * are no longer kept; subscribers (tail, tproxy-ui) are told with `exchanges.cleared`.
 */
import { methods } from '@tproxy/protocol';
import { expectPositionals, type Command } from '../command.js';
import { jsonLine } from '../output.js';

export const clearCommand: Command = {
  name: 'clear',
  summary: "Empty the helper's buffer of captured exchanges",
  usage: `Usage: tproxyctl clear [--json]

Remove every captured exchange from the helper's buffer (needs write access: root or an
--allow-uid operator). Requests in flight are not interrupted; they are just no longer kept.

  --json   Print the exchanges.clear result ({"removed": N})`,
  flags: {},
  async run(ctx, args) {
    expectPositionals(args, 0, 0, '');
    const client = await ctx.connect();
    const result = await client.call(methods.exchangesClear, {});
    if (ctx.json) ctx.print(jsonLine(result));
    else ctx.print(`cleared ${result.removed} exchange${result.removed === 1 ? '' : 's'}\n`);
    return 0;
  },
};
