/**
 * The persistent-trust record, `<stateDir>/trust.json`: which lasting trust entry `ca.install`
 * made (the OS anchor file) and for which CA serial. It outlives captures
 * and helpers (unlike applied.json, which names only what one capture added and is cleared by
 * stop and repair), so the next helper knows what to keep, what to move to a regenerated CA, and
 * what `ca.uninstall` must remove. Written intent-first by the manager, atomically and 0600; a
 * missing or corrupt file reads as "nothing persistent" (logged). It owns the file only.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { Logger } from '../log.js';

export const TRUST_RECORD_FILE = 'trust.json';
const RECORD_MODE = 0o600;

const TrustRecordSchema = z.object({
  version: z.literal(1),
  /** The persistent OS trust-store anchor, when ca.install made one. */
  persistent: z
    .object({
      /** The anchor file (`tproxy-persistent-<serial><ext>`). */
      path: z.string(),
      /** Serial of the CA it holds; a different current CA means it must be moved. */
      serialHex: z.string(),
      /** argv that refreshes the store it lives in. */
      refresh: z.array(z.string()),
    })
    .optional(),
});

export type TrustRecord = z.infer<typeof TrustRecordSchema>;
export type PersistentAnchor = NonNullable<TrustRecord['persistent']>;

export const emptyTrustRecord = (): TrustRecord => ({ version: 1 });

/**
 * Reads the record synchronously: it is small and read once, when the helper starts, so that
 * capture status is right from the first request.
 */
export function readTrustRecord(stateDir: string, log: Logger): TrustRecord {
  const file = join(stateDir, TRUST_RECORD_FILE);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.error(`reading ${file}: ${(err as Error).message}; assuming no persistent install`);
    return emptyTrustRecord();
  }
  try {
    const parsed = TrustRecordSchema.safeParse(JSON.parse(text));
    if (parsed.success) return parsed.data;
    log.warn(`ignoring corrupt ${file}: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'record'}: ${i.message}`).join('; ')}`);
  } catch (err) {
    log.warn(`ignoring corrupt ${file} (not JSON: ${(err as Error).message})`);
  }
  return emptyTrustRecord();
}

/** Replaces the record atomically (temp file, fsync, rename); an empty record removes the file. */
export async function writeTrustRecord(stateDir: string, record: TrustRecord): Promise<void> {
  const file = join(stateDir, TRUST_RECORD_FILE);
  if (!record.persistent) {
    await rm(file, { force: true });
    return;
  }
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    const fh = await open(tmp, 'wx', RECORD_MODE);
    try {
      await fh.chmod(RECORD_MODE);
      await fh.writeFile(`${JSON.stringify(record, null, 2)}\n`, 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
