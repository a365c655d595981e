/**
 * The applied-state record, `<stateDir>/applied.json`: what this helper has put into the kernel
 * and the trust store, so a restart after a crash (or `tproxy-helper --cleanup`) can remove it.
 * The daemon writes the firewall part BEFORE applying (intent, not outcome): a crash half-way
 * through apply still leaves a record that repair can act on, and revert is idempotent, so
 * reverting something never applied is harmless.
 * Writes are atomic (temp file in the same directory + fsync + rename(2)) and 0600; reads never
 * throw: a missing file is "nothing applied", a corrupt one is logged and treated the same.
 * This module owns the file only; it must not touch the firewall or the trust store itself.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { CaptureConfigSchema } from '@tproxy/protocol';
import type { CaptureConfig } from '@tproxy/protocol';
import { z } from 'zod';
import { createLogger } from '../log.js';
import type { Logger } from '../log.js';

export const RECORD_FILE = 'applied.json';
export const RECORD_VERSION = 1;
/** The record names what to undo on this host; nobody but root needs to read it. */
const RECORD_MODE = 0o600;

const AppliedRecordSchema = z.object({
  version: z.literal(RECORD_VERSION),
  /** pid of the helper that wrote the record; a live pid means the record is not a leftover. */
  pid: z.number().int().positive(),
  /** When that helper started capturing (epoch ms). */
  startedAt: z.number(),
  /** The capture config whose steering rules are (or are about to be) applied. */
  firewall: CaptureConfigSchema.optional(),
  /** The CA file installed into the trust store and the argv that refreshes the store. */
  trust: z.object({ path: z.string(), refresh: z.array(z.string()) }).optional(),
});

export interface AppliedRecord {
  version: typeof RECORD_VERSION;
  pid: number;
  startedAt: number;
  firewall?: CaptureConfig;
  trust?: { path: string; refresh: string[] };
}

/**
 * Fields to change. `firewall` or `trust` present with value `undefined` removes that part (after
 * its revert); `pid`/`startedAt` can be replaced but not removed.
 */
export interface RecordPatch {
  pid?: number;
  startedAt?: number;
  firewall?: CaptureConfig | undefined;
  trust?: AppliedRecord['trust'] | undefined;
}

const REMOVABLE = new Set(['firewall', 'trust']);

export function recordPath(stateDir: string): string {
  return join(stateDir, RECORD_FILE);
}

/** The record, or null when there is none or it cannot be used (logged). Never throws. */
export async function readRecord(stateDir: string, log: Logger = createLogger('firewall/record')): Promise<AppliedRecord | null> {
  const file = recordPath(stateDir);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    log.error(`reading ${file}: ${(err as Error).message}; treating as no record`);
    return null;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    log.warn(`ignoring corrupt ${file} (not JSON: ${(err as Error).message})`);
    return null;
  }
  const parsed = AppliedRecordSchema.safeParse(json);
  if (!parsed.success) {
    log.warn(`ignoring corrupt ${file} (${parsed.error.issues.map((i) => `${i.path.join('.') || 'record'}: ${i.message}`).join('; ')})`);
    return null;
  }
  return parsed.data as AppliedRecord;
}

/** Replaces the record atomically; readers see the old or the new file, never a partial one. */
export async function writeRecord(stateDir: string, rec: AppliedRecord): Promise<void> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const file = recordPath(stateDir);
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    const fh = await open(tmp, 'wx', RECORD_MODE);
    try {
      await fh.writeFile(`${JSON.stringify(rec, null, 2)}\n`, 'utf8');
      // open()'s mode is filtered by the umask; set it explicitly so it is exactly 0600.
      await fh.chmod(RECORD_MODE);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => {
      // The temp file may never have been created; the original error is what matters.
    });
    throw err;
  }
  await syncDir(stateDir);
}

/** Removes the record; no record is fine. */
export async function clearRecord(stateDir: string): Promise<void> {
  try {
    await unlink(recordPath(stateDir));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await syncDir(stateDir);
}

/** Serializes read-modify-write per state dir within this process. */
const pending = new Map<string, Promise<unknown>>();

/**
 * Merges `patch` into the record (creating one for this process when there is none) and writes it.
 * Returns the record as written.
 */
export function updateRecord(stateDir: string, patch: RecordPatch, log?: Logger): Promise<AppliedRecord> {
  const previous = pending.get(stateDir) ?? Promise.resolve();
  const next = previous
    .catch(() => {
      // The previous update's caller already got its error; this update starts fresh.
    })
    .then(async () => {
      const base: AppliedRecord = (await readRecord(stateDir, log)) ?? { version: RECORD_VERSION, pid: process.pid, startedAt: Date.now() };
      const merged: Record<string, unknown> = { ...base };
      for (const [key, value] of Object.entries(patch)) {
        if (value !== undefined) merged[key] = value;
        else if (REMOVABLE.has(key)) delete merged[key];
      }
      const rec = merged as unknown as AppliedRecord;
      await writeRecord(stateDir, rec);
      return rec;
    });
  pending.set(stateDir, next);
  void next.finally(() => {
    if (pending.get(stateDir) === next) pending.delete(stateDir);
  }).catch(() => {
    // Reported to the caller through `next`.
  });
  return next;
}

/** fsync the directory so the rename itself survives a power cut (rename(2), fsync(2) NOTES). */
async function syncDir(dir: string): Promise<void> {
  let fh;
  try {
    fh = await open(dir, 'r');
  } catch (err) {
    // No directory means no record to make durable (clearRecord on a fresh host).
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  try {
    await fh.sync();
  } catch (err) {
    // Some filesystems cannot fsync a directory (EINVAL); the rename is then as durable as it gets.
    if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
  } finally {
    await fh.close();
  }
}
