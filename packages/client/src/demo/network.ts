/**
 * The demo's network: two throwaway namespaces joined by one veth pair, in the style of WireGuard's
 * netns.sh (and of test/e2e/lib/topology.ts, which the demo does not import: tests are not shipped).
 *
 *  client ns "tpd-c-<pid>"                           upstream ns "tpd-u-<pid>"
 *  (tproxy-helper + its nft rules + traffic)         (the demo HTTPS site)
 *  lo up                                             lo up
 *  veth "tpdc<pid>" 198.18.0.1/24                    veth "tpdu<pid>" 198.18.0.2/24 (+ .4)
 *                   fd00:198:18::1/64 nodad  <-----> fd00:198:18::2/64 nodad (+ ::4)
 *  default via 198.18.0.2 / fd00:198:18::2           default via 198.18.0.1 / fd00:198:18::1
 *
 *  198.18.0.2, fd00:198:18::2  the site: shop.demo, events.demo (cert from the demo site CA), :443
 *  198.18.0.4, fd00:198:18::4  "api.demo": a local address where nothing listens, so connects are
 *                              refused at once and tproxy answers the client with a 502
 *
 * <pid> keeps concurrent runs apart and the veth names within IFNAMSIZ (15 chars). 198.18.0.0/15 is
 * the RFC 2544 benchmarking range and fd00::/8 RFC 4193 ULA: never real destinations.
 * This module owns creating and deleting the namespaces; it never touches the host's network
 * namespace (every command names one with `-n`, and the veth pair is created directly inside the
 * two namespaces). Command lists are pure functions, so they are tested without root.
 */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

/** Every address of the demo network (see the diagram above). */
export const DEMO_ADDRS = {
  client4: '198.18.0.1',
  client6: 'fd00:198:18::1',
  site4: '198.18.0.2',
  site6: 'fd00:198:18::2',
  down4: '198.18.0.4',
  down6: 'fd00:198:18::4',
  prefix4: 24,
  prefix6: 64,
} as const;

/** The names the traffic generator uses; there is no DNS, clients map them to DEMO_ADDRS. */
export const DEMO_HOSTS = { shop: 'shop.demo', api: 'api.demo', events: 'events.demo' } as const;

/** IFNAMSIZ - 1 (linux/if.h): the longest interface name the kernel accepts. */
export const MAX_IFNAME = 15;

export interface DemoNames {
  clientNs: string;
  upstreamNs: string;
  /** Interface names inside clientNs and upstreamNs respectively. */
  clientVeth: string;
  upstreamVeth: string;
}

/** Names for one run; `id` defaults to this process's pid. */
export function demoNames(id: string = String(process.pid)): DemoNames {
  if (!/^[0-9a-z]+$/.test(id)) throw new Error(`demo id must be lowercase alphanumeric, got ${JSON.stringify(id)}`);
  const names = { clientNs: `tpd-c-${id}`, upstreamNs: `tpd-u-${id}`, clientVeth: `tpdc${id}`, upstreamVeth: `tpdu${id}` };
  if (names.clientVeth.length > MAX_IFNAME) throw new Error(`demo id ${id} is too long: veth name ${names.clientVeth} exceeds ${MAX_IFNAME} chars`);
  return names;
}

