/**
 * Process attribution: which local program opened an intercepted connection. With TPROXY the
 * client's socket is local, its local address is the exchange's `client` endpoint and its remote
 * the original destination, so its row in /proc/net/tcp{,6} gives the socket's inode and uid, and
 * the process holding `socket:[inode]` among /proc/<pid>/fd/* gives the pid and command line.
 * The parsers at the top are pure; `ProcessAttributor` owns all the /proc I/O (async only, bounded
 * in time and in fds read, cached), never throws and never blocks the event loop for long. It does
 * not decide what to intercept and knows nothing of HTTP: the engine starts a lookup per accepted
 * connection and the relay attaches the result to that connection's exchanges.
 */
import { readdirSync, readlinkSync } from 'node:fs';
import { readdir, readFile, readlink } from 'node:fs/promises';
import { endianness } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { PROCESS_COMMAND_MAX, type Endpoint, type ProcessInfo } from '@tproxy/protocol';

// ---------------------------------------------------------------------------------------------
// Pure parsers

/** One row of /proc/net/tcp or /proc/net/tcp6 (see proc_net_tcp(5) / Documentation/networking/proc_net_tcp.rst). */
export interface ProcNetEntry {
  local: Endpoint;
  remote: Endpoint;
  /** TCP state as the kernel numbers it (1 ESTABLISHED, 6 TIME_WAIT, 10 LISTEN, ...). */
  state: number;
  uid: number;
  /** 0 for sockets no longer attached to a file (TIME_WAIT, orphans). */
  inode: number;
}

/** `::ffff:0:0/96`: an IPv4 peer of a dual-stack socket (RFC 4291 §2.5.5.2). */
const V4_MAPPED_PREFIX = '00000000000000000000ffff';

/** Hex word as the kernel prints a 32-bit value in host order (`%08X`) → its 4 bytes in memory order. */
function hostWordBytes(hex8: string, order: 'LE' | 'BE'): string {
  return order === 'BE' ? hex8 : hex8.slice(6, 8) + hex8.slice(4, 6) + hex8.slice(2, 4) + hex8.slice(0, 2);
}

function v4FromHex(bytesHex: string): string {
  return [0, 2, 4, 6].map((i) => parseInt(bytesHex.slice(i, i + 2), 16)).join('.');
}

/**
 * Canonical text for an IPv6 address given as 32 hex digits in network order: RFC 5952 compressed
 * lowercase (the WHATWG URL serializer implements exactly that, and Node prints addresses the same way).
 */
function v6FromHex(bytesHex: string): string {
  const groups = Array.from({ length: 8 }, (_, i) => parseInt(bytesHex.slice(i * 4, i * 4 + 4), 16).toString(16));
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}

/**
 * Decodes an address column of /proc/net/tcp (8 hex digits) or tcp6 (32): the kernel prints each
 * 32-bit word of the network-order address as a host-order integer, so on little-endian machines
 * every word reads byte-reversed. v4-mapped v6 addresses come out as plain IPv4, the way the engine
 * reports endpoints (engine.ts normalizeAddress).
 */
export function decodeProcAddress(hex: string, order: 'LE' | 'BE' = endianness()): string | undefined {
  if (!/^[0-9A-Fa-f]+$/.test(hex)) return undefined;
  if (hex.length === 8) return v4FromHex(hostWordBytes(hex, order));
  if (hex.length !== 32) return undefined;
  const bytes = [0, 8, 16, 24].map((i) => hostWordBytes(hex.slice(i, i + 8), order)).join('').toLowerCase();
  if (bytes.startsWith(V4_MAPPED_PREFIX)) return v4FromHex(bytes.slice(24));
  return v6FromHex(bytes);
}

function decodeProcEndpoint(text: string | undefined, order: 'LE' | 'BE'): Endpoint | undefined {
  const [addr, port, extra] = (text ?? '').split(':');
  if (addr === undefined || port === undefined || extra !== undefined || !/^[0-9A-Fa-f]{4}$/.test(port)) return undefined;
  const address = decodeProcAddress(addr, order);
  return address === undefined ? undefined : { address, port: parseInt(port, 16) };
}

