/**
 * What the two kernel-test children (netns-child.ts for nft, iptables-netns-child.ts) share: a
 * command runner that returns errors as text, a bounded TCP connect, and the native addon loader.
 * Test support only; the children run inside throwaway network namespaces.
 */
import { createConnection } from 'node:net';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ExecError, realExec } from '../exec.js';

/** Runs a command and returns its stdout, or `ERROR: <stderr>`: snapshots record failures as text. */
export async function sh(file: string, ...args: string[]): Promise<string> {
  try {
    return (await realExec.run(file, args)).stdout;
  } catch (err) {
    return `ERROR: ${err instanceof ExecError ? err.stderr.trim() : String(err)}`;
  }
}

/** Resolves 'connected', a Node error code, or 'timeout'; never hangs longer than timeoutMs. */
export function tryConnect(host: string, port: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    const s = createConnection({ host, port });
    const timer = setTimeout(() => {
      s.destroy();
      resolve('timeout');
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.destroy();
      resolve('connected');
    });
    s.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(err.code ?? err.message);
    });
  });
}

/** The two addon calls the traffic check needs (see native/lib/index.ts NativeNet). */
export interface TrafficNative {
  createTransparentListener(ip: string, port: number): number;
  connectMarked(ip: string, port: number, mark: number, timeoutMs: number): Promise<number>;
}
type LoadNative = () => { native: TrafficNative | null; reason?: string };

/**
 * The addon's front door: the built package when it exports loadNative, else its TypeScript source
 * through tsx (the package's dist can lag behind while native/ is being developed). Any failure
 * just skips the traffic check, with the reason.
 */
export async function loadAddon(): Promise<{ native: TrafficNative | null; reason?: string }> {
  const candidates = ['@tproxy/native', pathToFileURL(fileURLToPath(new URL('../../../../native/lib/index.ts', import.meta.url))).href];
  const reasons: string[] = [];
  for (const spec of candidates) {
    try {
      const mod = (await import(spec)) as { loadNative?: LoadNative };
      if (typeof mod.loadNative === 'function') return mod.loadNative();
      reasons.push(`${spec}: no loadNative export`);
    } catch (err) {
      reasons.push(`${spec}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return { native: null, reason: reasons.join('; ') };
}
