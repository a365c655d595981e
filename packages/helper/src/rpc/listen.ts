/**
 * Creates the RPC socket when the helper is started by hand (systemd socket activation hands us an
 * fd instead): refuse if another helper answers on the path, remove a stale file, create the parent
 * directory root-owned 0755, bind under umask 0177 so the socket is born 0600 (no window in which
 * it is world-connectable), then chown it to the operator uid when one is allowed.
 */
import { chownSync, mkdirSync, statSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { dirname } from 'node:path';

export class SocketInUseError extends Error {
  override readonly name = 'SocketInUseError';
}

/** Resolves true when something accepts connections on `path`. */
function isLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect(path);
    const done = (live: boolean) => {
      probe.destroy();
      resolve(live);
    };
    probe.once('connect', () => done(true));
    probe.once('error', () => done(false));
    probe.setTimeout(1000, () => done(false));
  });
}

export async function listenUnix(server: net.Server, path: string, ownerUid?: number): Promise<void> {
  let kind: 'none' | 'socket' | 'other' = 'none';
  try {
    kind = statSync(path).isSocket() ? 'socket' : 'other';
  } catch {
    kind = 'none';
  }
  if (kind === 'other') throw new SocketInUseError(`${path} exists and is not a socket; refusing to replace it (pass --socket PATH)`);
  if (kind === 'socket') {
    if (await isLive(path)) throw new SocketInUseError(`another tproxy-helper is already serving ${path}; stop it first (or pass --socket PATH)`);
    unlinkSync(path);
  }
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  const previous = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } finally {
    process.umask(previous);
  }
  if (ownerUid !== undefined) chownSync(path, ownerUid, -1);
}
