/**
 * `tproxyctl stop`: stop capturing and revert every rule, route and the CA install. Idempotent:
 * when nothing runs it says so and exits 0, including when another caller stopped capture between
 * our status check and our stop.
 */
import { methods } from '@tproxy/protocol';
import { isCaptureNotRunning } from '../../rpc/errors.js';
import { expectPositionals, type Command } from '../command.js';
import { formatStatus, jsonLine } from '../output.js';

export const stopCommand: Command = {
  name: 'stop',
  summary: 'Stop capturing and revert every rule and route',
  usage: `Usage: tproxyctl stop [--json]

Stop intercepting, revert every rule and route, and remove the CA from the OS trust store. When
capture is not running this says so and succeeds. Prints the resulting status.

  --json   Print the resulting capture.status as JSON`,
  flags: {},
  async run(ctx, args) {
    expectPositionals(args, 0, 0, '');
    const client = await ctx.connect();
    const before = await client.call(methods.captureStatus, {});
    let status = before;
    let stopped = false;
    if (before.running) {
      try {
        status = await client.call(methods.captureStop, {});
        stopped = true;
      } catch (err) {
        if (!isCaptureNotRunning(err)) throw err;
        status = await client.call(methods.captureStatus, {});
      }
    }
    if (ctx.json) ctx.print(jsonLine(status));
    else ctx.print(`${stopped ? 'capture stopped' : 'capture is not running'}\n${formatStatus(status)}`);
    return 0;
  },
};
