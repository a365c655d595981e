/**
 * `tproxyctl export`: the helper's buffer as HAR 1.2 or JSON Lines, streamed. The helper sends the
 * document in chunks at the pace we read them; each chunk goes straight to stdout or to the output
 * file, so neither side holds the whole document. A file is written under a temporary name in the
 * same directory (0600: captured traffic is sensitive) and renamed into place only once complete,
 * so FILE is never seen half-written; on failure or Ctrl-C the temporary file is removed. The
 * one-line summary goes to stderr, keeping stdout for the document.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { ExchangesExportResult, ExportFormat } from '@tproxy/protocol';
import { formatBytes } from '../../shared/units.js';
import { UsageError, boolFlag, expectPositionals, stringFlag, type Command, type Context } from '../command.js';
import { FILTER_FLAGS, FILTER_USAGE, filterFromArgs } from '../filter-flags.js';
import { jsonLine } from '../output.js';

const FORMAT_NAMES: Record<ExportFormat, string> = { har: 'HAR 1.2', jsonl: 'JSON Lines' };

/** A file that appears at `path` only when committed; mode 0600 from creation on. */
class AtomicFile {
  private constructor(
    private readonly handle: FileHandle,
    readonly tmpPath: string,
    readonly path: string,
  ) {}

  static async create(path: string): Promise<AtomicFile> {
    const tmpPath = join(dirname(path), `.${basename(path)}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
    // 'wx': never follow or reuse an existing file (a planted symlink would redirect the capture).
    const handle = await open(tmpPath, 'wx', 0o600);
    return new AtomicFile(handle, tmpPath, path);
  }

  async write(data: string): Promise<void> {
    await this.handle.write(data);
  }

  async commit(): Promise<void> {
    await this.handle.sync();
    await this.handle.close();
    await rename(this.tmpPath, this.path);
  }

  async discard(): Promise<void> {
    await this.handle.close().catch(() => undefined);
    await unlink(this.tmpPath).catch(() => undefined);
  }
}

/**
 * Writes to stdout and, when the stream says it is full (a slow pipe), waits for 'drain', so the
 * client stops reading and the helper slows down instead of the export piling up in memory.
 */
function writeOut(out: Context['io']['stdout'], data: string): Promise<void> | void {
  if (out.write(data) !== false) return;
  const emitter = out as Partial<Pick<NodeJS.WritableStream, 'once' | 'removeListener'>>;
  if (typeof emitter.once !== 'function') return;
  // 'close' too: a reader that went away (EPIPE) never drains; the next write then fails loudly.
  return new Promise((resolve) => {
    const done = (): void => {
      emitter.removeListener?.('drain', done);
      emitter.removeListener?.('close', done);
      resolve();
    };
    emitter.once!('drain', done);
    emitter.once!('close', done);
  });
}

function summary(ctx: Context, result: ExchangesExportResult, format: ExportFormat, where: string): void {
  if (ctx.json) ctx.warn(jsonLine({ ...result, format, output: where }));
  else ctx.warn(`exported ${result.count} exchange${result.count === 1 ? '' : 's'} (${formatBytes(result.bytes)}, ${FORMAT_NAMES[format]}) to ${where}\n`);
}

export const exportCommand: Command = {
  name: 'export',
  summary: 'Write captured exchanges as HAR 1.2 or JSON Lines',
  usage: `Usage: tproxyctl export --format har|jsonl [--output FILE] [--no-bodies] [filters]

Write the exchanges in the helper's buffer, oldest first, as one HAR 1.2 document or as JSON Lines
(one {"exchange", "requestBody", "responseBody"} object per line, bodies base64, as \`get --json\`).
The helper streams the document; it is written as it arrives. A one-line summary goes to stderr.

  --format har|jsonl   Document format (required)
  -o, --output FILE    Write to FILE (mode 0600, replaced atomically when complete) instead of stdout
  --no-bodies          Leave the captured bodies out

${FILTER_USAGE}

Header values carrying credentials were masked at capture time; bodies were not: treat the
output as sensitive.`,
  flags: {
    format: { type: 'string' },
    output: { type: 'string', short: 'o' },
    'no-bodies': { type: 'boolean' },
    ...FILTER_FLAGS,
  },
  async run(ctx, args) {
    expectPositionals(args, 0, 0, '');
    const format = stringFlag(args, 'format');
    if (format === undefined) throw new UsageError('--format har|jsonl is required');
    if (format !== 'har' && format !== 'jsonl') throw new UsageError(`--format must be 'har' or 'jsonl', got '${format}'`);
    const output = stringFlag(args, 'output');
    if (output === '') throw new UsageError('--output needs a file name (omit it to write to stdout)');
    const filter = filterFromArgs(args);
    const params = { format, includeBodies: !boolFlag(args, 'no-bodies'), ...(filter ? { filter } : {}) } as const;

    const client = await ctx.connect();
    // Ctrl-C closes the connection; the export then fails and the temporary file is removed.
    const offSignal = ctx.io.onSignal?.(() => void client.close());
    let file: AtomicFile | undefined;
    try {
      if (output === undefined) {
        const result = await client.exportExchanges(params, (data) => writeOut(ctx.io.stdout, data));
        summary(ctx, result, format, 'stdout');
        return 0;
      }
      file = await AtomicFile.create(output);
      const target = file;
      const result = await client.exportExchanges(params, (data) => target.write(data));
      await target.commit();
      file = undefined;
      summary(ctx, result, format, output);
      return 0;
    } finally {
      offSignal?.();
      await file?.discard();
    }
  },
};
