/**
 * Process attribution: the pure /proc parsers against fixture rows, the lookup against a fake /proc
 * tree in a temp dir (caches, bounds, stale entries), and one live lookup of a loopback client
 * socket in this very process against the real /proc. No root needed.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { constants } from 'node:fs';
import { mkdir, mkdtemp, open, rm, symlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, before, describe, test } from 'node:test';
import { canonicalAddress, decodeProcAddress, findSocket, formatCmdline, parsePasswd, parseProcNetLine, ProcessAttributor } from './attribution.js';

const HEADER = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode';
/** 127.0.0.1:50000 → 192.168.0.34:443, uid 1000, inode 424242 (little-endian host). */
const V4_ROW = '   1: 0100007F:C350 2200A8C0:01BB 01 00000000:00000000 00:00000000 00000000  1000        0 424242 1 0000000000000000 20 4 30 10 -1';
/** [::1]:40000 → [fd00::1:2]:8443, uid 0, inode 77. */
const V6_ROW = '   0: 00000000000000000000000001000000:9C40 000000FD000000000000000002000100:20FB 01 00000000:00000000 00:00000000 00000000     0        0 77 1 0000000000000000 20 4 30 10 -1';
/** [::ffff:10.0.0.2]:51000 → [::ffff:10.0.0.1]:443 (a dual-stack socket), uid 33, inode 99. */
const MAPPED_ROW = '   2: 0000000000000000FFFF00000200000A:C738 0000000000000000FFFF00000100000A:01BB 01 00000000:00000000 00:00000000 00000000    33        0 99 1 0000000000000000 20 4 30 10 -1';
/** The same 4-tuple as V4_ROW in TIME_WAIT: no inode. */
const TIME_WAIT_ROW = '   3: 0100007F:C350 2200A8C0:01BB 06 00000000:00000000 03:00000F5A 00000000     0        0 0 3 0000000000000000';