/** Parses one data row; the header line and anything malformed give `undefined`. */
export function parseProcNetLine(line: string, order: 'LE' | 'BE' = endianness()): ProcNetEntry | undefined {
  // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
  const f = line.trim().split(/\s+/);
  if (f.length < 10 || !/^\d+:$/.test(f[0]!)) return undefined;
  const local = decodeProcEndpoint(f[1], order);
  const remote = decodeProcEndpoint(f[2], order);
  const state = parseInt(f[3]!, 16);
  const uid = Number(f[7]);
  const inode = Number(f[9]);
  if (!local || !remote || !Number.isInteger(state) || !Number.isInteger(uid) || !Number.isInteger(inode)) return undefined;
  return { local, remote, state, uid, inode };
}

/**
 * An endpoint address in the form decodeProcAddress produces: v4-mapped → IPv4, IPv6 canonical,
 * zone id dropped (the socket tables do not carry it). `undefined` for something that is no address.
 */
export function canonicalAddress(address: string): string | undefined {
  const bare = address.replace(/%.*$/, '');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(bare);
  if (mapped) return mapped[1];
  if (!bare.includes(':')) return bare;
  try {
    const host = new URL(`http://[${bare}]/`).hostname.slice(1, -1);
    const v4 = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(host);
    if (!v4) return host;
    const hi = parseInt(v4[1]!, 16);
    const lo = parseInt(v4[2]!, 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  } catch {
    return undefined;
  }
}

/**
 * The row of the socket whose local end is `local` and remote end `remote`, from the text of
 * /proc/net/tcp or tcp6. Rows still attached to a file (inode ≠ 0) win over TIME_WAIT leftovers.
 */
export function findSocket(table: string, local: Endpoint, remote: Endpoint, order: 'LE' | 'BE' = endianness()): ProcNetEntry | undefined {
  const la = canonicalAddress(local.address);
  const ra = canonicalAddress(remote.address);
  if (la === undefined || ra === undefined) return undefined;
  let found: ProcNetEntry | undefined;
  for (const line of table.split('\n')) {
    const e = parseProcNetLine(line, order);
    if (!e || e.local.port !== local.port || e.remote.port !== remote.port || e.local.address !== la || e.remote.address !== ra) continue;
    if (e.inode !== 0) return e;
    found ??= e;
  }
  return found;
}

/** `/proc/<pid>/cmdline` bytes → one line: NUL-separated argv joined with spaces, bounded. */
export function formatCmdline(raw: Buffer): string {
  const text = raw.toString('utf8').replace(/\0+$/, '').split('\0').join(' ');
  return text.length > PROCESS_COMMAND_MAX ? `${text.slice(0, PROCESS_COMMAND_MAX)}…` : text;
}

/** uid → name from the text of /etc/passwd (`name:x:uid:gid:...`); the first entry for a uid wins, as getpwuid does. */
export function parsePasswd(text: string): Map<number, string> {
  const users = new Map<number, string>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const [name, , uid] = line.split(':');
    const n = Number(uid);
    if (name && uid !== undefined && uid !== '' && Number.isInteger(n) && !users.has(n)) users.set(n, name);
  }
  return users;
}

// ---------------------------------------------------------------------------------------------
// I/O: the lookup with its caches

/**
 * An exact socket lookup by 4-tuple (sock_diag, see @tproxy/native findTcpSocket): null when no
 * such socket exists; throws when the kernel cannot answer (then /proc/net/tcp{,6} is read).
 */
export type SocketTableLookup = (local: Endpoint, remote: Endpoint) => { uid: number; inode: number; state: number } | null;

export interface AttributionOptions {
  /** Where procfs is mounted; tests point it at a fake tree. */
  procRoot?: string;
  /**
   * Finds the socket without reading /proc/net/tcp{,6}, whose text grows with every socket of
   * the namespace (thousands of TIME_WAIT rows under load) and was parsed per connection.
   */
  socketTable?: SocketTableLookup;
  passwdPath?: string;
  /** A lookup gives up on finding the pid after this long and reports the uid alone. */
  budgetMs?: number;
  /** At most this many fd links are read per scan of /proc/<pid>/fd. */
  maxFds?: number;
  /** How long a pid's command line is reused before /proc/<pid>/cmdline is read again. */
  commandTtlMs?: number;
  /** How long the parsed /etc/passwd is reused. */
  passwdTtlMs?: number;
  /** Processes whose fd directories are read at the same time during a scan. */
  concurrency?: number;
  /** Byte order of the machine whose /proc is read (the tables print host-order words). */
  byteOrder?: 'LE' | 'BE';
  now?: () => number;
}

