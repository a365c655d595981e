/**
 * What the helper e2e suites assert about the world: which of our steering rules and trust-store
 * entries exist in a namespace, and the captured exchanges as the helper reports them.
 */
import { readdirSync } from 'node:fs';
import { methods, type Exchange, type TproxyClient } from '@tproxy/client';
import { runInNs } from './proc.js';

const ANCHOR_DIR = '/usr/local/share/ca-certificates';

/** Polls exchanges.list until one matches and has finished; bounded in count and time. */
export async function waitForExchange(client: TproxyClient, match: (e: Exchange) => boolean, timeoutMs = 10_000): Promise<Exchange> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 400 && Date.now() < deadline; i++) {
    const { exchanges } = await client.call(methods.exchangesList, { limit: 200 });
    const found = exchanges.find((e) => match(e) && e.state !== 'in-flight');
    if (found) return found;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('no matching finished exchange was captured');
}

export async function ourSteering(ns: string): Promise<string> {
  const parts = await Promise.all([
    runInNs(ns, ['nft', 'list', 'tables']),
    runInNs(ns, ['ip', 'rule', 'show']),
    runInNs(ns, ['ip', '-6', 'rule', 'show']),
    runInNs(ns, ['ip', 'route', 'show', 'table', '233']),
    runInNs(ns, ['ip', '-6', 'route', 'show', 'table', '233']),
  ]);
  return parts
    .map((p) => p.stdout)
    .join('\n')
    .split('\n')
    .filter((l) => /tproxy|0x2333|lookup 233|local/.test(l) && !/lookup local/.test(l))
    .join('\n');
}

export function anchors(): string[] {
  return readdirSync(ANCHOR_DIR).filter((f) => f.startsWith('tproxy'));
}

