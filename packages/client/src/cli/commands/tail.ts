/**
 * `tproxyctl tail`: follow exchanges live. Subscribes on this connection and prints one line per
 * completed exchange (with --all-events, every started/updated/completed event), as text or JSON
 * Lines, optionally filtered by the helper (--host, --method, --status, --url). It ends on
 * SIGINT/SIGTERM (exit 0), after --count completed exchanges (exit 0), at
 * --timeout (exit 0, or 1 if --count was not reached), or when the helper goes away (exit 1).
 */
import { methods, type CaptureStatus, type Exchange } from '@tproxy/protocol';
import type { ExchangeEvent } from '../../rpc/client.js';
import { ConnectionClosedError } from '../../rpc/errors.js';
import { boolFlag, expectPositionals, parseInteger, parseSeconds, stringFlag, UsageError, type Command } from '../command.js';
import { FILTER_FLAGS, FILTER_USAGE, filterFromArgs } from '../filter-flags.js';
import { escapeInline, formatTailLine, jsonLine } from '../output.js';

/** One stderr line for a `capture.statusChanged` notification. */
export function describeCaptureChange(status: CaptureStatus): string {
  if (!status.running) return 'tproxyctl: capture stopped';
  if (status.interception && !status.interception.ok) return `tproxyctl: interception lost: ${escapeInline(status.interception.problems.join('; '))}`;
  return `tproxyctl: capture running (ports ${status.config?.ports.join(',') ?? '?'}), interception in place`;
}

export const tailCommand: Command = {
  name: 'tail',
  summary: 'Print exchanges as they complete',
  usage: `Usage: tproxyctl tail [--json] [--all-events] [--count N] [--timeout SECONDS] [filters]

Print one line per completed exchange until interrupted:
  HH:MM:SS.mmm METHOD URL STATUS SIZE DURATION
STATUS is the HTTP status, or ERR <kind> when the exchange failed; SIZE is the response body size.

  --json             One JSON object per completed exchange (JSON Lines)
  --all-events       Also print started/updated events (JSON: {"event": ..., "exchange": ...})
  --count N          Exit 0 after N completed exchanges
  --timeout SECONDS  Stop after SECONDS: exit 0, or 1 if --count was given and not reached

${FILTER_USAGE}
The helper applies filters, so only matching exchanges are sent (and counted by --count).

Exits 0 on SIGINT/SIGTERM, 1 if the helper goes away.`,
  flags: {
    'all-events': { type: 'boolean' },
    count: { type: 'string' },
    timeout: { type: 'string' },
    ...FILTER_FLAGS,
  },
  async run(ctx, args) {
    expectPositionals(args, 0, 0, '');
    const allEvents = boolFlag(args, 'all-events');
    const countText = stringFlag(args, 'count');
    const count = countText === undefined ? undefined : parseInteger('count', countText);
    if (count === 0) throw new UsageError('--count must be at least 1');
    const timeoutText = stringFlag(args, 'timeout');
    const timeoutS = timeoutText === undefined ? undefined : parseSeconds('timeout', timeoutText);
    const filter = filterFromArgs(args);

    const client = await ctx.connect();
    const print = (event: ExchangeEvent, exchange: Exchange) => {
      if (ctx.json) ctx.print(jsonLine(allEvents ? { event, exchange } : exchange));
      else ctx.print(`${formatTailLine(exchange, allEvents ? event : undefined)}\n`);
    };

    let completed = 0;
    const cleanups: Array<() => void> = [];
    const done = new Promise<number>((resolve, reject) => {
      const finish = (outcome: number | Error) => {
        for (const cleanup of cleanups.splice(0)) cleanup();
        if (typeof outcome === 'number') resolve(outcome);
        else reject(outcome);
      };
      // Listen before subscribing so no notification can slip between the two.
      cleanups.push(
        client.onExchange((event, exchange) => {
          if (event !== 'completed') {
            if (allEvents) print(event, exchange);
            return;
          }
          print(event, exchange);
          completed++;
          if (count !== undefined && completed >= count) finish(0);
        }),
        client.onError((err) => ctx.warn(`warning: ${err.message}\n`)),
        // On stderr, so stdout stays one line (or JSON object) per exchange.
        client.onCaptureStatus((status) => ctx.warn(`${describeCaptureChange(status)}\n`)),
        client.onClose((reason) => finish(new ConnectionClosedError(`tproxy-helper went away: ${reason.message}`, { cause: reason }))),
      );
      if (ctx.io.onSignal) cleanups.push(ctx.io.onSignal(() => finish(0)));
      if (timeoutS !== undefined) {
        const timer = setTimeout(() => {
          if (count === undefined) finish(0);
          else finish(new Error(`tail: --timeout ${timeoutS}s reached after ${completed} of ${count} exchanges`));
        }, timeoutS * 1000);
        cleanups.push(() => clearTimeout(timer));
      }
    });
    // `done` may reject (helper gone) while the subscribe call is still pending; this marks it
    // handled so Node does not report it, and the subscribe error below is what gets thrown.
    done.catch(() => undefined);
    try {
      await client.call(methods.exchangesSubscribe, filter ? { filter } : {});
    } catch (err) {
      for (const cleanup of cleanups.splice(0)) cleanup();
      throw err;
    }
    return done;
  },
};