/**
 * 1 s of wall time: a full scan of a few thousand processes takes ~350 ms on an idle 2-core box
 * (attribution.test.ts), and a loaded one (a build, a benchmark) can take several times that. The
 * lookup never delays traffic (exchanges recorded meanwhile are updated when it resolves), so the
 * budget only bounds work, and a tighter one made attribution silently drop to uid-only under load.
 */
const BUDGET_MS = 1_000;
/** A busy desktop has ~50k open fds; past that a scan stops and reports the uid alone. */
const MAX_FDS = 50_000;
/** Short: a pid may exec another program or be reused, and re-reading cmdline is one small read. */
const COMMAND_TTL_MS = 2_000;
const PASSWD_TTL_MS = 30_000;
/** Parallel fd-directory reads: enough to keep libuv's 4 threads busy without flooding them. */
const CONCURRENCY = 8;
/** Bounds on the caches so a long run cannot grow them without limit. */
const MAX_INODES = 16_384;
const MAX_COMMANDS = 1_024;
/** How many recently attributed pids are scanned first (a browser opens many connections). */
const RECENT_PIDS = 32;
/** Fd links read synchronously from those pids per lookup: ~2 µs each, so at most ~1 ms of loop time. */
const RECENT_SCAN_MAX_FDS = 512;

const SOCKET_LINK = /^socket:\[(\d+)\]$/;

interface Holder {
  pid: number;
  fd: string;
}

/** Counters for tests and cost measurement. */
export interface AttributionStats {
  lookups: number;
  scans: number;
  fdsRead: number;
  inodeHits: number;
  commandHits: number;
  /** Reads of /proc/<pid>/cmdline. */
  commandReads: number;
  /** Sockets looked up through `socketTable` instead of /proc/net/tcp{,6}. */
  socketTableHits: number;
}

function setBounded<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  map.delete(key);
  map.set(key, value);
  while (map.size > max) map.delete(map.keys().next().value as K);
}

export class ProcessAttributor {
  readonly stats: AttributionStats = { lookups: 0, scans: 0, fdsRead: 0, inodeHits: 0, commandHits: 0, commandReads: 0, socketTableHits: 0 };
  private readonly root: string;
  private readonly opts: Required<Omit<AttributionOptions, 'procRoot' | 'socketTable'>>;
  /** Dropped after its first failure (no tcp_diag in this kernel): /proc answers from then on. */
  private socketTable: SocketTableLookup | undefined;
  private readonly holders = new Map<number, Holder>();
  private readonly commands = new Map<number, { command: string | undefined; at: number }>();
  private readonly recent: number[] = [];
  private passwd: { users: Map<number, string>; at: number } | undefined;
  private scan: Promise<void> | undefined;
  /** Inodes some lookup waits for; a running scan stops as soon as none is left. */
  private readonly wanted = new Set<number>();

  constructor(options: AttributionOptions = {}) {
    this.root = options.procRoot ?? '/proc';
    this.socketTable = options.socketTable;
    this.opts = {
      passwdPath: options.passwdPath ?? '/etc/passwd',
      budgetMs: options.budgetMs ?? BUDGET_MS,
      maxFds: options.maxFds ?? MAX_FDS,
      commandTtlMs: options.commandTtlMs ?? COMMAND_TTL_MS,
      passwdTtlMs: options.passwdTtlMs ?? PASSWD_TTL_MS,
      concurrency: options.concurrency ?? CONCURRENCY,
      byteOrder: options.byteOrder ?? endianness(),
      now: options.now ?? (() => performance.now()),
    };
  }

