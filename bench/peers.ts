/**
 * The benchmark's peers: mitmproxy (Debian's mitmdump, transparent mode behind nat REDIRECT) and
 * sslsplit (Debian's sslsplit, TPROXY engine), run in the client namespace beside tproxy-helper so
 * the same workloads can go through each of them. This module owns starting each peer, its own
 * nft table (added when the peer's runs start, deleted when they end, so at most one interceptor
 * steers at a time) and the counter that proves a run really went through the peer. It never
 * touches the host's namespace: every command runs inside the topology's client namespace.
 *
 * Both peers run as uid 65534 (nobody) and their rules skip that uid, which is how their own
 * upstream connections escape interception (tproxy marks its sockets with SO_MARK instead).
 * Both verify the upstream certificate against the bench's test CA, like tproxy does.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { which } from '../test/e2e/lib/preflight.js';
import { runCommand, runInNs, waitForListen, type ProcHandle } from '../test/e2e/lib/proc.js';
import type { Topology } from '../test/e2e/lib/topology.js';

/** The uid both peers run as; their rules `return` for it. */
const PEER_UID = 65534;
/** The upstream the workloads use: only this prefix and port are steered. */
const STEER = 'ip daddr 198.18.0.0/24 tcp dport 443';
const MITM_PORT = 8080;
const SSLSPLIT_PORT = 8444;
/** fwmark and routing table for sslsplit's TPROXY path; tproxy uses 0x2333 and 233. */
const SSLSPLIT_MARK = '0x4d1';
const SSLSPLIT_TABLE = '4001';

export type PeerName = 'mitmproxy' | 'sslsplit';

export interface Peer {
  name: PeerName;
  /** Version line for RESULTS.md. */
  version: string;
  /** One line on how it runs, for RESULTS.md. */
  setup: string;
  proc: ProcHandle;
  /** Installs the steering rules (idempotent). */
  enable(): Promise<void>;
  /** Removes them (idempotent). */
  disable(): Promise<void>;
  /** Connections steered to the peer so far (nft counter on the rule that matches new connections). */
  steered(): Promise<number>;
}

/** Why a peer is not in the table (missing package, failed start). */
export interface PeerUnavailable {
  name: PeerName;
  reason: string;
}

