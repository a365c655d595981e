/**
 * The real NssHost: certutil through execFile (no shell) as this very process, with its own
 * environment, and the two file-system facts nss.ts needs. Kept apart so nss.ts stays testable
 * with a fake; this file decides nothing.
 */
import { execFile } from 'node:child_process';
import { mkdir, stat } from 'node:fs/promises';
import { NssCommandError, type NssHost } from './nss.js';

/** certutil on a large database finishes in well under a second; this only bounds a hang. */
const COMMAND_TIMEOUT_MS = 60_000;

export const realNssHost: NssHost = {
  uid: process.getuid?.() ?? 0,
  run(argv, input) {
    const [file, ...args] = argv;
    return new Promise((resolve, reject) => {
      const child = execFile(file!, args, { timeout: COMMAND_TIMEOUT_MS, maxBuffer: 4 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
        if (!err) return resolve({ stdout, stderr });
        const e = err as NodeJS.ErrnoException & { code?: string | number };
        const errno = typeof e.code === 'string' ? e.code : undefined;
        const killed = (err as { killed?: boolean }).killed ? `killed after ${COMMAND_TIMEOUT_MS / 1000} s` : '';
        reject(new NssCommandError(argv, typeof e.code === 'number' ? e.code : child.exitCode, stderr || killed || (errno && errno !== 'ENOENT' ? e.message : ''), errno));
      });
      // certutil may exit before reading stdin (a bad database); its exit status says why.
      child.stdin?.on('error', () => undefined);
      child.stdin?.end(input ?? '');
    });
  },
  async ownerOf(path) {
    try {
      return (await stat(path)).uid;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return null;
      throw err;
    }
  },
  async makePrivateDir(path) {
    await mkdir(path, { recursive: true, mode: 0o700 });
  },
};
