/**
 * The one way the helper runs a system command (nft, ip, update-ca-certificates, ...): an argv
 * array, never a shell, optional stdin, and a thrown ExecError that carries the command's stderr so
 * the caller can wrap it with what it was attempting. Everything that runs commands takes an `Exec`,
 * so tests pass a FakeExec that records argv and stdin and can be told to fail.
 */
import { execFile } from 'node:child_process';

export interface ExecResult {
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  /** Written to the command's stdin. */
  input?: string;
  /** Kill the command after this many milliseconds. Default 30 s. */
  timeoutMs?: number;
}

export interface Exec {
  run(file: string, args: readonly string[], options?: ExecOptions): Promise<ExecResult>;
}

export class ExecError extends Error {
  override readonly name = 'ExecError';
  constructor(
    readonly argv: readonly string[],
    /** Exit status, or null when the command was killed or could not start. */
    readonly exitCode: number | null,
    readonly stderr: string,
    /** Node error code when the command could not start at all (ENOENT: not installed). */
    readonly code?: string,
  ) {
    const what = argv.join(' ');
    const why = code === 'ENOENT' ? 'command not found' : stderr.trim() || `exit status ${exitCode ?? 'unknown (killed)'}`;
    super(`${what}: ${why}`);
  }
}

const DEFAULT_TIMEOUT_MS = 30_000;

export const realExec: Exec = {
  run(file, args, options = {}) {
    return new Promise((resolve, reject) => {
      const child = execFile(
        file,
        [...args],
        { timeout: options.timeoutMs ?? DEFAULT_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' },
        (err, stdout, stderr) => {
          if (!err) return resolve({ stdout, stderr });
          const e = err as NodeJS.ErrnoException & { code?: string | number };
          const exitCode = typeof e.code === 'number' ? e.code : child.exitCode;
          const code = typeof e.code === 'string' ? e.code : undefined;
          reject(new ExecError([file, ...args], exitCode, stderr, code));
        },
      );
      child.stdin?.on('error', () => {
        // The command may exit before reading its stdin (bad flag); the exit status reports that.
      });
      child.stdin?.end(options.input ?? '');
    });
  },
};

/** A recorded call of FakeExec. */
export interface ExecCall {
  argv: string[];
  input?: string;
}

/**
 * Test double: records every call; `failWhen` decides per call whether to fail and with what
 * stderr, `respond` provides stdout.
 */
export class FakeExec implements Exec {
  readonly calls: ExecCall[] = [];
  failWhen: (call: ExecCall) => string | null = () => null;
  respond: (call: ExecCall) => string = () => '';

  async run(file: string, args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    const call: ExecCall = { argv: [file, ...args], ...(options.input !== undefined ? { input: options.input } : {}) };
    this.calls.push(call);
    const stderr = this.failWhen(call);
    if (stderr !== null) throw new ExecError(call.argv, 1, stderr);
    return { stdout: this.respond(call), stderr: '' };
  }

  /** The recorded argv lines joined by spaces, for compact assertions. */
  get commands(): string[] {
    return this.calls.map((c) => c.argv.join(' '));
  }
}
