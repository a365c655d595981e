/**
 * `tproxyctl run [options] -- CMD [ARGS...]`: capture only CMD's traffic (and its children's).
 *
 *   1. start CMD held before exec: `/bin/sh -c 'read -r _ <&3 || exit 125; exec 3<&-; exec "$@"'`
 *      with fd 3 a pipe from us, stdio inherited, and the environment plus ca.get's `env` (so
 *      runtimes with their own CA stores trust the helper's CA);
 *   2. `capture.run { pid }`: the helper checks the pid is our child, moves it into a fresh cgroup
 *      and starts a capture scoped to that cgroup (and, for an operator, to its own uid);
 *   3. write a newline to fd 3: the wrapper execs CMD, which is already in the cgroup, so nothing it
 *      or its children connect to escapes the scope (and nothing outside it is captured);
 *   4. when CMD exits, `capture.runEnd` stops that capture and removes the cgroup; we print a
 *      one-line summary on stderr and exit with CMD's status (128+N when killed by signal N).
 * If we die instead, fd 3 closes (a CMD not yet released exits 125 without running) and the helper
 * ends the run when our connection closes. stdout stays CMD's: nothing of ours is written there.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import type { Writable } from 'node:stream';
import { methods, type CaptureRunEndResult, type CaptureStartParams } from '@tproxy/protocol';
import { UsageError, stringFlag, type Args, type Command } from '../command.js';
import { escapeInline, jsonLine } from '../output.js';
import { startCommand, startParams } from './start.js';

/** The shell wrapper: waits for the go-ahead on fd 3 (EOF means "never": exit 125), then becomes CMD. */
export const RUN_WRAPPER = 'read -r _ <&3 || exit 125; exec 3<&-; exec "$@"';
/** Exit status of the wrapper when released without a go-ahead (tproxyctl died or the run failed). */
export const NOT_RELEASED_STATUS = 125;

/** argv of the held child: `$0` is `tproxy-run` (shown by ps and in shell errors), then CMD ARGS. */
export function wrapperArgv(command: readonly string[]): string[] {
  if (command.length === 0 || command[0] === '') throw new UsageError('missing the command to run: tproxyctl run [options] -- CMD [ARGS...]');
  return ['/bin/sh', '-c', RUN_WRAPPER, 'tproxy-run', ...command];
}

/** The shell convention for our own exit status: CMD's code, or 128 + the signal number. */
export function exitStatusOf(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  const n = signal ? constants.signals[signal] : undefined;
  return n !== undefined ? 128 + n : 1;
}

/** capture.run's `capture` params from the flags: start's (with --uid for scope.uids), never --cgroup. */
export function runCaptureParams(args: Args): CaptureStartParams {
  if (stringFlag(args, 'cgroup') !== undefined) throw new UsageError('--cgroup does not apply to run: the helper puts CMD in a cgroup of its own');
  return startParams(args);
}

/** One line for stderr once CMD has exited. */
export function formatRunSummary(command: string, status: number, end: CaptureRunEndResult): string {
  const what = `${end.exchanges} exchange${end.exchanges === 1 ? '' : 's'} captured in cgroup ${end.cgroup}`;
  const rest = end.cgroupRemoved
    ? ''
    : `; processes ${end.remainingPids.join(', ')} outlived it (no longer captured; the helper removes the cgroup once they exit)`;
  return `tproxyctl run: ${escapeInline(command)} exited with status ${status}; ${what}${rest}\n`;
}

function waitExit(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
}

export const runCommand: Command = {
  name: 'run',
  summary: 'Run a command and capture only its traffic (and its children\'s)',
  usage: `Usage: tproxyctl run [options] -- CMD [ARGS...]

Start CMD in a new cgroup and capture only the HTTPS it and its children make, with the CA trusted
through the environment (the variables of 'tproxyctl env'). Ends that capture when CMD exits and
exits with CMD's status (128+N if a signal N killed it). A one-line summary goes to stderr; stdout
is CMD's. Fails if a capture is already running. As a non-root operator, only your own uid's
processes are captured unless the helper's configuration grants you more.

  --uid UID           Also require the socket owner to be UID (repeat or comma-separate)
  --port N            Destination port to intercept; repeat or comma-separate (default 443)
  --no-ipv6           Do not intercept IPv6 destinations
  --listen-port N     Port of the transparent listeners
  --mark N, --bypass-mark N, --mark-mask N, --table N, --body-limit BYTES, --firewall KIND
                      As for 'tproxyctl start'
  --json              Print the summary as JSON (capture.runEnd's result plus "exitStatus") on stderr

SIGTERM is passed on to CMD; Ctrl-C reaches CMD from the terminal. If tproxyctl is killed, the
helper stops the capture and removes the cgroup when the connection closes.`,
  flags: startCommand.flags,
  async run(ctx, args) {
    const command = args.positionals;
    const argv = wrapperArgv(command);
    const capture = runCaptureParams(args);
    const client = await ctx.connect();
    const ca = await client.call(methods.caGet, {});

    const child = spawn(argv[0]!, argv.slice(1), {
      stdio: ['inherit', 'inherit', 'inherit', 'pipe'],
      env: { ...ctx.io.env, ...ca.env },
    });
    const exited = waitExit(child);
    const gate = child.stdio[3] as Writable;
    gate.on('error', () => {
      // The wrapper exited before reading (killed): its exit status says so.
    });
    if (child.pid === undefined) {
      const err = await exited.then(() => new Error('could not start /bin/sh'), (e: Error) => e);
      throw new Error(`cannot start ${escapeInline(command[0]!)}: ${err.message}`);
    }

    let cgroup: string;
    try {
      ({ cgroup } = await client.call(methods.captureRun, { pid: child.pid, capture }));
    } catch (err) {
      // Never release CMD unscoped: closing fd 3 makes the wrapper exit 125 without running it.
      gate.destroy();
      child.kill('SIGKILL');
      await exited.catch(() => undefined);
      throw err;
    }
    const offSignal = ctx.io.onSignal?.((signal?: unknown) => {
      // Ctrl-C already reached CMD (same terminal process group); an explicit SIGTERM is passed on.
      if (signal === 'SIGTERM') child.kill('SIGTERM');
    });
    gate.end('\n');
    const { code, signal } = await exited.finally(() => offSignal?.());
    const status = exitStatusOf(code, signal);
    if (code === NOT_RELEASED_STATUS) ctx.warn(`tproxyctl run: the wrapper exited ${NOT_RELEASED_STATUS}: ${escapeInline(command[0]!)} may not have started\n`);

    let end: CaptureRunEndResult;
    try {
      end = await client.call(methods.captureRunEnd, {});
    } catch (err) {
      ctx.warn(`tproxyctl run: ${escapeInline(command.join(' '))} exited with status ${status}, but ending the run in cgroup ${cgroup} failed: ${escapeInline((err as Error).message)}\n`);
      return status;
    }
    ctx.warn(ctx.json ? jsonLine({ ...end, exitStatus: status }) : formatRunSummary(command.join(' '), status, end));
    return status;
  },
};

