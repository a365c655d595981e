/**
 * The exchange-filter flags shared by `tproxyctl tail` and `tproxyctl export`: their parseArgs
 * declaration, their help text, and argv → ExchangeFilter. Checked here with the protocol's own
 * schema so a bad flag is a usage error naming the flag, before anything is sent to the helper.
 */
import { ExchangeFilterSchema, type ExchangeFilter, type StatusRange } from '@tproxy/protocol';
import { UsageError, stringFlag, stringsFlag, type Args, type Options } from './command.js';

export const FILTER_FLAGS: Options = {
  host: { type: 'string' },
  method: { type: 'string', multiple: true },
  status: { type: 'string' },
  url: { type: 'string' },
};

export const FILTER_USAGE = `Filters (all given must match):
  --host GLOB        Request host, * and ? wildcards, case-insensitive (*.example.com)
  --method M         HTTP method; repeat the flag or use commas for several (GET,POST)
  --status RANGE     404, 400-599, 4xx, 500- or -299; exchanges without a response never match
  --url TEXT         Case-insensitive text anywhere in the URL`;

const FLAG_OF: Record<string, string> = { host: '--host', method: '--method', status: '--status', text: '--url' };

/** `404`, `400-599`, `4xx`, `500-`, `-299` → an inclusive range. */
export function parseStatusRange(text: string): StatusRange {
  const t = text.trim().toLowerCase();
  const klass = /^([1-9])xx$/.exec(t);
  if (klass) return { min: Number(klass[1]) * 100, max: Number(klass[1]) * 100 + 99 };
  const exact = /^([0-9]{3})$/.exec(t);
  if (exact) return { min: Number(exact[1]), max: Number(exact[1]) };
  const range = /^([0-9]{3})?-([0-9]{3})?$/.exec(t);
  if (range && (range[1] !== undefined || range[2] !== undefined)) {
    return { ...(range[1] !== undefined ? { min: Number(range[1]) } : {}), ...(range[2] !== undefined ? { max: Number(range[2]) } : {}) };
  }
  throw new UsageError(`--status must be a status (404), a class (4xx) or a range (400-599, 500-, -299), got '${text}'`);
}

/** The filter the flags describe, or undefined when none was given. */
export function filterFromArgs(args: Args): ExchangeFilter | undefined {
  const host = stringFlag(args, 'host');
  const methods = stringsFlag(args, 'method').flatMap((m) => m.split(',')).map((m) => m.trim()).filter((m) => m !== '');
  const status = stringFlag(args, 'status');
  const text = stringFlag(args, 'url');
  const raw = {
    ...(host !== undefined ? { host } : {}),
    ...(methods.length === 1 ? { method: methods[0] } : methods.length > 1 ? { method: methods } : {}),
    ...(status !== undefined ? { status: parseStatusRange(status) } : {}),
    ...(text !== undefined ? { text } : {}),
  };
  if (Object.keys(raw).length === 0) return undefined;
  const parsed = ExchangeFilterSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const flag = FLAG_OF[String(issue.path[0])] ?? 'filter';
    throw new UsageError(`${flag}: ${issue.message}`);
  }
  return parsed.data;
}
