/**
 * The host side of install/uninstall: real file writes, real processes (systemctl, id, the helper
 * for --cleanup), and the root check. Kept apart from service-units.ts so that stays pure.
 */
import { spawn, execFile } from 'node:child_process';
import { chmod, rm, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import type { Context } from './command.js';
import type { PlanOps } from './service-units.js';

const execFileP = promisify(execFile);

export function hostOps(ctx: Context): PlanOps {
  return {
    async writeFile(path, content, mode) {
      await writeFile(path, content, { mode });
      await chmod(path, mode); // the mode option does not change an existing file
    },
    async remove(path) {
      await rm(path, { force: true });
    },
    run(argv) {
      return new Promise((resolve) => {
        const [file, ...args] = argv;
        // Output goes to our stderr so stdout stays the command's own report (--json).
        const child = spawn(file!, args, { stdio: ['ignore', 2, 2] });
        child.on('error', (err) => {
          ctx.warn(`${file}: ${err.message}\n`);
          resolve(127);
        });
        child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
      });
    },
    say: (text) => ctx.warn(text),
  };
}

/** Changing systemd units needs root; --dry-run does not. */
export function requireRoot(command: string): void {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new Error(`tproxyctl ${command} changes /etc/systemd/system and needs root: run it with sudo (or add --dry-run to see what it would do)`);
  }
}

/** A user name or numeric uid → uid, via `id -u` (NSS: LDAP and systemd-homed users too). */
export async function resolveUid(user: string): Promise<number> {
  if (/^\d+$/.test(user)) return Number(user);
  try {
    const { stdout } = await execFileP('id', ['-u', '--', user], { timeout: 10_000 });
    const uid = Number(stdout.trim());
    if (!Number.isSafeInteger(uid)) throw new Error(`unexpected output ${JSON.stringify(stdout)}`);
    return uid;
  } catch (err) {
    throw new Error(`--user ${user}: no such user (${((err as { stderr?: string }).stderr ?? (err as Error).message).trim()})`);
  }
}
