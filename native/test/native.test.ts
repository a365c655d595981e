// Tests for @tproxy/native. Unprivileged parts always run: argument validation (against the addon
// when it is built, and against the fake, which must agree), loadNative()'s reasons through an
// injected environment, socketFd, errno errors, SO_PEERCRED over a Unix socket. The privileged
// parts run only as root and only inside a network namespace created here (named after our pid):
// netns-child.ts does the checks in it and reports one JSON line per check. Safety: nothing here
// touches the host's network namespace; the namespace and the child are removed in after(), by
// name and by pid; every wait is bounded.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, openSync, closeSync, readlinkSync, rmSync } from 'node:fs';
import net from 'node:net';
import { constants, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { createFakeNativeNet } from '../lib/fake.js';
import {
  errnoError,
  hasCapNetAdmin,
  isErrnoError,
  loadNative,
  probeNative,
  socketFd,
  type NativeEnvironment,
  type NativeNet,
} from '../lib/index.js';
import { CHECK_NAMES, ipCommands, nftScript, type CheckResult } from './netns-child.js';

const status = loadNative();
const real = status.native;
const isRoot = process.getuid?.() === 0;
const notLoaded = real ? false : `native addon not loaded: ${status.reason ?? 'unknown reason'}`;

// ---------------------------------------------------------------------------------------------
// Argument validation: the same table against the addon and the fake.

type Call = (n: NativeNet) => unknown;
const BAD_CALLS: [string, Call, RegExp][] = [
  ['listener ip not a string', (n) => n.createTransparentListener(123 as unknown as string, 80), /ip must be a string, got 123/],
  ['listener ip not a literal', (n) => n.createTransparentListener('localhost', 80), /ip must be an IPv4 or IPv6 literal, got "localhost"/],
  ['listener ip with v6 scope', (n) => n.createTransparentListener('fe80::1%eth0', 80), /IPv4 or IPv6 literal/],
  ['listener port too big', (n) => n.createTransparentListener('127.0.0.1', 65536), /port must be an integer in \[0, 65535\], got 65536/],
  ['listener port negative', (n) => n.createTransparentListener('127.0.0.1', -1), /port must be an integer/],
  ['listener port fractional', (n) => n.createTransparentListener('127.0.0.1', 80.5), /got 80\.5/],
  ['listener port a string', (n) => n.createTransparentListener('127.0.0.1', '80' as unknown as number), /port must be a number, got "80"/],
  ['listener backlog 0', (n) => n.createTransparentListener('127.0.0.1', 80, 0), /backlog must be an integer/],
  ['connect port 0', (n) => n.connectMarked('127.0.0.1', 0, 1, 100), /port must be an integer in \[1, 65535\]/],
  ['connect mark 0', (n) => n.connectMarked('127.0.0.1', 443, 0, 100), /mark must be an integer in \[1, 4294967295\], got 0/],
  ['connect mark 2^32', (n) => n.connectMarked('127.0.0.1', 443, 2 ** 32, 100), /mark must be an integer/],
  ['connect mark NaN', (n) => n.connectMarked('127.0.0.1', 443, NaN, 100), /got NaN/],
  ['connect timeout 0', (n) => n.connectMarked('127.0.0.1', 443, 1, 0), /timeoutMs must be an integer in \[1, 2147483647\]/],
  ['connect timeout Infinity', (n) => n.connectMarked('127.0.0.1', 443, 1, Infinity), /timeoutMs must be an integer/],
  ['connect to a name', (n) => n.connectMarked('example.com', 443, 1, 100), /IPv4 or IPv6 literal/],
  ['connect to shorthand v4', (n) => n.connectMarked('127.1', 443, 1, 100), /IPv4 or IPv6 literal/],
  ['setSocketMark fd negative', (n) => n.setSocketMark(-1, 1), /fd must be an integer in \[0, 2147483647\], got -1/],
  ['setSocketMark mark negative', (n) => n.setSocketMark(3, -1), /mark must be an integer in \[0, 4294967295\]/],
  ['setSocketMark mark a bigint', (n) => n.setSocketMark(3, 1n as unknown as number), /mark must be a number, got a bigint/],
  ['getSocketMark fd a string', (n) => n.getSocketMark('3' as unknown as number), /fd must be a number, got "3"/],
  ['getPeerCredentials no fd', (n) => (n.getPeerCredentials as (fd?: number) => unknown)(), /fd must be a number, got undefined/],
  ['findTcpSocket localIp not a string', (n) => n.findTcpSocket(1 as unknown as string, 1, '127.0.0.1', 2), /localIp must be a string, got 1/],
  ['findTcpSocket remotePort 0', (n) => n.findTcpSocket('127.0.0.1', 1, '127.0.0.1', 0), /remotePort must be an integer in \[1, 65535\], got 0/],
  ['findTcpSocket a name', (n) => n.findTcpSocket('127.0.0.1', 1, 'localhost', 2), /IPv4 or IPv6 literal, got "localhost"/],
  ['findTcpSocket mixed families', (n) => n.findTcpSocket('127.0.0.1', 1, '::1', 2), /same family/],
];

for (const [name, impl, skip] of [
  ['fake', createFakeNativeNet(), false],
  ['addon', real, notLoaded],
] as const) {
  describe(`argument validation (${name})`, { skip }, () => {
    for (const [label, call, message] of BAD_CALLS) {
      it(`${label} throws a TypeError synchronously`, () => {
        assert.ok(impl);
        assert.throws(() => call(impl), (e: unknown) => {
          assert.ok(e instanceof TypeError, `expected TypeError, got ${String(e)}`);
          assert.match(e.message, message);
          return true;
        });
      });
    }
  });
}

// ---------------------------------------------------------------------------------------------
// loadNative() and its reasons.

const CAP_ALL = 'Name:\tnode\nCapEff:\t000001ffffffffff\n';
const CAP_NONE = 'Name:\tnode\nCapEff:\t0000000000000000\n';

function environment(overrides: Partial<NativeEnvironment>): NativeEnvironment {
  const fullNative = Object.fromEntries(
    ['createTransparentListener', 'connectMarked', 'setSocketMark', 'getSocketMark', 'getPeerCredentials', 'findTcpSocket'].map((k) => [k, () => 0]),
  );
  return {
    platform: 'linux',
    addonPath: '/opt/tproxy/native/build/Release/tproxy_native.node',
    exists: () => true,
    load: () => fullNative,
    readProcStatus: () => CAP_ALL,
    ...overrides,
  };
}

describe('probeNative / loadNative', () => {
  it('says the addon is Linux-only elsewhere', () => {
    assert.deepEqual(probeNative(environment({ platform: 'darwin' })), {
      native: null,
      captureAvailable: false,
      reason: 'tproxy native addon is only built for Linux (this is darwin)',
    });
  });

  it('names the missing file and how to build it', () => {
    const result = probeNative(environment({ exists: () => false }));
    assert.equal(result.native, null);
    assert.equal(
      result.reason,
      'native addon not built: /opt/tproxy/native/build/Release/tproxy_native.node missing; run npm install (needs g++, make, python3)',
    );
  });

  it('reports a load failure with its message', () => {
    const result = probeNative(
      environment({
        load: () => {
          throw new Error('undefined symbol: napi_foo');
        },
      }),
    );
    assert.equal(result.native, null);
    assert.match(result.reason ?? '', /^native addon failed to load from \S+: undefined symbol: napi_foo$/);
  });

  it('refuses a stale build that lacks exports', () => {
    const result = probeNative(environment({ load: () => ({ getPeerCredentials: () => 0 }) }));
    assert.equal(result.native, null);
    assert.match(result.reason ?? '', /lacks createTransparentListener, connectMarked, setSocketMark, getSocketMark, findTcpSocket \(stale build/);
  });

  it('loads but withholds capture without CAP_NET_ADMIN', () => {
    const result = probeNative(environment({ readProcStatus: () => CAP_NONE }));
    assert.ok(result.native);
    assert.equal(result.captureAvailable, false);
    assert.equal(result.reason, 'the helper lacks CAP_NET_ADMIN: run it as root (or with AmbientCapabilities=CAP_NET_ADMIN)');
  });

  it('reports an unreadable or unparseable /proc/self/status', () => {
    const unreadable = probeNative(
      environment({
        readProcStatus: () => {
          throw new Error('EACCES');
        },
      }),
    );
    assert.equal(unreadable.captureAvailable, false);
    assert.match(unreadable.reason ?? '', /could not read \/proc\/self\/status .*EACCES/);
    assert.match(probeNative(environment({ readProcStatus: () => 'Name:\tnode\n' })).reason ?? '', /no CapEff line/);
  });

  it('is available with the addon and CAP_NET_ADMIN, with no reason', () => {
    const result = probeNative(environment({}));
    assert.equal(result.captureAvailable, true);
    assert.equal(result.reason, undefined);
  });

  it('reads bit 12 of CapEff', () => {
    assert.equal(hasCapNetAdmin('CapEff:\t0000000000001000\n'), true);
    assert.equal(hasCapNetAdmin('CapEff:\t0000000000002fff\n'), false);
    assert.equal(hasCapNetAdmin('CapPrm:\t0000000000001000\n'), undefined);
  });

  it('never throws, memoizes, and gives a reason whenever capture is unavailable', () => {
    const first = loadNative();
    assert.equal(loadNative(), first);
    if (!first.captureAvailable) assert.ok(first.reason && first.reason.length > 0);
    else assert.ok(first.native);
  });
});

// ---------------------------------------------------------------------------------------------
// Errors, socketFd, the fake.

describe('errno errors', () => {
  it('isErrnoError accepts the addon shape and nothing else', () => {
    const e = errnoError('ECONNREFUSED', 'connect', '198.18.0.4:443', 'Connection refused');
    assert.equal(e.message, 'connect 198.18.0.4:443: ECONNREFUSED (Connection refused)');
    assert.equal(e.errno, constants.errno.ECONNREFUSED);
    assert.equal(isErrnoError(e), true);
    assert.equal(isErrnoError(new Error('x')), false);
    assert.equal(isErrnoError({ code: 'EPERM', errno: 1, syscall: 'bind', message: 'not an Error' }), false);
    assert.equal(isErrnoError(Object.assign(new Error('x'), { code: 'EPERM', errno: '1', syscall: 'bind' })), false);
  });

  it('EBADF and ENOTSOCK come back named, with errno and syscall', { skip: notLoaded }, () => {
    assert.ok(real);
    // Far above any RLIMIT_NOFILE, so never open.
    assert.throws(() => real.getSocketMark(1_000_000), (e: unknown) => {
      assert.ok(isErrnoError(e));
      assert.equal(e.code, 'EBADF');
      assert.equal(e.errno, constants.errno.EBADF);
      assert.equal(e.syscall, 'getsockopt');
      assert.equal(e.message, 'getsockopt SO_MARK fd 1000000: EBADF (Bad file descriptor)');
      return true;
    });
    const file = openSync(fileURLToPath(import.meta.url), 'r');
    try {
      assert.throws(() => real.getSocketMark(file), { code: 'ENOTSOCK', syscall: 'getsockopt' });
      assert.throws(() => real.getPeerCredentials(file), { code: 'ENOTSOCK', syscall: 'getsockname' });
    } finally {
      closeSync(file);
    }
  });

  it('without CAP_NET_ADMIN the privileged calls fail with EPERM', { skip: isRoot ? 'runs unprivileged only' : notLoaded }, async () => {
    assert.ok(real);
    // Fails at setsockopt, before bind/connect: nothing is bound and no packet is sent.
    assert.throws(() => real.createTransparentListener('127.0.0.1', 0), {
      code: 'EPERM',
      syscall: 'setsockopt',
      message: /^setsockopt IP_TRANSPARENT 127\.0\.0\.1:0: EPERM/,
    });
    await assert.rejects(real.connectMarked('127.0.0.1', 9, 7, 100), { code: 'EPERM', syscall: 'setsockopt' });
  });
});

describe('socketFd', () => {
  it('explains a socket without a handle', () => {
    assert.throws(() => socketFd(new net.Socket()), /socketFd: socket has no handle \(not connected or listening yet/);
    assert.throws(() => socketFd(net.createServer()), /socketFd: server has no handle/);
  });

  it('returns the fd of a listening server and of its connections', async () => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const fd = socketFd(server);
      assert.ok(Number.isInteger(fd) && fd > 2);
      const address = server.address();
      assert.ok(address && typeof address === 'object');
      const client = net.connect(address.port, '127.0.0.1');
      await once(client, 'connect');
      assert.notEqual(socketFd(client), fd);
      client.destroy();
    } finally {
      server.close();
    }
  });
});

describe('fake NativeNet', () => {
  it('records calls, keeps marks, answers configured credentials', () => {
    const fake = createFakeNativeNet({ peerCredentials: (fd) => ({ pid: 1000 + fd, uid: 1000, gid: 1000 }) });
    fake.setSocketMark(7, 0x2a);
    assert.equal(fake.getSocketMark(7), 0x2a);
    assert.equal(fake.getSocketMark(8), 0);
    assert.deepEqual(fake.getPeerCredentials(5), { pid: 1005, uid: 1000, gid: 1000 });
    assert.deepEqual(
      fake.calls.map((c) => c.method),
      ['setSocketMark', 'getSocketMark', 'getSocketMark', 'getPeerCredentials'],
    );
  });

  it('defaults to this process as the peer', () => {
    assert.deepEqual(createFakeNativeNet().getPeerCredentials(3), {
      pid: process.pid,
      uid: process.getuid?.(),
      gid: process.getgid?.(),
    });
  });

  it('fails listener and connect with ENOSYS unless given implementations', async () => {
    const fake = createFakeNativeNet();
    assert.throws(() => fake.createTransparentListener('::1', 8443), {
      code: 'ENOSYS',
      syscall: 'socket',
      message: /^socket \[::1\]:8443: ENOSYS \(fake NativeNet/,
    });
    await assert.rejects(fake.connectMarked('127.0.0.1', 443, 1, 100), { code: 'ENOSYS', syscall: 'connect' });
    const wired = createFakeNativeNet({ createTransparentListener: () => 42, connectMarked: async () => 43 });
    assert.equal(wired.createTransparentListener('127.0.0.1', 8443), 42);
    assert.equal(await wired.connectMarked('127.0.0.1', 443, 1, 100), 43);
  });
});

// ---------------------------------------------------------------------------------------------
// SO_PEERCRED over a real Unix socket (needs no privilege).

describe('getPeerCredentials', { skip: notLoaded }, () => {
  it('returns this process on both ends of a Unix socket', async () => {
    assert.ok(real);
    const dir = mkdtempSync(join(tmpdir(), 'tpn-native-'));
    const path = join(dir, 'peer.sock');
    const server = net.createServer();
    try {
      server.listen(path);
      await once(server, 'listening');
      const accepted = once(server, 'connection') as Promise<[net.Socket]>;
      const client = net.connect(path);
      await once(client, 'connect');
      const [inbound] = await accepted;
      const self = { pid: process.pid, uid: process.getuid?.(), gid: process.getgid?.() };
      assert.deepEqual(real.getPeerCredentials(socketFd(inbound)), self);
      assert.deepEqual(real.getPeerCredentials(socketFd(client)), self);
      client.destroy();
      inbound.destroy();
    } finally {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a TCP socket instead of returning placeholder credentials', async () => {
    assert.ok(real);
    const server = net.createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      assert.throws(() => real.getPeerCredentials(socketFd(server)), {
        name: 'TypeError',
        message: /is not a Unix domain socket \(family 2\)/,
      });
    } finally {
      server.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// sock_diag over real loopback sockets (needs no privilege).

describe('findTcpSocket', { skip: notLoaded }, () => {
  for (const host of ['127.0.0.1', '::1']) {
    it(`finds the client socket of a ${host} connection with its uid and inode, and null once it is gone`, async () => {
      assert.ok(real);
      const server = net.createServer();
      server.listen(0, host);
      await once(server, 'listening');
      try {
        const accepted = once(server, 'connection') as Promise<[net.Socket]>;
        const client = net.connect((server.address() as net.AddressInfo).port, host);
        await once(client, 'connect');
        const [inbound] = await accepted;
        // Seen from the accepting side, as the engine sees an intercepted connection.
        const local = [inbound.remoteAddress!, inbound.remotePort!] as const;
        const remote = [inbound.localAddress!, inbound.localPort!] as const;
        const found = real.findTcpSocket(local[0], local[1], remote[0], remote[1]);
        assert.ok(found, 'the client socket is found');
        assert.equal(found.uid, process.getuid?.());
        assert.equal(found.state, 1, 'ESTABLISHED');
        const fd = socketFd(client);
        assert.equal(readlinkSync(`/proc/self/fd/${fd}`), `socket:[${found.inode}]`, 'the inode is that of the client socket');
        // The mirror 4-tuple is the accepted socket, a different inode.
        const mirror = real.findTcpSocket(remote[0], remote[1], local[0], local[1]);
        assert.equal(readlinkSync(`/proc/self/fd/${socketFd(inbound)}`), `socket:[${mirror?.inode}]`);
        client.destroy();
        inbound.destroy();
        await once(client, 'close');
        const after = real.findTcpSocket(local[0], local[1], remote[0], remote[1]);
        assert.ok(after === null || after.inode === 0, `gone or TIME_WAIT, got ${JSON.stringify(after)}`);
        assert.equal(real.findTcpSocket(host, 1, host, 1), null, 'no such socket');
      } finally {
        server.close();
      }
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Privileged: inside a namespace of our own.

const NAMESPACE = `tpn-native-${process.pid}`;
const CHILD_SCRIPT = fileURLToPath(new URL('./netns-child.ts', import.meta.url));
const REPO_ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
const CHILD_DEADLINE_MS = 90_000;

function toolsMissing(): string | false {
  for (const tool of ['ip', 'nft']) {
    if (spawnSync(tool, ['--version'], { stdio: 'ignore' }).error) return `needs ${tool} (iproute2 / nftables)`;
  }
  return false;
}

const netnsSkip = !isRoot
  ? 'needs root: creates a network namespace for IP_TRANSPARENT, SO_MARK and nft checks'
  : notLoaded || toolsMissing();

/** Runs a command to completion; throws with its stderr on failure. */
function run(cmd: string, args: string[], input?: string): void {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8', timeout: 10_000 });
  if (r.error || r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} failed: ${r.error?.message ?? r.stderr.trim()}`);
  }
}

describe(`inside network namespace ${NAMESPACE} (root)`, { skip: netnsSkip }, () => {
  const results = new Map<string, CheckResult>();
  let childStderr = '';
  let childPid: number | undefined;
  let created = false;

  before(async () => {
    run('ip', ['netns', 'add', NAMESPACE]);
    created = true;
    for (const args of ipCommands()) run('ip', ['-n', NAMESPACE, ...args]);
    run('ip', ['netns', 'exec', NAMESPACE, 'nft', '-f', '-'], nftScript());

    // `ip netns exec` execs the command, so the child's pid is node's own.
    const child = spawn('ip', ['netns', 'exec', NAMESPACE, process.execPath, '--import', 'tsx', CHILD_SCRIPT], {
      cwd: REPO_ROOT,
      env: { ...process.env, TPN_NATIVE_NETNS: NAMESPACE },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    childPid = child.pid;
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (childStderr += chunk));
    const deadline = setTimeout(() => child.kill('SIGKILL'), CHILD_DEADLINE_MS);
    try {
      await once(child, 'close');
    } finally {
      clearTimeout(deadline);
    }
    childPid = undefined;
    for (const line of stdout.split('\n').filter(Boolean)) {
      const result = JSON.parse(line) as CheckResult;
      results.set(result.check, result);
    }
  }, { timeout: CHILD_DEADLINE_MS + 10_000 });

  after(() => {
    if (childPid !== undefined) {
      try {
        process.kill(childPid, 'SIGKILL');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
      }
    }
    if (created) run('ip', ['netns', 'del', NAMESPACE]);
  });

  for (const name of CHECK_NAMES) {
    it(name, () => {
      const result = results.get(name);
      assert.ok(result, `the child reported nothing for this check; its stderr:\n${childStderr}`);
      assert.ok(result.ok, result.detail);
    });
  }
});
