/**
 * Starts the test origins of the topology inside its upstream namespace: the "good" server (test-CA
 * certificate) on 198.18.0.2 and fd00:198:18::2, the "bad" one (self-signed) on 198.18.0.3 and
 * fd00:198:18::3, both on port 443. Nothing is started for the "down" addresses. Processes are
 * started through the topology, so its destroy() stops them. Ready means both printed "listening"
 * and `ss` in the namespace shows every address: readiness by polling, never by sleeping.
 */
import { fileURLToPath } from 'node:url';
import type { UpstreamCerts } from './certs.js';
import type { ProcHandle } from './proc.js';
import { waitForListen } from './proc.js';
import type { Topology } from './topology.js';

/** The CLI script (run through tsx, from source). */
export const UPSTREAM_SERVER_SCRIPT = fileURLToPath(new URL('./upstream-server.ts', import.meta.url));

/** The port every test origin listens on. */
export const UPSTREAM_PORT = 443;

/** argv that runs the upstream server script with this Node and this repo's tsx, from any cwd. */
export function upstreamServerArgv(args: readonly string[]): string[] {
  return [process.execPath, '--import', import.meta.resolve('tsx'), UPSTREAM_SERVER_SCRIPT, ...args];
}

export interface Upstreams {
  good: ProcHandle;
  bad: ProcHandle;
}

/** Starts both origins in `topo.upstreamNs` and waits until all four listeners are up. */
export async function startUpstreams(topo: Topology, certs: UpstreamCerts, timeoutMs = 20_000): Promise<Upstreams> {
  const { good4, good6, bad4, bad6 } = topo.addrs;
  const start = (cert: string, key: string, hosts: readonly string[]) =>
    topo.spawn(
      topo.upstreamNs,
      upstreamServerArgv(['--cert', cert, '--key', key, '--port', String(UPSTREAM_PORT), ...hosts.flatMap((h) => ['--host', h])]),
    );
  const good = start(certs.goodCert, certs.goodKey, [good4, good6]);
  const bad = start(certs.badCert, certs.badKey, [bad4, bad6]);
  await Promise.all([good.waitForOutput(/^listening /m, timeoutMs), bad.waitForOutput(/^listening /m, timeoutMs)]);
  await waitForListen(topo.upstreamNs, UPSTREAM_PORT, 'tcp', timeoutMs, { addresses: [good4, good6, bad4, bad6] });
  return { good, bad };
}
