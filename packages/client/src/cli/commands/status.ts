/**
 * `tproxyctl status`: whether capture runs (or why it cannot), its listeners, the rules applied,
 * the CA, and which helper answered. `--json` prints the raw `capture.status` result. Read-only.
 */
import { methods } from '@tproxy/protocol';
import { expectPositionals, type Command } from '../command.js';
import { formatStatus, jsonLine } from '../output.js';

export const statusCommand: Command = {
  name: 'status',
  summary: 'Show whether capture runs, its listeners and rules, and the CA',
  usage: `Usage: tproxyctl status [--json]

Show whether capture is running, stopped or unavailable (and why), the transparent listeners, the
number of intercepted connections, every rule and route applied (one per line), whether the CA is
installed in the OS trust store, and the helper's version.

  --json   Print the raw capture.status result`,
  flags: {},
  async run(ctx, args) {
    expectPositionals(args, 0, 0, '');
    const client = await ctx.connect();
    if (ctx.json) {
      ctx.print(jsonLine(await client.call(methods.captureStatus, {})));
      return 0;
    }
    const [status, info] = await Promise.all([client.call(methods.captureStatus, {}), client.call(methods.helperInfo, {})]);
    ctx.print(formatStatus(status, info));
    return 0;
  },
};