async function nft(ns: string, script: string): Promise<void> {
  const r = await runInNs(ns, ['nft', '-f', '-'], { input: script, timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`nft -f: ${r.stderr.trim()}\n${script}`);
}

async function run(ns: string, argv: string[]): Promise<string> {
  const r = await runInNs(ns, argv, { timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** Packets counted by the named counter in `table` (nft prints "counter packets N bytes M"). */
async function counterPackets(ns: string, family: string, table: string): Promise<number> {
  const out = await run(ns, ['nft', 'list', 'table', family, table]);
  const m = /counter packets (\d+)/.exec(out);
  return m ? Number(m[1]) : 0;
}

function tableToggle(ns: string, family: string, table: string, body: string, routing?: { add: string[][]; del: string[][] }): Pick<Peer, 'enable' | 'disable' | 'steered'> {
  let on = false;
  // Each enable() creates the table (and its counter) afresh: a running total carries the count over.
  let total = 0;
  return {
    async enable() {
      if (on) return;
      await nft(ns, `table ${family} ${table} {}\ndelete table ${family} ${table}\ntable ${family} ${table} {\n${body}\n}\n`);
      for (const argv of routing?.add ?? []) await run(ns, argv);
      on = true;
    },
    async disable() {
      if (!on) return;
      total += await counterPackets(ns, family, table);
      await nft(ns, `delete table ${family} ${table}\n`);
      for (const argv of routing?.del ?? []) await runInNs(ns, argv, { timeoutMs: 10_000 });
      on = false;
    },
    async steered() {
      return total + (on ? await counterPackets(ns, family, table) : 0);
    },
  };
}

async function versionOf(argv: string[]): Promise<string> {
  const r = await runCommand(argv, { timeoutMs: 20_000 }).catch(() => undefined);
  return (r ? `${r.stdout}${r.stderr}` : '').trim().split('\n')[0] ?? '?';
}

/**
 * mitmdump in transparent mode: `nat output` REDIRECTs new connections to 127.0.0.1:8080, and
 * mitmproxy reads the original destination with SO_ORIGINAL_DST. `-q` and termlog at error: no
 * per-flow output (tproxy records each exchange in memory; mitmdump only keeps the flow in flight).
 */
export async function startMitmproxy(topo: Topology, dir: string, upstreamCaPem: string): Promise<Peer> {
  const confdir = join(dir, 'mitmproxy');
  await runCommand(['install', '-d', '-o', String(PEER_UID), '-g', String(PEER_UID), '-m', '0700', confdir]);
  const argv = [
    'setpriv', `--reuid=${PEER_UID}`, `--regid=${PEER_UID}`, '--clear-groups', '--',
    'mitmdump', '-q', '--mode', 'transparent', '--listen-host', '127.0.0.1', '--listen-port', String(MITM_PORT),
    '--set', `confdir=${confdir}`, '--set', `ssl_verify_upstream_trusted_ca=${upstreamCaPem}`, '--set', 'termlog_verbosity=error',
    // Without it mitmproxy buffers each whole body before relaying it: 1.25 MB/s and 520 MiB RSS
    // for a 128 MiB download here. Streamed beyond 1 MiB, as tproxy relays (and caps its copy).
    '--set', 'stream_large_bodies=1m',
  ];
  const proc = topo.spawn(topo.clientNs, argv, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: confdir, LANG: 'C.UTF-8' } });
  try {
    await waitForListen(topo.clientNs, MITM_PORT, 'tcp', 60_000, { addresses: ['127.0.0.1'] });
  } catch (err) {
    const out = proc.output();
    await proc.stop();
    throw new Error(`mitmdump did not listen: ${(err as Error).message.split('\n')[0]}; ${(out.stderr + out.stdout).trim().slice(-500)}`);
  }
  const body = `  chain output {
    type nat hook output priority -100; policy accept;
    meta skuid ${PEER_UID} return
    ${STEER} ct state new counter redirect to :${MITM_PORT}
  }`;
  return {
    name: 'mitmproxy',
    version: await versionOf(['mitmdump', '--version']),
    setup: `mitmdump --mode transparent -q --set stream_large_bodies=1m as uid ${PEER_UID}; nft nat output REDIRECT to 127.0.0.1:${MITM_PORT}; upstream verified against the test CA (ssl_verify_upstream_trusted_ca)`,
    proc,
    ...tableToggle(topo.clientNs, 'ip', 'bench_mitmproxy', body),
  };
}

/**
 * sslsplit with its TPROXY NAT engine, the same steering as tproxy's: marked in the output route
 * hook, routed to lo by a policy rule, and tproxy'd in prerouting to an IP_TRANSPARENT listener.
 * Proxyspec `ssl` (a decrypting TLS relay): the `https` type rewrites headers and turns keep-alive
 * off (sslsplit(1)), which would make the keep-alive workloads measure new connections. It logs
 * nothing (no -l/-S), verifies the upstream (VerifyPeer, with SSL_CERT_FILE = the test CA) and
 * forges leaves with its default per-run RSA-2048 key, signed by its own CA.
 */
export async function startSslsplit(topo: Topology, dir: string, upstreamCaPem: string): Promise<Peer> {
  const caKey = join(dir, 'sslsplit-ca.key');
  const caCrt = join(dir, 'sslsplit-ca.crt');
  const gen = await runCommand(
    ['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '7', '-subj', '/CN=sslsplit bench CA', '-keyout', caKey, '-out', caCrt],
    { timeoutMs: 30_000 },
  );
  if (gen.code !== 0) throw new Error(`openssl req (sslsplit CA): ${gen.stderr}`);
  const conf = join(dir, 'sslsplit.conf');
  await writeFile(conf, 'VerifyPeer yes\n');
  const argv = ['sslsplit', '-f', conf, '-k', caKey, '-c', caCrt, '-u', 'nobody', 'ssl', '127.0.0.1', String(SSLSPLIT_PORT), 'tproxy'];
  const proc = topo.spawn(topo.clientNs, argv, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', SSL_CERT_FILE: upstreamCaPem } });
  try {
    await waitForListen(topo.clientNs, SSLSPLIT_PORT, 'tcp', 20_000, { addresses: ['127.0.0.1'] });
  } catch (err) {
    const out = proc.output();
    await proc.stop();
    throw new Error(`sslsplit did not listen: ${(err as Error).message.split('\n')[0]}; ${(out.stderr + out.stdout).trim().slice(-500)}`);
  }
  const body = `  chain output {
    type route hook output priority mangle; policy accept;
    meta skuid ${PEER_UID} return
    ${STEER} ct state new counter ct mark set ${SSLSPLIT_MARK}
    ct mark ${SSLSPLIT_MARK} meta mark set ${SSLSPLIT_MARK}
  }
  chain prerouting {
    type filter hook prerouting priority mangle; policy accept;
    iifname "lo" ${STEER} meta mark ${SSLSPLIT_MARK} tproxy to 127.0.0.1:${SSLSPLIT_PORT} accept
  }`;
  const routing = {
    add: [
      ['ip', '-4', 'rule', 'add', 'fwmark', SSLSPLIT_MARK, 'lookup', SSLSPLIT_TABLE],
      ['ip', '-4', 'route', 'add', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', SSLSPLIT_TABLE],
    ],
    del: [
      ['ip', '-4', 'rule', 'del', 'fwmark', SSLSPLIT_MARK, 'lookup', SSLSPLIT_TABLE],
      ['ip', '-4', 'route', 'flush', 'table', SSLSPLIT_TABLE],
    ],
  };
  return {
    name: 'sslsplit',
    version: await versionOf(['sslsplit', '-V']),
    setup: `sslsplit ssl 127.0.0.1:${SSLSPLIT_PORT} tproxy, -u nobody, VerifyPeer yes, no logging; nft mark + ip rule + tproxy (as tproxy's own rules)`,
    proc,
    ...tableToggle(topo.clientNs, 'ip', 'bench_sslsplit', body, routing),
  };
}

/** Starts the peers whose programs exist; each one that cannot run is reported with the reason. */
export async function startPeers(topo: Topology, dir: string, upstreamCaPem: string, wanted: readonly PeerName[]): Promise<{ peers: Peer[]; unavailable: PeerUnavailable[] }> {
  const peers: Peer[] = [];
  const unavailable: PeerUnavailable[] = [];
  const starters: Record<PeerName, [string, (t: Topology, d: string, ca: string) => Promise<Peer>, string]> = {
    mitmproxy: ['mitmdump', startMitmproxy, 'mitmproxy'],
    sslsplit: ['sslsplit', startSslsplit, 'sslsplit'],
  };
  for (const name of wanted) {
    const [bin, start, pkg] = starters[name];
    if (which(bin) === undefined) {
      unavailable.push({ name, reason: `${bin} not installed (Debian package ${pkg}; bench/run.sh installs it as root)` });
      continue;
    }
    try {
      peers.push(await start(topo, dir, upstreamCaPem));
    } catch (err) {
      unavailable.push({ name, reason: (err as Error).message.split('\n').slice(0, 3).join(' ') });
    }
  }
  return { peers, unavailable };
}