describe('proc net parsers', () => {
  test('addresses: v4, v6, v4-mapped, either byte order, garbage', () => {
    assert.equal(decodeProcAddress('0100007F', 'LE'), '127.0.0.1');
    assert.equal(decodeProcAddress('7F000001', 'BE'), '127.0.0.1');
    assert.equal(decodeProcAddress('00000000000000000000000001000000', 'LE'), '::1');
    assert.equal(decodeProcAddress('00000000000000000000000000000001', 'BE'), '::1');
    assert.equal(decodeProcAddress('000000FD000000000000000002000100', 'LE'), 'fd00::1:2');
    assert.equal(decodeProcAddress('B80D0120000000000000000000000000', 'LE'), '2001:db8::');
    assert.equal(decodeProcAddress('0000000000000000FFFF00000200000A', 'LE'), '10.0.0.2');
    assert.equal(decodeProcAddress('00000000000000000000000000000000', 'LE'), '::');
    assert.equal(decodeProcAddress('0100007', 'LE'), undefined);
    assert.equal(decodeProcAddress('ZZ00007F', 'LE'), undefined);
  });

  test('one row per line; the header and malformed rows give undefined', () => {
    assert.deepEqual(parseProcNetLine(V4_ROW, 'LE'), {
      local: { address: '127.0.0.1', port: 50000 },
      remote: { address: '192.168.0.34', port: 443 },
      state: 1,
      uid: 1000,
      inode: 424242,
    });
    assert.deepEqual(parseProcNetLine(V6_ROW, 'LE'), { local: { address: '::1', port: 40000 }, remote: { address: 'fd00::1:2', port: 8443 }, state: 1, uid: 0, inode: 77 });
    assert.equal(parseProcNetLine(MAPPED_ROW, 'LE')?.local.address, '10.0.0.2');
    assert.equal(parseProcNetLine(HEADER, 'LE'), undefined);
    assert.equal(parseProcNetLine('', 'LE'), undefined);
    assert.equal(parseProcNetLine('   1: 0100007F 2200A8C0:01BB 01 0:0 0:0 0 1000 0 5', 'LE'), undefined);
  });

  test('endpoint addresses are canonicalised like the decoded ones', () => {
    assert.equal(canonicalAddress('::ffff:10.0.0.2'), '10.0.0.2');
    assert.equal(canonicalAddress('FD00:0:0::1:2'), 'fd00::1:2');
    assert.equal(canonicalAddress('fe80::1%eth0'), 'fe80::1');
    assert.equal(canonicalAddress('::ffff:a00:2'), '10.0.0.2');
    assert.equal(canonicalAddress('1.2.3.4'), '1.2.3.4');
    assert.equal(canonicalAddress('not:an:address::x'), undefined);
  });

  test('findSocket matches local and remote exactly, prefers a live row over TIME_WAIT', () => {
    const table = [HEADER, TIME_WAIT_ROW, V4_ROW, V6_ROW, MAPPED_ROW, ''].join('\n');
    const c = { address: '127.0.0.1', port: 50000 };
    const s = { address: '192.168.0.34', port: 443 };
    assert.equal(findSocket(table, c, s, 'LE')?.inode, 424242);
    // The helper's own accepted socket is the same 4-tuple reversed: never matched.
    assert.equal(findSocket(table, s, c, 'LE'), undefined);
    assert.equal(findSocket([HEADER, TIME_WAIT_ROW].join('\n'), c, s, 'LE')?.inode, 0);
    assert.equal(findSocket(table, { address: '::1', port: 40000 }, { address: 'fd00:0::1:2', port: 8443 }, 'LE')?.inode, 77);
    assert.equal(findSocket(table, { address: '10.0.0.2', port: 51000 }, { address: '10.0.0.1', port: 443 }, 'LE')?.uid, 33);
  });

  test('cmdline and passwd', () => {
    assert.equal(formatCmdline(Buffer.from('curl\0-s\0https://x/\0')), 'curl -s https://x/');
    assert.equal(formatCmdline(Buffer.alloc(0)), '');
    const long = formatCmdline(Buffer.from(`node\0${'a'.repeat(5000)}\0`));
    assert.equal(long.length, 1025);
    assert.ok(long.endsWith('…'));
    const users = parsePasswd('root:x:0:0:root:/root:/bin/bash\n# comment\nalice:x:1000:1000::/home/alice:/bin/sh\ndup:x:1000:1000::/:/bin/sh\nbroken\n');
    assert.deepEqual([...users], [[0, 'root'], [1000, 'alice']]);
  });
});

/** Builds a fake /proc: net/tcp{,6}, and per pid a cmdline and fd links. */
class FakeProc {
  constructor(readonly root: string) {}

  static async create(): Promise<FakeProc> {
    const root = await mkdtemp(join(tmpdir(), 'tproxy-fakeproc-'));
    await mkdir(join(root, 'net'));
    await writeFile(join(root, 'net', 'tcp'), `${HEADER}\n`);
    await writeFile(join(root, 'net', 'tcp6'), `${HEADER}\n`);
    return new FakeProc(root);
  }

  async tables(tcp: string[], tcp6: string[] = []): Promise<void> {
    await writeFile(join(this.root, 'net', 'tcp'), [HEADER, ...tcp, ''].join('\n'));
    await writeFile(join(this.root, 'net', 'tcp6'), [HEADER, ...tcp6, ''].join('\n'));
  }

  async process(pid: number, cmdline: string, links: string[], comm = ''): Promise<void> {
    const dir = join(this.root, String(pid));
    await rm(dir, { recursive: true, force: true });
    await mkdir(join(dir, 'fd'), { recursive: true });
    await writeFile(join(dir, 'cmdline'), cmdline);
    await writeFile(join(dir, 'comm'), comm);
    await Promise.all(links.map((target, fd) => symlink(target, join(dir, 'fd', String(fd)))));
  }
}

