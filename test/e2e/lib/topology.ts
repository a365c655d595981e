/**
 * The e2e network: two namespaces joined by one veth pair, in the style of WireGuard's netns.sh.
 *
 *  client ns "tpc-<id>"                           upstream ns "tpu-<id>"
 *  (helper + rules + curl/node clients)           (HTTPS test servers)
 *  lo up                                          lo up
 *  veth "tpc<id>" 198.18.0.1/24                   veth "tpu<id>" 198.18.0.2/24 (+ .3 and .4)
 *                 fd00:198:18::1/64 nodad  <----> fd00:198:18::2/64 nodad (+ ::3 and ::4)
 *  default via 198.18.0.2 / fd00:198:18::2        default via 198.18.0.1 / fd00:198:18::1
 *
 *  198.18.0.2, fd00:198:18::2  "good" upstream: cert from the TEST UPSTREAM CA (certs.ts), port 443
 *  198.18.0.3, fd00:198:18::3  "bad" upstream: self-signed cert for upstream.test, port 443
 *  198.18.0.4, fd00:198:18::4  "down": local address, nothing listens, so connects are refused
 *  198.18.0.5, fd00:198:18::5  HTTP/2 origin (ALPN h2 + http/1.1, gRPC on 50051), good cert; h2.test.ts starts it
 *
 * <id> is this process's pid (plus a counter for a second topology in the same process), so runs
 * never collide and veth names stay within IFNAMSIZ (15 chars). 198.18.0.0/15 is the RFC 2544
 * benchmarking range and fd00::/8 is RFC 4193 ULA: neither can be real destinations.
 *
 * This module owns creating and destroying the namespaces and stopping the processes started
 * through `spawn()` (and any other process still inside them). It must never change the host's
 * own network namespace: every `ip` command names a namespace (`-n`), and the veth pair is created
 * directly inside the two namespaces. Cleanup also runs from process 'exit' and on SIGINT/SIGTERM/
 * SIGHUP (netns.sh's `trap cleanup EXIT`).
 */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { type ProcHandle, type SpawnOptions, spawnInNs } from './proc.js';

const execFileP = promisify(execFile);

/** The TLS name of the test upstream; clients map it with `curl --resolve` or a custom lookup. */
export const UPSTREAM_NAME = 'upstream.test';

/** Every address in the topology (see the diagram at the top of this file). */
export const ADDRS = {
  client4: '198.18.0.1',
  client6: 'fd00:198:18::1',
  good4: '198.18.0.2',
  good6: 'fd00:198:18::2',
  bad4: '198.18.0.3',
  bad6: 'fd00:198:18::3',
  down4: '198.18.0.4',
  down6: 'fd00:198:18::4',
  /** HTTP/2 origin (h2 + http/1.1, plus gRPC on H2_GRPC_PORT), good certificate; started by h2.test.ts. */
  h2v4: '198.18.0.5',
  h2v6: 'fd00:198:18::5',
  prefix4: 24,
  prefix6: 64,
} as const;

export type TopologyAddrs = typeof ADDRS;

export interface Topology {
  /** Suffix shared by all names of this topology. */
  readonly id: string;
  readonly clientNs: string;
  readonly upstreamNs: string;
  /** Interface names inside clientNs and upstreamNs respectively. */
  readonly clientVeth: string;
  readonly upstreamVeth: string;
  readonly addrs: TopologyAddrs;
  /** spawnInNs() whose process destroy() stops (SIGTERM, then SIGKILL). */
  spawn(ns: string, argv: readonly string[], opts?: SpawnOptions): ProcHandle;
  /** Stops tracked processes, kills anything left in the namespaces, deletes both. Idempotent. */
  destroy(): Promise<void>;
}

let counter = 0;
const live = new Set<TopologyImpl>();
let hooksInstalled = false;

