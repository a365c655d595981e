/**
 * The contract between `main.ts` and the files in `commands/`: what a subcommand declares (name,
 * summary, usage text, its own flags) and what it receives (a Context holding the I/O streams and a
 * lazily connected TproxyClient). Commands return an exit code or throw: UsageError means exit 2,
 * anything else exit 1. This module also holds the small argument parsers the commands share; it
 * does no I/O itself.
 */
import type { ParseArgsConfig } from 'node:util';
import type { TproxyClient } from '../rpc/client.js';

/** Where a run of tproxyctl reads and writes; the bin passes process streams, tests pass buffers. */
export interface Io {
  stdout: { write(chunk: string | Uint8Array): unknown };
  stderr: { write(chunk: string): unknown };
  env: Record<string, string | undefined>;
  /**
   * Runs `handler` on SIGINT/SIGTERM until the returned function is called. Only long-running
   * commands (tail) subscribe, so every other command keeps the default "signal kills" behaviour.
   */
  onSignal?: (handler: () => void) => () => void;
}

export interface Context {
  readonly io: Io;
  /** `--json`: machine-readable output on stdout, errors as `{"error": {...}}` on stderr. */
  readonly json: boolean;
  /** The helper socket this run talks to (`--socket`, `$TPROXY_SOCKET`, or the default). */
  readonly socketPath: string;
  /** Connects on first use and returns the same client afterwards; main closes it. */
  connect(): Promise<TproxyClient>;
  /** Writes text to stdout as is (callers end lines themselves). */
  print(text: string): void;
  /** Writes text to stderr as is. */
  warn(text: string): void;
}

export type Options = NonNullable<ParseArgsConfig['options']>;

export interface Args {
  values: Record<string, string | boolean | Array<string | boolean> | undefined>;
  positionals: string[];
}

export interface Command {
  readonly name: string;
  /** One line for the command list. */
  readonly summary: string;
  /** Full `--help` text for this command, without the global options. */
  readonly usage: string;
  /** Flags beyond the global ones (--json, --socket, --help), in node:util parseArgs form. */
  readonly flags: Options;
  run(ctx: Context, args: Args): Promise<number>;
}

/** Bad command line: main prints it with a pointer to --help and exits 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export function stringFlag(args: Args, name: string): string | undefined {
  const v = args.values[name];
  return typeof v === 'string' ? v : undefined;
}

export function stringsFlag(args: Args, name: string): string[] {
  const v = args.values[name];
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : typeof v === 'string' ? [v] : [];
}

export function boolFlag(args: Args, name: string): boolean {
  return args.values[name] === true;
}

/**
 * A non-negative integer given as decimal or `0x` hex (marks are conventionally written in hex).
 * Only the syntax is checked here; ranges are the helper's to judge, and it names the field.
 */
export function parseInteger(flag: string, text: string): number {
  const t = text.trim();
  const value = /^0x[0-9a-f]+$/i.test(t) ? Number.parseInt(t.slice(2), 16) : /^[0-9]+$/.test(t) ? Number(t) : Number.NaN;
  if (!Number.isSafeInteger(value)) {
    throw new UsageError(`--${flag}: expected a number (decimal or 0x hex), got '${text}'`);
  }
  return value;
}

/** A positive number of seconds, fractions allowed (`--timeout 0.5`). */
export function parseSeconds(flag: string, text: string): number {
  const value = Number(text);
  if (!/^[0-9]*\.?[0-9]+$/.test(text.trim()) || !(value > 0)) {
    throw new UsageError(`--${flag}: expected a positive number of seconds, got '${text}'`);
  }
  return value;
}

/** Throws a UsageError unless the command got between min and max positionals. */
export function expectPositionals(args: Args, min: number, max: number, what: string): void {
  if (args.positionals.length < min) throw new UsageError(`missing ${what}`);
  if (args.positionals.length > max) throw new UsageError(`unexpected argument '${args.positionals[max]}'`);
}
