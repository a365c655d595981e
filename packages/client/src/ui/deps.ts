/**
 * Everything tproxy-ui needs from the outside world, injectable so tests run the real App against
 * a fake helper without touching the clock, the cwd, the terminal's clipboard or real files.
 */
import { writeFile as fsWriteFile } from 'node:fs/promises';
import { TproxyClient } from '../rpc/client.js';

export interface UiDeps {
  /** Opens a client on `socketPath` (TproxyClient.connect). */
  connect(socketPath: string): Promise<TproxyClient>;
  now(): number;
  /** Directory exports and curl files are written to. */
  cwd(): string;
  /**
   * Writes a file readable by the user only (captured data may hold secrets). With `exclusive` it
   * fails with EEXIST rather than overwrite.
   */
  writeFile(path: string, data: string, exclusive: boolean): Promise<void>;
  /** Puts text on the clipboard; the default writes an OSC 52 sequence to the terminal. */
  copyToClipboard(text: string): void;
  /** Reconnect backoff: first delay, doubling up to the max. */
  readonly retry: { readonly initialMs: number; readonly maxMs: number };
  /** `capture.status` polling period (interceptCount, external start/stop). */
  readonly pollMs: number;
  /** Exchange notifications are batched for this long before one state update (≤ 10 renders/s). */
  readonly batchMs: number;
  /** Reported as HAR `creator.version`. */
  readonly version: string;
}

/** The reconnect backoff tops out near 2 s: a restarting helper is back within that. */
export const DEFAULT_RETRY = { initialMs: 250, maxMs: 2000 } as const;

export function defaultDeps(copyToClipboard: (text: string) => void): UiDeps {
  return {
    connect: (socketPath) => TproxyClient.connect({ socketPath }),
    now: () => Date.now(),
    cwd: () => process.cwd(),
    writeFile: (path, data, exclusive) => fsWriteFile(path, data, { mode: 0o600, flag: exclusive ? 'wx' : 'w' }),
    copyToClipboard,
    retry: DEFAULT_RETRY,
    pollMs: 1000,
    batchMs: 100,
    version: '0.1.0',
  };
}

/**
 * OSC 52 "set clipboard" (xterm ctlseqs, "Manipulate Selection Data"): `ESC ] 52 ; c ; <base64> BEL`.
 * The payload is base64, so nothing in the copied text can end the sequence early.
 */
export function osc52(text: string): string {
  return `\x1b]52;c;${Buffer.from(text, 'utf8').toString('base64')}\x07`;
}