  /**
   * The process whose socket has local end `local` and remote end `remote`. Resolves `undefined`
   * when no such socket is in the tables; with only `uid` (and `user`) when the holder was not found
   * within the bounds. Never rejects.
   */
  async lookup(local: Endpoint, remote: Endpoint): Promise<ProcessInfo | undefined> {
    this.stats.lookups++;
    const deadline = this.opts.now() + this.opts.budgetMs;
    try {
      const entry = await this.socketEntry(local, remote);
      if (!entry) return undefined;
      // The command line is read as soon as the pid is known, not after the user name.
      const found = entry.inode ? this.pidFor(entry.inode, deadline).then(async (pid) => (pid === undefined ? undefined : { pid, command: await this.command(pid) })) : undefined;
      const [holder, user] = await Promise.all([found, this.userName(entry.uid)]);
      const pid = holder?.pid;
      const command = holder?.command;
      return {
        ...(pid !== undefined ? { pid } : {}),
        uid: entry.uid,
        ...(user !== undefined ? { user } : {}),
        ...(command !== undefined ? { command } : {}),
      };
    } catch {
      // procfs missing or unreadable: attribution is best effort and never fails an exchange.
      return undefined;
    }
  }

  private async socketEntry(local: Endpoint, remote: Endpoint): Promise<ProcNetEntry | undefined> {
    const la = canonicalAddress(local.address);
    const ra = canonicalAddress(remote.address);
    if (this.socketTable && la !== undefined && ra !== undefined && la.includes(':') === ra.includes(':')) {
      try {
        const found = this.socketTable({ address: la, port: local.port }, { address: ra, port: remote.port });
        this.stats.socketTableHits++;
        return found ? { local, remote, ...found } : undefined;
      } catch {
        this.socketTable = undefined;
      }
    }
    // A v4 client may also sit in tcp6 as a dual-stack socket with a v4-mapped address.
    const files = local.address.includes(':') && !/^::ffff:\d/i.test(local.address) ? ['tcp6'] : ['tcp', 'tcp6'];
    for (const file of files) {
      const text = await readFile(join(this.root, 'net', file), 'utf8').catch(() => '');
      const entry = findSocket(text, local, remote, this.opts.byteOrder);
      if (entry) return entry;
    }
    return undefined;
  }

  /** The cached holder if its fd still links to the inode (pids and fds get reused). */
  private async cachedPid(inode: number): Promise<number | undefined> {
    const h = this.holders.get(inode);
    if (!h) return undefined;
    const link = await readlink(join(this.root, String(h.pid), 'fd', h.fd)).catch(() => '');
    if (link === `socket:[${inode}]`) {
      this.stats.inodeHits++;
      return h.pid;
    }
    this.holders.delete(inode);
    return undefined;
  }

  private async pidFor(inode: number, deadline: number): Promise<number | undefined> {
    const cached = await this.cachedPid(inode);
    if (cached !== undefined) return this.remember(cached);
    const quick = this.scanRecent(inode);
    if (quick !== undefined) {
      await this.command(quick); // at once, while the holder is known to be alive (see scanAll)
      return this.remember(quick);
    }
    this.wanted.add(inode);
    try {
      // A scan already running may have passed the holder before this socket existed: wait for it,
      // then run one scan of our own. Every wait ends by the deadline of the scan's starter.
      let ownScan = false;
      while (!ownScan && this.opts.now() < deadline) {
        if (!this.scan) {
          ownScan = true;
          this.scan = this.scanAll(deadline).finally(() => (this.scan = undefined));
        }
        await this.scan;
        const h = this.holders.get(inode);
        if (h) return this.remember(h.pid);
      }
      return undefined;
    } finally {
      this.wanted.delete(inode);
    }
  }

  private remember(pid: number): number {
    const i = this.recent.indexOf(pid);
    if (i >= 0) this.recent.splice(i, 1);
    this.recent.unshift(pid);
    this.recent.length = Math.min(this.recent.length, RECENT_PIDS);
    return pid;
  }

  /** Records `pid`/`fd` as the holder of the socket an fd link names; returns its inode (none for other links). */
  private noteHolder(link: string, pid: number, fd: string): number | undefined {
    const m = SOCKET_LINK.exec(link);
    if (!m) return undefined;
    const inode = Number(m[1]);
    setBounded(this.holders, inode, { pid, fd }, MAX_INODES);
    return inode;
  }