describe('ProcessAttributor against a fake /proc', () => {
  let proc: FakeProc;
  let passwd: string;
  before(async () => {
    proc = await FakeProc.create();
    passwd = join(proc.root, 'passwd');
    await writeFile(passwd, 'root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n');
  });
  after(async () => rm(proc.root, { recursive: true, force: true }));

  const client = { address: '127.0.0.1', port: 50000 };
  const server = { address: '192.168.0.34', port: 443 };

  test('finds pid, uid, user and command; the second lookup uses the caches', async () => {
    await proc.tables([V4_ROW]);
    await proc.process(10, 'bash\0', ['/dev/null', 'socket:[5]']);
    await proc.process(4321, '/usr/bin/curl\0-s\0https://example.com/\0', ['/dev/pts/0', 'pipe:[3]', 'socket:[424242]']);
    const a = new ProcessAttributor({ procRoot: proc.root, passwdPath: passwd, byteOrder: 'LE', concurrency: 1 });
    assert.deepEqual(await a.lookup(client, server), { pid: 4321, uid: 1000, user: 'alice', command: '/usr/bin/curl -s https://example.com/' });
    assert.equal(a.stats.scans, 1);
    // Highest pid first: curl (4321) was read before bash (10), and the scan stopped there.
    assert.equal(a.stats.fdsRead, 3);
    assert.deepEqual(await a.lookup(client, server), { pid: 4321, uid: 1000, user: 'alice', command: '/usr/bin/curl -s https://example.com/' });
    assert.equal(a.stats.scans, 1);
    assert.equal(a.stats.inodeHits, 1);
    // cmdline read once, during the scan that found the holder; both lookups then use that read.
    assert.equal(a.stats.commandReads, 1);
    assert.equal(a.stats.commandHits, 2);
  });

  test('a stale inode cache entry (fd reused) is dropped and the socket found again', async () => {
    await proc.tables([V4_ROW]);
    await proc.process(4321, 'curl\0', ['socket:[424242]']);
    let now = 0;
    const a = new ProcessAttributor({ procRoot: proc.root, passwdPath: passwd, byteOrder: 'LE', now: () => now });
    assert.equal((await a.lookup(client, server))?.pid, 4321);
    // The process exits; another one, under a new pid, now holds the inode.
    await rm(join(proc.root, '4321'), { recursive: true });
    await proc.process(4400, 'wget\0', ['socket:[1]', 'socket:[424242]']);
    now += 10_000; // past the command TTL
    assert.deepEqual(await a.lookup(client, server), { pid: 4400, uid: 1000, user: 'alice', command: 'wget' });
    assert.equal(a.stats.scans, 2);
    await rm(join(proc.root, '4400'), { recursive: true });
  });

  test('command is re-read after its TTL; kernel-thread-like processes show [comm]', async () => {
    await proc.tables([V4_ROW]);
    await proc.process(500, '', ['socket:[424242]'], 'kworker/0:1\n');
    let now = 0;
    const a = new ProcessAttributor({ procRoot: proc.root, passwdPath: passwd, byteOrder: 'LE', now: () => now, commandTtlMs: 1000 });
    assert.equal((await a.lookup(client, server))?.command, '[kworker/0:1]');
    await writeFile(join(proc.root, '500', 'cmdline'), 'exec-ed\0');
    now += 500;
    assert.equal((await a.lookup(client, server))?.command, '[kworker/0:1]');
    now += 600;
    assert.equal((await a.lookup(client, server))?.command, 'exec-ed');
    await rm(join(proc.root, '500'), { recursive: true });
  });

  test('a client that exits right after its socket was seen keeps its command line, not a zombie\'s [comm]', async (t) => {
    await proc.tables([V4_ROW]);
    await proc.process(4500, 'curl\0-s\0https://example.com/\0', ['socket:[424242]'], 'curl\n');
    // /etc/passwd as a FIFO holds the user-name read open, so the lookup cannot finish before the
    // "exit" below: only a command line read as soon as the holder was seen survives it.
    const fifo = join(proc.root, 'passwd-fifo');
    execFileSync('mkfifo', [fifo]);
    // Non-blocking open: it fails (ENXIO) once no reader is left, instead of hanging the file.
    const release = () => open(fifo, constants.O_WRONLY | constants.O_NONBLOCK).then(async (h) => (await h.write('root:x:0:0::/root:/bin/sh\n'), h.close()), () => undefined);
    t.after(async () => (await release(), await rm(fifo, { force: true })));
    const a = new ProcessAttributor({ procRoot: proc.root, passwdPath: fifo, byteOrder: 'LE' });
    const pending = a.lookup(client, server);
    for (let i = 0; i < 500 && a.stats.commandReads === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(a.stats.commandReads, 1, 'the command line was read while the user name was still pending');
    await writeFile(join(proc.root, '4500', 'cmdline'), ''); // curl exited: a zombie's cmdline reads empty
    await release();
    assert.deepEqual(await pending, { pid: 4500, uid: 1000, command: 'curl -s https://example.com/' });
    await rm(join(proc.root, '4500'), { recursive: true });
  });

  test('a socketTable lookup replaces /proc/net/tcp; after it fails once, the tables are read instead', async () => {
    await proc.tables([]); // empty: only socketTable can know the socket
    await proc.process(4600, 'node\0client.js\0', ['socket:[31337]']);
    const asked: string[] = [];
    let failing = false;
    const socketTable = (l: { address: string; port: number }, r: { address: string; port: number }) => {
      asked.push(`${l.address}:${l.port}>${r.address}:${r.port}`);
      if (failing) throw new Error('EOPNOTSUPP');
      return l.port === client.port ? { uid: 1000, inode: 31337, state: 1 } : null;
    };
    const a = new ProcessAttributor({ procRoot: proc.root, passwdPath: passwd, byteOrder: 'LE', socketTable });
    // A v4-mapped address is asked for in its v4 form, as sock_diag wants it.
    assert.deepEqual(await a.lookup({ address: '::ffff:127.0.0.1', port: client.port }, server), { pid: 4600, uid: 1000, user: 'alice', command: 'node client.js' });
    assert.deepEqual(asked, ['127.0.0.1:50000>192.168.0.34:443']);
    assert.equal(await a.lookup({ ...client, port: 50001 }, server), undefined, 'null: no such socket');
    assert.equal(a.stats.socketTableHits, 2);
    failing = true;
    await proc.tables([V4_ROW]);
    await proc.process(4321, 'curl\0', ['socket:[424242]']);
    assert.equal((await a.lookup(client, server))?.pid, 4321, 'the /proc tables answer after a failure');
    assert.equal((await a.lookup(client, server))?.pid, 4321);
    assert.equal(asked.length, 3, 'a failed socketTable is not asked again');
    await rm(join(proc.root, '4600'), { recursive: true });
    await rm(join(proc.root, '4321'), { recursive: true });
  });

  test('a new socket of a recently attributed process is found without a full scan', async () => {
    const row2 = V4_ROW.replace('C350', 'C351').replace('424242', '424243');
    await proc.tables([V4_ROW]);
    await proc.process(10, 'bash\0', ['socket:[5]']);
    await proc.process(4700, 'h2load\0', ['/dev/null', 'socket:[424242]']);
    const a = new ProcessAttributor({ procRoot: proc.root, passwdPath: passwd, byteOrder: 'LE' });
    assert.equal((await a.lookup(client, server))?.pid, 4700);
    assert.equal(a.stats.scans, 1);
    // The same process opens another connection.
    await proc.tables([V4_ROW, row2]);
    await symlink('socket:[424243]', join(proc.root, '4700', 'fd', '2'));
    assert.deepEqual(await a.lookup({ ...client, port: 50001 }, server), { pid: 4700, uid: 1000, user: 'alice', command: 'h2load' });
    assert.equal(a.stats.scans, 1, 'found among the recent pids, no second scan');
    await rm(join(proc.root, '4700'), { recursive: true });
    await rm(join(proc.root, '10'), { recursive: true });
  });

  test('v6 and dual-stack v4-mapped sockets are found in tcp6', async () => {
    await proc.tables([], [V6_ROW, MAPPED_ROW]);
    await proc.process(600, 'node\0app.js\0', ['socket:[77]', 'socket:[99]']);
    const a = new ProcessAttributor({ procRoot: proc.root, passwdPath: passwd, byteOrder: 'LE' });
    assert.deepEqual(await a.lookup({ address: '::1', port: 40000 }, { address: 'fd00::1:2', port: 8443 }), { pid: 600, uid: 0, user: 'root', command: 'node app.js' });
    assert.deepEqual(await a.lookup({ address: '10.0.0.2', port: 51000 }, { address: '10.0.0.1', port: 443 }), { pid: 600, uid: 33, command: 'node app.js' });
    await rm(join(proc.root, '600'), { recursive: true });
  });

  test('bounds: past maxFds, or with no holder, only the uid is reported; no row means undefined', async () => {
    await proc.tables([V4_ROW]);
    await proc.process(900, 'busy\0', Array.from({ length: 50 }, (_, i) => `socket:[${1000 + i}]`));
    await proc.process(20, 'curl\0', ['socket:[424242]']);
    const capped = new ProcessAttributor({ procRoot: proc.root, passwdPath: passwd, byteOrder: 'LE', maxFds: 10, concurrency: 1 });
    assert.deepEqual(await capped.lookup(client, server), { uid: 1000, user: 'alice' });
    assert.ok(capped.stats.fdsRead <= 10, `read ${capped.stats.fdsRead}`);
    const unbounded = new ProcessAttributor({ procRoot: proc.root, passwdPath: passwd, byteOrder: 'LE' });
    assert.equal((await unbounded.lookup(client, server))?.pid, 20);
    // The time budget: a clock already past the deadline scans nothing.
    let t = 0;
    const late = new ProcessAttributor({ procRoot: proc.root, passwdPath: passwd, byteOrder: 'LE', budgetMs: 5, now: () => (t += 10) });
    assert.deepEqual(await late.lookup(client, server), { uid: 1000, user: 'alice' });
    assert.equal(late.stats.fdsRead, 0);
    assert.equal(await unbounded.lookup({ address: '127.0.0.1', port: 1 }, server), undefined);
    const noProc = new ProcessAttributor({ procRoot: join(proc.root, 'missing'), passwdPath: passwd });
    assert.equal(await noProc.lookup(client, server), undefined);
    await rm(join(proc.root, '900'), { recursive: true });
    await rm(join(proc.root, '20'), { recursive: true });
  });

  test('concurrent lookups share one scan', async () => {
    const row2 = V4_ROW.replace('C350', 'C351').replace('424242', '424243');
    await proc.tables([V4_ROW, row2]);
    await proc.process(700, 'a\0', ['socket:[424242]']);
    await proc.process(800, 'b\0', ['socket:[424243]']);
    const a = new ProcessAttributor({ procRoot: proc.root, passwdPath: passwd, byteOrder: 'LE' });
    const [x, y] = await Promise.all([a.lookup(client, server), a.lookup({ ...client, port: 50001 }, server)]);
    assert.equal(x?.pid, 700);
    assert.equal(y?.pid, 800);
    assert.ok(a.stats.scans <= 2, `scans ${a.stats.scans}`);
  });
});

describe('ProcessAttributor against the real /proc', () => {
  test('a loopback client socket in this process is attributed to this process', async (t) => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
    const sock = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    await new Promise<void>((resolve) => sock.once('connect', resolve));
    const peer = await accepted;
    t.after(() => {
      sock.destroy();
      peer.destroy();
      server.close();
    });
    const a = new ProcessAttributor();
    // Seen from the accepting side, exactly as the engine sees an intercepted connection.
    const local = { address: peer.remoteAddress!, port: peer.remotePort! };
    const remote = { address: peer.localAddress!, port: peer.localPort! };
    const t0 = performance.now();
    const info = await a.lookup(local, remote);
    const cold = performance.now() - t0;
    assert.equal(info?.pid, process.pid);
    assert.equal(info?.uid, process.getuid!());
    assert.ok(info?.command?.includes('node'), info?.command);
    const t1 = performance.now();
    assert.equal((await a.lookup(local, remote))?.pid, process.pid);
    const warm = performance.now() - t1;
    t.diagnostic(`cold lookup ${cold.toFixed(1)} ms (${a.stats.fdsRead} fds read), cached ${warm.toFixed(2)} ms`);
  });
});
