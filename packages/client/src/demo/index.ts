/**
 * `tproxy-ui --demo` without internet: a local HTTPS site, tproxy-helper and a traffic generator in
 * throwaway network namespaces (network.ts), so the dashboard has real decrypted traffic to show.
 * This module is the composition root: it checks the preconditions, builds everything in order,
 * and owns the one cleanup path (stop(), plus a synchronous last resort on process exit and on
 * SIGINT/SIGTERM/SIGHUP).
 *
 * It must never change the host: it runs only inside the trust-store sandbox (sandbox.ts), so the
 * CA that tproxy-helper installs lands in a private tmpfs copy of the trust store, and namespace
 * names live in a private /run/netns; every `ip` command names a namespace; processes are signalled
 * by the pids we started. It must not write to stdout or stderr (the dashboard owns the terminal):
 * progress goes to `opts.log`, children's output to log files in the temp dir. It never imports
 * helper code: tproxy-helper runs as a process and is driven through TproxyClient.
 */
import { existsSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { methods } from '@tproxy/protocol';
import { TproxyClient } from '../rpc/client.js';
import { makeDemoCerts } from './certs.js';
import { cleanEnv } from './env.js';
import { DEMO_ADDRS, DEMO_HOSTS, createNetwork, deleteNetwork, deleteNetworkSync, demoNames, netnsPidsSync, type DemoNames } from './network.js';
import {
  type DemoPaths,
  type DemoProcess,
  builtDemoScript,
  demoPaths,
  describeExit,
  findOnPath,
  helperArgv,
  isSocket,
  nsArgv,
  pollUntil,
  resolveHelperMain,
  siteArgv,
  spawnLogged,
  tailFile,
  trafficArgv,
} from './procs.js';
import { enterTrustSandbox, inTrustSandbox, watchSandboxParent } from './sandbox.js';

export interface DemoSession {
  /** The demo helper's RPC socket: connect a TproxyClient here. */
  socketPath: string;
  /** Temp dir with helper.log, site.log and traffic.log (removed by stop()). */
  readonly logDir: string;
  /** Pids of every process the demo started (diagnostics, tests). */
  pids(): number[];
  /**
   * Stops the traffic, stops capture, stops the helper (SIGTERM, bounded, then SIGKILL) and the
   * site, deletes both namespaces and the temp dir. Idempotent. Rejects only when something could
   * not be removed (the message says what); every step is attempted regardless.
   */
  stop(): Promise<void>;
}

/** What to run instead, shown when the demo is started without root. */
export const DEMO_SUDO_COMMAND = 'sudo node_modules/.bin/tproxy-ui --demo';

/** Tools the demo runs itself (`unshare` is the sandbox's and was needed to get here). */
export const REQUIRED_TOOLS: readonly string[] = ['ip', 'nft', 'openssl'];

/** Bounds for each wait, in ms. */
const SITE_READY_MS = 10_000;
const HELPER_SOCKET_MS = 15_000;
/** capture.start installs the CA (update-ca-certificates) and applies the rules. */
const CAPTURE_CALL_MS = 30_000;
/** The helper's own shutdown reverts rules and the CA; give it that long before SIGKILL. */
const HELPER_STOP_MS = 10_000;
const CHILD_STOP_MS = 2000;
/** How long a signal handler waits for a stop() already in progress. */
const SIGNAL_STOP_MS = 10_000;

export class DemoNeedsRootError extends Error {
  override readonly name = 'DemoNeedsRootError';
  readonly code = 'demo-needs-root';
  constructor(uid: number | undefined) {
    super(
      `tproxy-ui --demo must run as root (you are uid ${uid ?? 'unknown'}): it creates two throwaway network ` +
        'namespaces joined by a veth pair, has tproxy-helper apply nftables TPROXY rules inside them, and ' +
        "mounts a private copy of the trust store for tproxy-helper's CA; nothing on the host changes. " +
        `Run: ${DEMO_SUDO_COMMAND}`,
    );
  }
}

/** Why the sandbox could not be entered, remembered from ensureDemoSandbox() for startDemo's error. */
let sandboxProblem: string | undefined;
/** The run in progress: names are per pid, so one process runs one demo at a time. */
let active: DemoRun | undefined;

/**
 * Call at the very start of `tproxy-ui --demo`, before anything else: if not already inside the
 * trust-store sandbox, re-executes this process inside it (same node, flags and argv through
 * scripts/trust-sandbox.sh) and never returns; the outer process then only relays signals and the
 * exit status. Returns normally inside the sandbox, and also when the sandbox cannot be entered
 * (not root, no unshare): startDemo() then throws the explanation, so the dashboard shows one error.
 */
export async function ensureDemoSandbox(): Promise<void> {
  const state = await enterTrustSandbox();
  if (state.inside) {
    sandboxProblem = undefined;
    // The relay was killed (terminal closed): exit, so the 'exit' hook removes the demo.
    watchSandboxParent(() => process.exit(1));
  } else {
    sandboxProblem = state.reason;
  }
}

/**
 * Root only. Builds namespaces, site, helper and traffic; resolves once the helper's socket is up
 * and capture is started. On failure everything already built is removed before it rejects.
 */
export async function startDemo(opts: { log: (line: string) => void }): Promise<DemoSession> {
  const log = (line: string) => {
    try {
      opts.log(line);
    } catch {
      // A broken log sink must not break the demo or its cleanup.
    }
  };
  const uid = process.getuid?.();
  if (uid !== 0) throw new DemoNeedsRootError(uid);
  if (!inTrustSandbox()) {
    throw new Error(
      'the demo runs only inside the trust-store sandbox (a private mount namespace, so the CA that ' +
        "tproxy-helper installs never reaches the host's trust store): call ensureDemoSandbox() at the very " +
        `start of tproxy-ui --demo${sandboxProblem ? `; it could not enter the sandbox: ${sandboxProblem}` : ''}`,
    );
  }
  const missing = REQUIRED_TOOLS.filter((t) => findOnPath(t) === undefined);
  if (missing.length > 0) throw new Error(`the demo needs ${missing.join(', ')} on PATH (apt-get install iproute2 nftables openssl)`);
  const helperMain = resolveHelperMain();
  const siteJs = builtDemoScript('site');
  const trafficJs = builtDemoScript('traffic');

  if (active !== undefined) throw new Error('a demo is already running in this process; stop() it first');
  const run = new DemoRun(log, demoNames());
  active = run;
  try {
    await run.start(helperMain, siteJs, trafficJs);
  } catch (err) {
    log(`demo: start failed, cleaning up: ${(err as Error).message}`);
    await run.stop().catch((e: Error) => log(`demo: ${e.message}`));
    throw err;
  }
  return {
    socketPath: run.paths.socketPath,
    logDir: run.paths.dir,
    pids: () => run.pids(),
    stop: () => run.stop(),
  };
}

type Hook = { event: 'exit' | NodeJS.Signals; listener: () => void };

/** One demo run: what it built, and how to take it down (async, or synchronously as a last resort). */
class DemoRun {
  paths: DemoPaths = demoPaths('');
  private dirCreated = false;
  private networkCreated = false;
  private readonly procs: DemoProcess[] = [];
  private client: TproxyClient | undefined;
  private stopping: Promise<void> | undefined;
  private torndown = false;
  private hooks: Hook[] = [];

  constructor(
    private readonly log: (line: string) => void,
    private readonly names: DemoNames,
  ) {}

  pids(): number[] {
    return this.procs.map((p) => p.pid).filter((pid) => pid > 0);
  }

  async start(helperMain: string, siteJs: string, trafficJs: string): Promise<void> {
    const { log, names } = this;
    this.installHooks();
    // 0700 (mkdtemp): it holds the helper's CA key and the site's keys.
    this.paths = demoPaths(await mkdtemp(join(tmpdir(), 'tproxy-demo-')));
    this.dirCreated = true;
    const env = cleanEnv();

    const certs = await makeDemoCerts(this.paths.dir);
    log(`demo: site certificate for ${Object.values(DEMO_HOSTS).join(', ')} issued by a throwaway CA (openssl)`);

    await createNetwork(names);
    this.networkCreated = true;
    log(`demo: network namespaces ${names.clientNs} (helper + clients, ${DEMO_ADDRS.client4}) and ${names.upstreamNs} (site, ${DEMO_ADDRS.site4})`);

    const site = this.spawn('site', nsArgv(names.upstreamNs, siteArgv(process.execPath, siteJs, certs.siteCert, certs.siteKey, this.paths, process.pid)), this.paths.siteLog, env);
    await pollUntil('demo site did not start', () => existsSync(this.paths.siteReady), {
      timeoutMs: SITE_READY_MS,
      failFast: () => this.died(site),
    });
    log(`demo: site listening on ${DEMO_ADDRS.site4}:443 and [${DEMO_ADDRS.site6}]:443 (h2 + http/1.1)`);

    const setpriv = findOnPath('setpriv');
    if (!setpriv) log('demo: setpriv not found; if this process is SIGKILLed, tproxy-helper will not be told to exit');
    const helper = this.spawn(
      'tproxy-helper',
      nsArgv(names.clientNs, helperArgv(process.execPath, helperMain, this.paths, certs.caCert, setpriv)),
      this.paths.helperLog,
      env,
    );
    await pollUntil('tproxy-helper did not open its socket', () => isSocket(this.paths.socketPath), {
      timeoutMs: HELPER_SOCKET_MS,
      failFast: () => this.died(helper),
    });
    this.client = await TproxyClient.connect({ socketPath: this.paths.socketPath, timeoutMs: CAPTURE_CALL_MS });
    log(`demo: tproxy-helper (pid ${helper.pid}) is up on ${this.paths.socketPath}; starting capture`);
    const status = await this.client.call(methods.captureStart, {}).catch((err: Error) => {
      throw new Error(`capture.start failed: ${err.message}\n${tailFile(this.paths.helperLog)}`);
    });
    log(
      `demo: capture running, listeners ${status.listeners.map((l) => `${l.address}:${l.port}`).join(', ')}; ` +
        `CA installed in ${status.trustStorePath ?? 'the trust store'} (a sandboxed copy, gone on exit)`,
    );

    if (!findOnPath('curl')) log('demo: curl not found; the HTTP/2 client will log failures and the others run as usual');
    this.spawn('traffic', nsArgv(names.clientNs, trafficArgv(process.execPath, trafficJs, process.pid)), this.paths.trafficLog, env);
    log(`demo: traffic generator started (shop.demo, events.demo SSE, api.demo down -> 502); logs in ${this.paths.dir}`);
  }

  private spawn(name: string, argv: string[], logFile: string, env: NodeJS.ProcessEnv): DemoProcess {
    const proc = spawnLogged(name, argv, logFile, env);
    this.procs.push(proc);
    void proc.whenExited().then((e) => {
      if (this.stopping === undefined && !this.torndown) {
        this.log(`demo: ${name} (pid ${proc.pid}) exited unexpectedly: ${describeExit(e)}; log ${logFile}:\n${tailFile(logFile, 1000)}`);
      }
    });
    return proc;
  }

  private died(proc: DemoProcess): string | undefined {
    const e = proc.exitInfo;
    return e === undefined ? undefined : `${proc.name} ${describeExit(e)}; ${proc.logFile}:\n${tailFile(proc.logFile)}`;
  }

  stop(): Promise<void> {
    this.stopping ??= this.teardown();
    return this.stopping;
  }

  private async teardown(): Promise<void> {
    if (this.torndown) return;
    const errors: string[] = [];
    const [site, helper, traffic] = ['site', 'tproxy-helper', 'traffic'].map((n) => this.procs.find((p) => p.name === n));
    await traffic?.stop(CHILD_STOP_MS);
    if (this.client !== undefined) {
      if (!this.client.closed) {
        try {
          await this.client.call(methods.captureStop, {});
          this.log('demo: capture stopped (rules reverted, CA removed from the sandboxed trust store)');
        } catch (err) {
          this.log(`demo: capture.stop failed (the namespace and sandbox are discarded anyway): ${(err as Error).message}`);
        }
      }
      await this.client.close().catch(() => undefined);
    }
    if (helper !== undefined) {
      const e = await helper.stop(HELPER_STOP_MS);
      if (e === undefined) errors.push(`tproxy-helper (pid ${helper.pid}) survived SIGKILL`);
      else if (e.signal === 'SIGKILL') this.log(`demo: tproxy-helper did not exit within ${HELPER_STOP_MS} ms of SIGTERM; killed`);
    }
    await site?.stop(CHILD_STOP_MS);
    for (const p of this.procs) {
      if (p.exitInfo === undefined) errors.push(`${p.name} (pid ${p.pid}) is still running`);
    }
    if (this.networkCreated) {
      this.killLeftoversInNamespaces();
      try {
        await deleteNetwork(this.names);
        this.networkCreated = false;
        this.log(`demo: namespaces ${this.names.clientNs} and ${this.names.upstreamNs} deleted`);
      } catch (err) {
        errors.push(`deleting the demo namespaces: ${(err as Error).message}`);
      }
    }
    if (this.dirCreated) {
      try {
        await rm(this.paths.dir, { recursive: true, force: true });
        this.dirCreated = false;
      } catch (err) {
        errors.push(`removing ${this.paths.dir}: ${(err as Error).message}`);
      }
    }
    this.torndown = true;
    this.removeHooks('all');
    if (active === this) active = undefined;
    if (errors.length > 0) {
      for (const e of errors) this.log(`demo: cleanup: ${e}`);
      throw new Error(`demo cleanup incomplete: ${errors.join('; ')}`);
    }
  }

  /** Anything still inside our namespaces (a curl the generator started, say): by pid, SIGKILL. */
  private killLeftoversInNamespaces(): void {
    for (const ns of [this.names.clientNs, this.names.upstreamNs]) {
      for (const pid of netnsPidsSync(ns)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    }
  }

  /**
   * Last resort from an 'exit' hook or a signal: synchronous and bounded. SIGKILL is enough here:
   * the helper's rules die with its namespace and its CA with the sandbox's mount namespace.
   */
  cleanupSync(): void {
    if (this.torndown) return;
    this.torndown = true;
    for (const p of this.procs) p.kill('SIGKILL');
    if (this.networkCreated) {
      this.killLeftoversInNamespaces();
      for (const e of deleteNetworkSync(this.names)) this.log(`demo: cleanup: ${e}`);
    }
    if (this.dirCreated) {
      try {
        rmSync(this.paths.dir, { recursive: true, force: true });
      } catch (err) {
        this.log(`demo: cleanup: removing ${this.paths.dir}: ${(err as Error).message}`);
      }
    }
    this.removeHooks('all');
    if (active === this) active = undefined;
  }

  private installHooks(): void {
    const onExit = () => this.cleanupSync();
    process.on('exit', onExit);
    this.hooks.push({ event: 'exit', listener: onExit });
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      const listener = () => this.onSignal(signal);
      process.on(signal, listener);
      this.hooks.push({ event: signal, listener });
    }
  }

  private removeHooks(which: 'signals' | 'all'): void {
    this.hooks = this.hooks.filter((h) => {
      if (which === 'signals' && h.event === 'exit') return true;
      process.off(h.event, h.listener);
      return false;
    });
  }

  /**
   * Cleans up, then lets the signal do what it would have done without us: if nobody else listens
   * for it, it is re-raised with the default action (the exit status says "killed by SIGTERM");
   * if the dashboard listens too, exiting is its call.
   */
  private onSignal(signal: NodeJS.Signals): void {
    this.removeHooks('signals');
    const finish = () => {
      this.cleanupSync();
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    if (this.stopping === undefined) return finish();
    // stop() is already running (the dashboard is quitting): let it finish, within a bound.
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, SIGNAL_STOP_MS);
    });
    void Promise.race([this.stopping.catch(() => undefined), bound]).then(() => {
      clearTimeout(timer);
      finish();
    });
  }
}