  /**
   * Synchronously reads the fd links of the recently attributed processes (bounded by
   * RECENT_SCAN_MAX_FDS) and returns the one holding `inode`. A client that opens many connections
   * (a browser, a load generator) is found here in well under a millisecond, without the
   * thread-pool round trip per link that the full scan pays.
   */
  private scanRecent(inode: number): number | undefined {
    let read = 0;
    for (const pid of this.recent) {
      const dir = join(this.root, String(pid), 'fd');
      let fds: string[];
      try {
        fds = readdirSync(dir);
      } catch {
        continue; // exited
      }
      for (const fd of fds) {
        if (read++ >= RECENT_SCAN_MAX_FDS) return undefined;
        this.stats.fdsRead++;
        let link: string;
        try {
          link = readlinkSync(join(dir, fd));
        } catch {
          continue;
        }
        if (this.noteHolder(link, pid, fd) === inode) return pid;
      }
    }
    return undefined;
  }

  /**
   * Reads /proc/<pid>/fd/* for every process, recording each socket inode's holder, until every
   * wanted inode is found, the deadline passes or maxFds links were read. Order: recently
   * attributed pids, then the highest pids first (new short-lived clients like curl get new pids).
   */
  private async scanAll(deadline: number): Promise<void> {
    this.stats.scans++;
    const names = await readdir(this.root).catch(() => [] as string[]);
    const all = names.filter((n) => /^\d+$/.test(n)).map(Number);
    const present = new Set(all);
    const order = [...this.recent.filter((p) => present.has(p)), ...all.filter((p) => !this.recent.includes(p)).sort((a, b) => b - a)];
    let read = 0;
    let next = 0;
    const done = () => this.wanted.size === 0 || [...this.wanted].every((i) => this.holders.has(i)) || read >= this.opts.maxFds || this.opts.now() >= deadline;
    const worker = async () => {
      while (next < order.length && !done()) {
        const pid = order[next++]!;
        const dir = join(this.root, String(pid), 'fd');
        const fds = await readdir(dir).catch(() => [] as string[]);
        for (const fd of fds) {
          if (done()) return;
          read++;
          this.stats.fdsRead++;
          const inode = this.noteHolder(await readlink(join(dir, fd)).catch(() => ''), pid, fd);
          if (inode === undefined) continue;
          // Read the command line now, while the holder is known to be alive: a short-lived client
          // (curl) can exit before the lookup gets to it, and a zombie's cmdline reads empty.
          if (this.wanted.has(inode)) await this.command(pid);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, this.opts.concurrency) }, worker));
  }

  private async command(pid: number): Promise<string | undefined> {
    const now = this.opts.now();
    const hit = this.commands.get(pid);
    if (hit && now - hit.at < this.opts.commandTtlMs) {
      this.stats.commandHits++;
      return hit.command;
    }
    const dir = join(this.root, String(pid));
    this.stats.commandReads++;
    let command: string | undefined = formatCmdline(await readFile(join(dir, 'cmdline')).catch(() => Buffer.alloc(0)));
    if (!command) {
      // Kernel threads and zombies have an empty cmdline; ps shows their comm in brackets.
      const comm = (await readFile(join(dir, 'comm'), 'utf8').catch(() => '')).trim();
      command = comm ? `[${comm.slice(0, PROCESS_COMMAND_MAX)}]` : undefined;
    }
    setBounded(this.commands, pid, { command, at: now }, MAX_COMMANDS);
    return command;
  }

  private async userName(uid: number): Promise<string | undefined> {
    const now = this.opts.now();
    if (!this.passwd || now - this.passwd.at >= this.opts.passwdTtlMs) {
      const text = await readFile(this.opts.passwdPath, 'utf8').catch(() => '');
      this.passwd = { users: parsePasswd(text), at: now };
    }
    return this.passwd.users.get(uid);
  }
}

/** A lookup started at accept time, readable synchronously once it settled. */
export interface ProcessLookup {
  /** False until the lookup ended. */
  readonly settled: boolean;
  /** The result once settled (`undefined` also when nothing was found). */
  readonly result: ProcessInfo | undefined;
  /** Resolves with the result; never rejects. */
  readonly done: Promise<ProcessInfo | undefined>;
}

export function trackLookup(promise: Promise<ProcessInfo | undefined>): ProcessLookup {
  const state: { settled: boolean; result: ProcessInfo | undefined; done: Promise<ProcessInfo | undefined> } = {
    settled: false,
    result: undefined,
    done: promise.then(
      (r) => {
        state.settled = true;
        state.result = r;
        return r;
      },
      () => {
        state.settled = true;
        return undefined;
      },
    ),
  };
  return state;
}
