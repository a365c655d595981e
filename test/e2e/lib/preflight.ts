/**
 * The one call every e2e test file makes before registering tests: enter the trust-store sandbox
 * (re-executing the file there, see sandbox.ts) and check the tools it needs. It answers with a
 * skip reason instead of failing, so an unprivileged `npm test` reports clear skips ("needs root
 * ...") rather than errors. It must run at top level, before any test() call.
 */
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { ensureTrustSandbox } from './sandbox.js';

/** Tools the topology itself needs; test files add their own (curl, update-ca-certificates). */
export const BASE_TOOLS: readonly string[] = ['ip', 'nft', 'ss', 'unshare'];

/** Absolute path of `cmd` on PATH, or undefined. */
export function which(cmd: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, cmd);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not in this directory.
    }
  }
  return undefined;
}

/**
 * Undefined when the file can run (inside the sandbox, all tools present); otherwise the reason to
 * pass to `t.skip()`. Outside the sandbox as root this does not return: the process re-executes.
 */
export async function e2ePreflight(tools: readonly string[] = []): Promise<string | undefined> {
  const sandbox = await ensureTrustSandbox();
  if (!sandbox.inside) return sandbox.reason;
  const missing = [...new Set([...BASE_TOOLS, ...tools])].filter((t) => which(t) === undefined);
  if (missing.length > 0) return `needs ${missing.join(', ')} on PATH`;
  return undefined;
}
