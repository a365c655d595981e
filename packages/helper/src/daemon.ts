/**
 * Composition root of tproxy-helper: builds the services, repairs whatever a killed predecessor
 * left, serves the RPC socket, and registers the ordered shutdown (capture first, then the RPC
 * listener, then the socket file and the public trust files). A fatal error still runs the
 * shutdown, so a crash does not leave rules, routes or the CA behind.
 */
import { mkdirSync, chmodSync, unlinkSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { dirname } from 'node:path';
import { loadNative, socketFd } from '@tproxy/native';
import { PROTOCOL_VERSION, type HelperRepairResult, type PreviousSession } from '@tproxy/protocol';
import { CaptureService } from './capture/service.js';
import { RunManager } from './capture/run.js';
import { ExchangeStore } from './capture/store.js';
import { idleExitMs, type HelperConfig } from './config.js';
import { realExec } from './exec.js';
import { createLogger, type Logger } from './log.js';
import { loadPolicy } from './policy.js';
import { Dispatcher } from './rpc/dispatcher.js';
import { routes } from './rpc/handlers/index.js';
import { listenUnix } from './rpc/listen.js';
import { RpcServer } from './rpc/server.js';
import { Shutdown } from './shutdown.js';
import { listenFds } from './systemd/activation.js';
import { IdleExit } from './systemd/idle-exit.js';

export function helperVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export interface RunningDaemon {
  capture: CaptureService;
  shutdown: Shutdown;
}

export interface DaemonHooks {
  /**
   * The helper has been idle for its --idle-exit period (why says so): the caller runs the
   * shutdown and exits 0. systemd keeps the listening socket and starts us on the next connection.
   */
  onIdleExit?: (why: string) => void;
}

export async function runDaemon(config: HelperConfig, log: Logger = createLogger('helper', config.logLevel), hooks: DaemonHooks = {}): Promise<RunningDaemon> {
  const started = Date.now();
  // The policy first: a bad or unsafe configuration file stops the helper before it serves anyone.
  const policy = await loadPolicy(config.configPath);
  if (policy.source) log.info(`policy from ${policy.source}: ${policy.grants.size} operator grant(s)`);
  const native = loadNative();
  if (!native.captureAvailable) log.warn(`capture unavailable: ${native.reason}`);

  mkdirSync(config.stateDir, { recursive: true, mode: 0o700 });
  chmodSync(config.stateDir, 0o700);

  const store = new ExchangeStore();
  const capture = new CaptureService({
    native,
    exec: realExec,
    stateDir: config.stateDir,
    publicDir: dirname(config.socketPath),
    upstreamCaFiles: config.upstreamCaFiles,
    store,
    log: log.child('capture'),
    firewall: config.firewall,
  });
  const shutdown = new Shutdown(log);
  const runs = new RunManager({ capture, store, log: log.child('run'), ...(config.runCgroupParent ? { parent: config.runCgroupParent } : {}) });
  // Before capture: a run stops its own capture, then removes its cgroup.
  shutdown.add('ending tproxyctl runs', () => runs.shutdown());
  shutdown.add('stopping capture', async () => {
    await capture.stop();
  });

  // The start-up repair's report of a killed predecessor is kept for helper.info until this helper
  // exits: a client that reconnects after the crash learns what happened to its session.
  let previousSession: PreviousSession | undefined;
  const repair = async (): Promise<HelperRepairResult> => {
    const report = await capture.repairReport();
    if (report.previous) previousSession = report.previous;
    return report;
  };
  if (native.captureAvailable) {
    const stale = await runs.adoptLeftovers();
    if (stale.length > 0) log.info(`start-up repair removed run cgroups: ${stale.join(', ')}`);
    const repaired = await repair();
    if (repaired.removed.length > 0) log.info(`start-up repair removed: ${repaired.removed.join('; ')}`);
  }

  const version = helperVersion();
  let idle: IdleExit | null = null;
  const rpc = new RpcServer({
    dispatcher: new Dispatcher(routes, log.child('rpc')),
    services: {
      capture,
      store,
      info: () => ({
        name: 'tproxy-helper',
        version,
        protocolVersion: PROTOCOL_VERSION,
        pid: process.pid,
        uptimeMs: Date.now() - started,
        native: { available: native.captureAvailable, ...(native.reason ? { reason: native.reason } : {}) },
        stateDir: config.stateDir,
        ...(previousSession ? { previousSession } : {}),
      }),
      repair,
      policy,
      runs,
    },
    log: log.child('rpc'),
    allowedUids: config.allowUids,
    peerCredentials: native.native ? ((n) => (s: net.Socket) => n.getPeerCredentials(socketFd(s)))(native.native) : null,
    onClientsChange: () => idle?.update(),
  });
  if (!native.native) log.warn('no SO_PEERCRED without the native addon: the socket mode (0600) is the only access check');

  const server = net.createServer();
  rpc.attach(server);
  const activated = listenFds();
  if (activated.length > 0) {
    // systemd created the socket (mode, owner) and passes it as fd 3; we never bind or unlink it.
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen({ fd: activated[0]! }, resolve));
    log.info(`using the systemd-activated socket (fd ${activated[0]})`);
  } else {
    await listenUnix(server, config.socketPath, config.allowUids[0]);
  }
  shutdown.add('closing RPC connections', () => {
    rpc.closeAll();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  shutdown.add('removing the RPC socket', () => {
    if (activated.length > 0) return; // systemd owns it
    try {
      unlinkSync(config.socketPath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  });
  // After the RPC listener: no ca.get can write them again.
  shutdown.add('removing the public trust files', async () => {
    await capture.removePublicTrust();
  });
  const idleMs = idleExitMs(config, activated.length > 0);
  if (idleMs !== null) {
    // Capture only starts and stops through RPC, so re-checking on every connect/disconnect sees
    // every change that matters; the timer re-checks the state again when it expires.
    idle = new IdleExit(
      idleMs,
      () => ({ captureRunning: capture.status().running, clients: rpc.clientCount }),
      (why) => {
        log.info(`exiting: ${why}; ${activated.length > 0 ? 'systemd keeps the socket and starts the helper again on the next connection' : 'started by hand, so nothing restarts it'}`);
        hooks.onIdleExit?.(why);
      },
    );
    shutdown.add('stopping the idle timer', () => idle?.dispose());
    idle.update();
  }
  log.info(`tproxy-helper ${version} serving ${config.socketPath} (pid ${process.pid})${idleMs !== null ? `; exits after ${idleMs / 1000} s idle` : ''}`);
  return { capture, shutdown };
}