async function ip(args: readonly string[]): Promise<string> {
  try {
    const { stdout } = await execFileP('ip', [...args], { timeout: 10_000, encoding: 'utf8' });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(' ')}: ${e.stderr?.trim() || e.message}`);
  }
}

/** Names in `ip netns list` (first column; later columns are "(id: N)"). */
export async function listNetns(): Promise<string[]> {
  const out = await ip(['netns', 'list']);
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n !== '');
}

/** Pids inside a namespace; empty when it is gone. */
function netnsPidsSync(ns: string): number[] {
  try {
    const out = execFileSync('ip', ['netns', 'pids', ns], { timeout: 5000, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return out.split(/\s+/).filter(Boolean).map(Number).filter((p) => Number.isSafeInteger(p) && p > 0);
  } catch {
    return [];
  }
}

function killPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') console.error(`topology cleanup: kill ${pid}: ${(err as Error).message}`);
  }
}

class TopologyImpl implements Topology {
  readonly clientNs: string;
  readonly upstreamNs: string;
  readonly clientVeth: string;
  readonly upstreamVeth: string;
  readonly addrs = ADDRS;
  private readonly procs = new Set<ProcHandle>();
  private readonly created: string[] = [];
  private destroying: Promise<void> | undefined;

  constructor(readonly id: string) {
    this.clientNs = `tpc-${id}`;
    this.upstreamNs = `tpu-${id}`;
    this.clientVeth = `tpc${id}`;
    this.upstreamVeth = `tpu${id}`;
  }

  async build(): Promise<void> {
    const { clientNs: c, upstreamNs: u, clientVeth: cv, upstreamVeth: uv } = this;
    for (const ns of [c, u]) {
      await ip(['netns', 'add', ns]);
      this.created.push(ns);
    }
    // Created directly in the two namespaces: the pair never exists in the host namespace.
    await ip(['link', 'add', cv, 'netns', c, 'type', 'veth', 'peer', 'name', uv, 'netns', u]);
    const steps: string[][] = [
      ['-n', c, 'link', 'set', 'lo', 'up'],
      ['-n', u, 'link', 'set', 'lo', 'up'],
      ['-n', c, 'addr', 'add', `${ADDRS.client4}/${ADDRS.prefix4}`, 'dev', cv],
      // nodad: skip Duplicate Address Detection so the address is usable at once (no polling for
      // "tentative" to clear); there is nobody else on this link to duplicate it.
      ['-n', c, 'addr', 'add', `${ADDRS.client6}/${ADDRS.prefix6}`, 'dev', cv, 'nodad'],
      ...[ADDRS.good4, ADDRS.bad4, ADDRS.down4, ADDRS.h2v4].map((a) => ['-n', u, 'addr', 'add', `${a}/${ADDRS.prefix4}`, 'dev', uv]),
      ...[ADDRS.good6, ADDRS.bad6, ADDRS.down6, ADDRS.h2v6].map((a) => ['-n', u, 'addr', 'add', `${a}/${ADDRS.prefix6}`, 'dev', uv, 'nodad']),
      ['-n', c, 'link', 'set', cv, 'up'],
      ['-n', u, 'link', 'set', uv, 'up'],
      // Default routes: any other destination leaves over the veth too, so the helper's rules see
      // it, and neither namespace has any other way out.
      ['-n', c, 'route', 'add', 'default', 'via', ADDRS.good4, 'dev', cv],
      ['-n', c, '-6', 'route', 'add', 'default', 'via', ADDRS.good6, 'dev', cv],
      ['-n', u, 'route', 'add', 'default', 'via', ADDRS.client4, 'dev', uv],
      ['-n', u, '-6', 'route', 'add', 'default', 'via', ADDRS.client6, 'dev', uv],
    ];
    for (const step of steps) await ip(step);
  }

  spawn(ns: string, argv: readonly string[], opts?: SpawnOptions): ProcHandle {
    if (this.destroying) throw new Error(`topology ${this.id} is being destroyed`);
    if (ns !== this.clientNs && ns !== this.upstreamNs) throw new Error(`${ns} is not part of topology ${this.id}`);
    const handle = spawnInNs(ns, argv, opts);
    this.procs.add(handle);
    return handle;
  }

  destroy(): Promise<void> {
    this.destroying ??= this.teardown();
    return this.destroying;
  }

  private async teardown(): Promise<void> {
    const errors: string[] = [];
    await Promise.all([...this.procs].map((p) => p.stop(3000).catch((e: Error) => errors.push(e.message))));
    for (const ns of [...this.created].reverse()) {
      // Whatever else is still inside (a helper a test forgot, a hung curl): by pid, only ours.
      for (const pid of netnsPidsSync(ns)) killPid(pid, 'SIGKILL');
      try {
        await ip(['netns', 'del', ns]);
      } catch (err) {
        const msg = (err as Error).message;
        if (!/No such file|not exist/i.test(msg)) errors.push(msg);
      }
    }
    this.created.length = 0;
    live.delete(this);
    if (errors.length > 0) throw new Error(`topology ${this.id} cleanup: ${errors.join('; ')}`);
  }

  /** Last-chance cleanup from an 'exit' or signal handler: synchronous, best effort, logged. */
  destroySync(): void {
    for (const p of this.procs) p.kill('SIGKILL');
    for (const ns of [...this.created].reverse()) {
      for (const pid of netnsPidsSync(ns)) killPid(pid, 'SIGKILL');
      try {
        execFileSync('ip', ['netns', 'del', ns], { timeout: 5000, stdio: ['ignore', 'ignore', 'pipe'] });
      } catch (err) {
        console.error(`topology cleanup: ip netns del ${ns}: ${(err as Error).message}`);
      }
    }
    this.created.length = 0;
    live.delete(this);
  }
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  const cleanupAll = () => {
    for (const t of [...live]) t.destroySync();
  };
  process.on('exit', cleanupAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      cleanupAll();
      // Re-raise with the default action so the exit status still says "killed by <signal>".
      process.kill(process.pid, signal);
    });
  }
}

/**
 * Builds the topology in the diagram above. On failure, whatever was created is removed before
 * the error is rethrown. Requires root (CAP_NET_ADMIN + CAP_SYS_ADMIN for `ip netns add`).
 */
export async function createTopology(): Promise<Topology> {
  const id = counter === 0 ? `${process.pid}` : `${process.pid}x${counter}`;
  counter++;
  const topo = new TopologyImpl(id);
  installHooks();
  live.add(topo);
  try {
    await topo.build();
  } catch (err) {
    await topo.destroy().catch((e: Error) => console.error(e.message));
    throw err;
  }
  return topo;
}
