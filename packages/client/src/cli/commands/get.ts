/**
 * `tproxyctl get ID`: one captured exchange. The human view (output.ts formatExchangeDetail) shows
 * heads, bodies and trailers with every control character escaped (captured data is untrusted and
 * must not drive the terminal); `--body request|response` writes the raw captured bytes instead,
 * for piping; `--json` prints the raw exchanges.get result (bodies base64).
 */
import { methods } from '@tproxy/protocol';
import { UsageError, expectPositionals, stringFlag, type Command } from '../command.js';
import { formatExchangeDetail, jsonLine } from '../output.js';

function parseId(text: string): number {
  const id = /^[0-9]+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(id) || id < 1) throw new UsageError(`ID must be a positive integer, got '${text}'`);
  return id;
}

export const getCommand: Command = {
  name: 'get',
  summary: 'Show one captured exchange: heads and bodies',
  usage: `Usage: tproxyctl get ID [--json | --body request|response]

Show exchange ID (as printed by \`tproxyctl tail\`): request and response heads, bodies and
trailers, the HTTP/2 stream id, and a WebSocket's messages or an event stream's events. Bodies are
shown as text when they are UTF-8, else as a hex summary; control characters are escaped.

  --body request|response   Write that body's raw captured bytes to stdout (for piping)
  --json                    Print the raw exchanges.get result (bodies base64)`,
  flags: { body: { type: 'string' } },
  async run(ctx, args) {
    expectPositionals(args, 1, 1, 'exchange ID');
    const id = parseId(args.positionals[0]!);
    const body = stringFlag(args, 'body');
    if (body !== undefined && body !== 'request' && body !== 'response') {
      throw new UsageError(`--body must be 'request' or 'response', got '${body}'`);
    }
    if (body !== undefined && ctx.json) throw new UsageError('--body and --json cannot be combined');
    const client = await ctx.connect();
    const detail = await client.call(methods.exchangesGet, { id });
    if (ctx.json) {
      ctx.print(jsonLine(detail));
    } else if (body !== undefined) {
      if (body === 'response' && !detail.exchange.response) {
        throw new Error(`exchange ${id} has no response (state: ${detail.exchange.state})`);
      }
      const info = body === 'request' ? detail.exchange.request.body : detail.exchange.response?.body;
      if (info?.truncated) {
        ctx.warn(`warning: the ${body} body was ${info.size} bytes; only the first ${info.captured} were captured\n`);
      }
      ctx.io.stdout.write(Buffer.from(body === 'request' ? detail.requestBody : detail.responseBody, 'base64'));
    } else {
      ctx.print(formatExchangeDetail(detail));
    }
    return 0;
  },
};