/** `ip` argv lists (without the leading "ip") that build the network, in order. */
export function setupCommands(n: DemoNames): string[][] {
  const { clientNs: c, upstreamNs: u, clientVeth: cv, upstreamVeth: uv } = n;
  const A = DEMO_ADDRS;
  return [
    ['netns', 'add', c],
    ['netns', 'add', u],
    // Created directly in the two namespaces: the pair never exists in the host namespace.
    ['link', 'add', cv, 'netns', c, 'type', 'veth', 'peer', 'name', uv, 'netns', u],
    ['-n', c, 'link', 'set', 'lo', 'up'],
    ['-n', u, 'link', 'set', 'lo', 'up'],
    ['-n', c, 'addr', 'add', `${A.client4}/${A.prefix4}`, 'dev', cv],
    // nodad: skip Duplicate Address Detection so the address is usable at once (no waiting for
    // "tentative" to clear); nobody else is on this link.
    ['-n', c, 'addr', 'add', `${A.client6}/${A.prefix6}`, 'dev', cv, 'nodad'],
    ['-n', u, 'addr', 'add', `${A.site4}/${A.prefix4}`, 'dev', uv],
    ['-n', u, 'addr', 'add', `${A.down4}/${A.prefix4}`, 'dev', uv],
    ['-n', u, 'addr', 'add', `${A.site6}/${A.prefix6}`, 'dev', uv, 'nodad'],
    ['-n', u, 'addr', 'add', `${A.down6}/${A.prefix6}`, 'dev', uv, 'nodad'],
    ['-n', c, 'link', 'set', cv, 'up'],
    ['-n', u, 'link', 'set', uv, 'up'],
    // Default routes: any other destination also leaves over the veth, and there is no other way out.
    ['-n', c, 'route', 'add', 'default', 'via', A.site4, 'dev', cv],
    ['-n', c, '-6', 'route', 'add', 'default', 'via', A.site6, 'dev', cv],
    ['-n', u, 'route', 'add', 'default', 'via', A.client4, 'dev', uv],
    ['-n', u, '-6', 'route', 'add', 'default', 'via', A.client6, 'dev', uv],
  ];
}

/** `ip` argv lists that delete the network (deleting a namespace also deletes its veth end). */
export function teardownCommands(n: DemoNames): string[][] {
  return [
    ['netns', 'del', n.upstreamNs],
    ['netns', 'del', n.clientNs],
  ];
}

async function ip(args: readonly string[]): Promise<void> {
  try {
    await execFileP('ip', [...args], { timeout: 10_000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(' ')}: ${e.stderr?.trim() || e.message}`);
  }
}

function isGone(message: string): boolean {
  return /No such file|not exist|Invalid netns/i.test(message);
}

/**
 * Builds the network. On failure, the namespaces this call created (and only those: a name that
 * already existed belongs to someone else) are deleted before the error is rethrown.
 * Requires root (CAP_SYS_ADMIN for `ip netns add`, CAP_NET_ADMIN for the links).
 */
export async function createNetwork(n: DemoNames): Promise<void> {
  const created: string[] = [];
  try {
    for (const step of setupCommands(n)) {
      await ip(step);
      if (step[0] === 'netns' && step[1] === 'add' && step[2] !== undefined) created.push(step[2]);
    }
  } catch (err) {
    for (const ns of created.reverse()) await ip(['netns', 'del', ns]).catch(() => undefined);
    throw err;
  }
}

/** Deletes both namespaces; already-gone ones are fine. Rejects with every other failure. */
export async function deleteNetwork(n: DemoNames): Promise<void> {
  const errors: string[] = [];
  for (const step of teardownCommands(n)) {
    await ip(step).catch((err: Error) => {
      if (!isGone(err.message)) errors.push(err.message);
    });
  }
  if (errors.length > 0) throw new Error(errors.join('; '));
}

/** deleteNetwork() for 'exit' hooks: synchronous, bounded, returns the errors instead of throwing. */
export function deleteNetworkSync(n: DemoNames): string[] {
  const errors: string[] = [];
  for (const step of teardownCommands(n)) {
    try {
      execFileSync('ip', step, { timeout: 5000, stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (err) {
      const msg = `${(err as { stderr?: Buffer }).stderr?.toString().trim() || (err as Error).message}`;
      if (!isGone(msg)) errors.push(`ip ${step.join(' ')}: ${msg}`);
    }
  }
  return errors;
}

/** Pids of the processes inside namespace `ns` (`ip netns pids`); empty when it is gone. */
export function netnsPidsSync(ns: string): number[] {
  try {
    const out = execFileSync('ip', ['netns', 'pids', ns], { timeout: 5000, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return out.split(/\s+/).filter(Boolean).map(Number).filter((p) => Number.isSafeInteger(p) && p > 0);
  } catch {
    return [];
  }
}

/** Names in `ip netns list` (first column; later columns are "(id: N)"). */
export async function listNetns(): Promise<string[]> {
  const { stdout } = await execFileP('ip', ['netns', 'list'], { timeout: 10_000, encoding: 'utf8' });
  return stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((name) => name !== '');
}
