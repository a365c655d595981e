#!/usr/bin/env node
/**
 * tproxyctl: the scriptable CLI for tproxy-helper. This module owns the command table, argv
 * parsing (node:util parseArgs, strict), --help, error printing and exit codes (0 ok, 1 failed,
 * 2 usage). `main(argv, io)` does all of that against injected streams so tests run it in-process;
 * the bottom of the file wires it to the real process when this file is the entry point. The
 * commands themselves live in `commands/`, one per file, and talk only through TproxyClient.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { TproxyClient, resolveSocketPath } from '../rpc/client.js';
import { UsageError, type Args, type Command, type Context, type Io, type Options } from './command.js';
import { caCommand } from './commands/ca.js';
import { clearCommand } from './commands/clear.js';
import { envCommand } from './commands/env.js';
import { exportCommand } from './commands/export.js';
import { getCommand } from './commands/get.js';
import { installCommand } from './commands/install.js';
import { repairCommand } from './commands/repair.js';
import { runCommand } from './commands/run.js';
import { startCommand } from './commands/start.js';
import { statusCommand } from './commands/status.js';
import { stopCommand } from './commands/stop.js';
import { tailCommand } from './commands/tail.js';
import { uninstallCommand } from './commands/uninstall.js';
import { errorToJson, formatError, jsonLine } from './output.js';

export const commands: readonly Command[] = [
  statusCommand,
  repairCommand,
  startCommand,
  stopCommand,
  runCommand,
  tailCommand,
  getCommand,
  exportCommand,
  clearCommand,
  caCommand,
  envCommand,
  installCommand,
  uninstallCommand,
];

const GLOBAL_OPTIONS: Options = {
  json: { type: 'boolean' },
  socket: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};

const GLOBAL_HELP = `Global options:
  --json           Machine-readable output; errors become {"error": {...}} on stderr
  --socket PATH    Helper socket (default: $TPROXY_SOCKET, else /run/tproxy/helper.sock)
  -h, --help       Show help`;

export function overallUsage(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  const list = commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n');
  return `tproxyctl: control tproxy-helper, which intercepts and decrypts this machine's outbound HTTPS

Usage: tproxyctl <command> [options]

Commands:
${list}

${GLOBAL_HELP}

Run 'tproxyctl <command> --help' for a command's options.
Exit status: 0 success, 1 the operation failed, 2 usage error.
`;
}

function commandHelp(command: Command): string {
  return `${command.usage}\n\n${GLOBAL_HELP}\n`;
}

/**
 * The command is the first argument that is not a global flag or a global flag's value, so
 * `tproxyctl --socket /x status` and `tproxyctl status --socket /x` both work.
 */
function findCommand(argv: readonly string[]): number {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') return i + 1 < argv.length ? i + 1 : -1;
    if (arg === '--socket') i++;
    else if (!arg.startsWith('-')) return i;
  }
  return -1;
}

function usageError(io: Io, message: string, command?: Command): number {
  const more = command ? `tproxyctl ${command.name} --help` : 'tproxyctl --help';
  io.stderr.write(`tproxyctl: ${message}\nRun '${more}' for usage.\n`);
  return 2;
}

/** Runs tproxyctl with `argv` (without node and script) and returns the exit code. */
export async function main(argv: readonly string[], io: Io): Promise<number> {
  const index = findCommand(argv);
  const name = index === -1 ? undefined : argv[index];
  if (name === undefined || name === 'help') {
    const topic = name === 'help' ? argv[index + 1] : undefined;
    const target = topic === undefined ? undefined : commands.find((c) => c.name === topic);
    if (topic !== undefined && !target) return usageError(io, `unknown command '${topic}'`);
    if (target) {
      io.stdout.write(commandHelp(target));
      return 0;
    }
    if (name === 'help' || argv.includes('--help') || argv.includes('-h')) {
      io.stdout.write(overallUsage());
      return 0;
    }
    io.stderr.write(overallUsage());
    return 2;
  }
  const command = commands.find((c) => c.name === name);
  if (!command) return usageError(io, `unknown command '${name}'`);

  let args: Args;
  try {
    const rest = [...argv.slice(0, index), ...argv.slice(index + 1)];
    args = parseArgs({ args: rest, options: { ...GLOBAL_OPTIONS, ...command.flags }, allowPositionals: true, strict: true });
  } catch (err) {
    // parseArgs throws TypeErrors with ERR_PARSE_ARGS_* codes for unknown or malformed flags; its
    // unknown-option text is a paragraph about '--', so that one gets a shorter message.
    const e = err as NodeJS.ErrnoException;
    const unknown = e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? /Unknown option '([^']+)'/.exec(e.message)?.[1] : undefined;
    return usageError(io, unknown !== undefined ? `unknown option '${unknown}'` : e.message, command);
  }
  if (args.values.help === true) {
    io.stdout.write(commandHelp(command));
    return 0;
  }

  const json = args.values.json === true;
  const socketPath = resolveSocketPath(typeof args.values.socket === 'string' ? args.values.socket : undefined, io.env);
  let client: TproxyClient | undefined;
  const ctx: Context = {
    io,
    json,
    socketPath,
    async connect() {
      client ??= await TproxyClient.connect({ socketPath });
      return client;
    },
    print: (text) => io.stdout.write(text),
    warn: (text) => io.stderr.write(text),
  };
  try {
    return await command.run(ctx, args);
  } catch (err) {
    if (err instanceof UsageError) return usageError(io, err.message, command);
    io.stderr.write(json ? jsonLine(errorToJson(err)) : formatError(err));
    return 1;
  } finally {
    await client?.close();
  }
}

/** Process wiring: real streams, signal subscription, exit code via process.exitCode so output drains. */
async function runAsProcess(): Promise<void> {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    // `tproxyctl tail | head` closes our stdout: that is the reader being done, not a failure.
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
  const io: Io = {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    onSignal(handler) {
      process.on('SIGINT', handler);
      process.on('SIGTERM', handler);
      return () => {
        process.off('SIGINT', handler);
        process.off('SIGTERM', handler);
      };
    },
  };
  process.exitCode = await main(process.argv.slice(2), io);
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    // realpath: npm links the bin as node_modules/.bin/tproxyctl -> ../@tproxy/client/dist/cli/main.js.
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    // argv[1] need not be a file (node -e, REPL); then this module was imported, not run.
    return false;
  }
}

if (isEntryPoint()) await runAsProcess();
