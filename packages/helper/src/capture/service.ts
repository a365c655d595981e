/**
 * The capture lifecycle: the one owner of the powerful, shared host state (steering rules, the
 * trust-store entry) and of the listeners and engine that serve intercepted traffic.
 * - start is all-or-nothing: each step registers its undo before the next runs; any failure undoes
 *   the finished steps in reverse and reports what failed. Intent is recorded in the state dir
 *   before each host change, so a helper killed at any point is repaired by the next one.
 * - stop is the exact inverse (rules first, so new connections flow directly at once) and
 *   idempotent; repair undoes whatever a killed helper recorded.
 * - while running, a SteeringMonitor (monitor.ts) refreshes the fail-open `ports` set and reports a
 *   lost table, rule or route in status `interception`. A helper killed without any cleanup stops
 *   intercepting new connections within PORTS_TIMEOUT_SECONDS even before repair runs.
 * It does not parse requests (engine/) or render rules (firewall/).
 */
import { readFile } from 'node:fs/promises';
import type net from 'node:net';
import tls from 'node:tls';
import type { NativeStatus } from '@tproxy/native';
import type { CaInstallParams, CaRotateResult, CaUninstallParams } from '@tproxy/protocol';
import type { FirewallBackend, FirewallChoice } from '@tproxy/protocol';
import { CAPTURE_DEFAULTS, ErrorCode, RpcError, type CaGetResult, type CaptureConfig, type CaptureStatus, type HelperRepairResult, type PreviousSession } from '@tproxy/protocol';
import { CaAuthority } from '../ca/authority.js';
import type { StoredCa } from '../ca/store.js';
import { Engine } from '../engine/engine.js';
import { H2Proxy } from '../engine/h2-proxy.js';
import { HttpProxy } from '../engine/http-proxy.js';
import { PassthroughRelay } from '../engine/passthrough.js';
import { UpstreamPool } from '../engine/upstream.js';
import type { Exec } from '../exec.js';
import { Steering, revertError } from '../firewall/apply.js';
import { createSteering, detectBackend, IPTABLES_FLAVOURS, type SteeringBackend } from '../firewall/backend.js';
import { IptablesSteering } from '../firewall/iptables-apply.js';
import { describeIptablesPlan } from '../firewall/iptables.js';
import { readSteeringState } from '../firewall/inspect.js';
import { describePlan, planSteering, type SteeringPlan } from '../firewall/plan.js';
import { routeSteps } from '../firewall/routing.js';
import { clearRecord, readRecord, updateRecord, type AppliedRecord } from '../firewall/record.js';
import type { Logger } from '../log.js';
import { closeListener, openTransparentListener, type TransparentListener } from '../net/listener.js';
import { ProcessAttributor } from '../net/attribution.js';
import { markedConnector } from '../net/upstream-socket.js';
import type { TrustStore } from '../trust/linux.js';
import { TrustManager, type TrustState } from '../trust/manager.js';
import { PublicTrustFiles } from '../trust/public-files.js';
import { loadSystemRoots } from '../trust/system-roots.js';
import { describeScope } from '../policy.js';
import { resolveSteeringScope } from './cgroup.js';
import { SteeringMonitor } from './monitor.js';
import type { ExchangeStore } from './store.js';

export interface CaptureServiceOptions {
  native: NativeStatus;
  exec: Exec;
  stateDir: string;
  /**
   * A directory every user can traverse (the socket's, e.g. /run/tproxy) for the world-readable
   * `ca.pem` and `bundle.pem` that ca.get names (trust/public-files.ts); never the 0700 state dir.
   */
  publicDir: string;
  /** System bundles for `bundle.pem`; default SYSTEM_ROOT_BUNDLES (tests pass a fake). */
  systemBundles?: readonly string[];
  /** Extra PEM trust anchors for the upstream leg. */
  upstreamCaFiles: readonly string[];
  store: ExchangeStore;
  log: Logger;
  /** Trust store to install the CA into; detected when omitted, null to skip installing. */
  trustStore?: TrustStore | null;
  /** Firewall backend when capture.start says `auto` (helper flag --firewall); default `auto`. */
  firewall?: FirewallChoice;
}

interface Session {
  config: CaptureConfig;
  plan: SteeringPlan;
  listeners: TransparentListener[];
  engine: Engine;
  proxy: HttpProxy;
  /** HTTP/2 relay and its pooled upstream sessions. */
  h2: H2Proxy;
  pool: UpstreamPool;
  /** Fail-open heartbeat and "interception lost" checks; stopped before the steering is reverted. */
  monitor: SteeringMonitor;
  /** The firewall backend steering this session, why it was chosen, and its executor. */
  backend: { name: FirewallBackend; reason: string; steering: SteeringBackend };
  startedAt: number;
}

type Undo = { what: string; run: () => Promise<unknown> | void };

export class CaptureService {
  private session: Session | null = null;
  /** Serialises start/stop so two clients cannot interleave host changes. */
  private busy: Promise<unknown> = Promise.resolve();
  /** The CA and its leaf cache (ca/authority.ts). */
  private readonly authority: CaAuthority;
  /** Every OS trust-store entry for the CA: capture-scoped and persistent (trust/manager.ts). */
  private readonly trust: TrustManager;
  private readonly steering: Steering;
  private readonly publicTrust: PublicTrustFiles;
  private readonly statusListeners = new Set<(status: CaptureStatus) => void>();

  constructor(private readonly opts: CaptureServiceOptions) {
    this.steering = new Steering(opts.exec, opts.log.child('firewall'));
    this.publicTrust = new PublicTrustFiles({
      dir: opts.publicDir,
      ...(opts.systemBundles ? { systemBundles: opts.systemBundles } : {}),
      log: opts.log.child('public-trust'),
    });
    this.trust = new TrustManager({
      exec: opts.exec,
      stateDir: opts.stateDir,
      log: opts.log.child('trust'),
      ...(opts.trustStore !== undefined ? { trustStore: opts.trustStore } : {}),
    });
    // A regenerated CA (expired, corrupt) takes the persistent trust entries over as it loads.
    this.authority = new CaAuthority({ stateDir: opts.stateDir, log: opts.log.child('ca'), onLoad: (ca) => this.trust.adopt(ca) });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.busy.then(fn, fn);
    this.busy = next.catch(() => undefined);
    return next;
  }

  /** The CA, created on first use and kept for the helper's lifetime. */
  private loadCa(): Promise<StoredCa> {
    return this.authority.load();
  }

  start(config: CaptureConfig & { readonly firewall?: FirewallChoice }): Promise<CaptureStatus> {
    return this.serial(async () => {
      if (this.session) {
        throw new RpcError(ErrorCode.CaptureAlreadyRunning, `capture is already running (since ${new Date(this.session.startedAt).toISOString()}); stop it first`);
      }
      const { native } = this.opts;
      if (!native.captureAvailable || !native.native) {
        throw new RpcError(ErrorCode.CaptureUnavailable, `capture is unavailable on this host: ${native.reason ?? 'unknown reason'}`);
      }
      const undo: Undo[] = [];
      try {
        this.session = await this.startSteps(config, native.native, undo);
        this.announce();
        return this.status();
      } catch (err) {
        await this.rollback(undo);
        throw err;
      }
    });
  }

  private async startSteps(config: CaptureConfig & { readonly firewall?: FirewallChoice }, native: NonNullable<NativeStatus['native']>, undo: Undo[]): Promise<Session> {
    const { log, store } = this.opts;
    // A cgroup scope is resolved (level, nft path, existence) first: a bad one changes nothing.
    const steeringScope = await resolveSteeringScope(config.scope);
    // The firewall backend next, still before any host change: none usable fails here.
    const backend = await this.chooseBackend(config.firewall);
    const ca = await this.loadCa();
    const certs = await this.authority.leafCache();
    const trust = await this.upstreamTrust(ca);

    const pool = new UpstreamPool({ connect: markedConnector(native, config.bypassMark), trust, idleTimeoutMs: config.limits.upstreamIdleTimeoutSeconds * 1000 });
    const proxy = new HttpProxy({ pool, store, bodyCaptureLimit: config.bodyCaptureLimit, limits: config.limits, log: log.child('http') });
    const h2 = new H2Proxy({ store, bodyCaptureLimit: config.bodyCaptureLimit, limits: config.limits, log: log.child('h2'), upstream: { connect: markedConnector(native, config.bypassMark), trust } });
    certs.setMax(config.limits.leafCacheSize);
    const passthrough = new PassthroughRelay({ connect: markedConnector(native, config.bypassMark), store, log: log.child('passthrough'), idleTimeoutMs: config.limits.clientIdleTimeoutSeconds * 1000 });
    const engine = new Engine({
      certs: { contextFor: (name) => certs.get(name) },
      proxy,
      pool,
      passthrough,
      h2,
      log: log.child('engine'),
      handshakeTimeoutMs: config.limits.handshakeTimeoutSeconds * 1000,
      maxConnectionsPerProcess: config.limits.maxConnectionsPerProcess,
      attribution: new ProcessAttributor({ socketTable: (l, r) => native.findTcpSocket(l.address, l.port, r.address, r.port) }),
    });
    undo.push({ what: 'closing intercepted connections', run: () => (engine.closeAll(), proxy.close(), h2.close(), pool.destroy()) });

    const listeners: TransparentListener[] = [];
    const addresses = config.ipv6 ? [config.listenV4, config.listenV6] : [config.listenV4];
    for (const address of addresses) {
      let listener: TransparentListener;
      try {
        listener = await openTransparentListener(native, address, config.listenPort, (s: net.Socket) => engine.handleConnection(s), log);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        const hint = e.code === 'EADDRINUSE' ? `: port ${config.listenPort} is in use; choose another listenPort` : '';
        throw new RpcError(ErrorCode.CaptureUnavailable, `cannot open the transparent listener on ${address.includes(':') ? `[${address}]` : address}:${config.listenPort}: ${e.message}${hint}`);
      }
      listeners.push(listener);
      undo.push({ what: `closing listener ${address}:${config.listenPort}`, run: () => closeListener(listener) });
    }

    // Adds a capture-scoped anchor (recorded for repair) unless ca.install made a persistent one.
    const trustPath = await this.trust.acquireForCapture(ca);
    if (trustPath) undo.push({ what: `removing the CA from ${trustPath}`, run: () => this.uninstallTrust() });

    const plan = planSteering(config, steeringScope);
    // Intent first: if we die between here and the end of apply, the next helper reverts it.
    await updateRecord(this.opts.stateDir, { pid: process.pid, startedAt: Date.now(), firewall: config });
    undo.push({ what: 'reverting steering', run: () => this.revertSteering(plan, backend.steering) });
    await backend.steering.apply(plan);
    const monitor = new SteeringMonitor({ steering: backend.steering, plan, log: log.child('monitor'), onChange: () => this.announce() });
    undo.push({ what: 'stopping the steering monitor', run: () => monitor.stop() });
    monitor.start();

    log.info(`capture running for ${describeScope(config.scope)}: ports ${config.ports.join(',')} → ${addresses.map((a) => `${a}:${config.listenPort}`).join(', ')}`);
    return { config, plan, listeners, engine, proxy, h2, pool, monitor, backend, startedAt: Date.now() };
  }

  /** Trust anchors for upstream verification: the distribution bundle minus our CA, plus --upstream-ca. */
  private async upstreamTrust(ca: StoredCa): Promise<tls.SecureContext> {
    const extra: string[] = [];
    for (const file of this.opts.upstreamCaFiles) {
      try {
        extra.push(await readFile(file, 'utf8'));
      } catch (err) {
        throw new RpcError(ErrorCode.CaptureUnavailable, `cannot read --upstream-ca ${file}: ${(err as Error).message}`);
      }
    }
    let system: string[] = [];
    try {
      system = (await loadSystemRoots({ exclude: [ca.fingerprintSha256] })).pems;
    } catch (err) {
      if (extra.length === 0) throw new RpcError(ErrorCode.CaptureUnavailable, `no trust anchors for upstream servers: ${(err as Error).message}`);
      this.opts.log.warn(`no system CA bundle (${(err as Error).message}); trusting only --upstream-ca for upstream servers`);
    }
    return tls.createSecureContext({ ca: [...system, ...extra] });
  }

  /** `asked` (capture.start) unless `auto`, else the helper's --firewall, detected when `auto` too. */
  private async chooseBackend(asked: FirewallChoice = 'auto'): Promise<Session['backend']> {
    const choice = asked !== 'auto' ? asked : (this.opts.firewall ?? 'auto');
    const { backend, reason } = await detectBackend(this.opts.exec, choice, this.opts.log.child('firewall'));
    const steering = backend === 'nft' ? this.steering : createSteering(backend, this.opts.exec, this.opts.log.child('firewall'));
    return { name: backend, reason, steering };
  }

  private async revertSteering(plan: SteeringPlan, steering: SteeringBackend): Promise<void> {
    const error = revertError(await steering.revert(plan));
    if (error) this.opts.log.error(error.message);
  }

  /** Removes the capture-scoped anchor this capture added; a persistent install stays. */
  private uninstallTrust(): Promise<void> {
    return this.trust.releaseForCapture();
  }

  private async rollback(undo: Undo[]): Promise<void> {
    for (const step of undo.reverse()) {
      try {
        await step.run();
      } catch (err) {
        this.opts.log.error(`rollback: ${step.what} failed: ${(err as Error).message}`);
      }
    }
    this.session = null;
    await clearRecord(this.opts.stateDir).catch((err: Error) => this.opts.log.error(`rollback: clearing the applied record: ${err.message}`));
  }

  stop(): Promise<CaptureStatus> {
    return this.serial(async () => {
      const s = this.session;
      if (!s) return this.status();
      await s.monitor.stop();
      await this.revertSteering(s.plan, s.backend.steering);
      const closing = s.listeners.map((l) => closeListener(l));
      s.engine.closeAll();
      s.proxy.close();
      s.h2.close();
      s.pool.destroy();
      await Promise.all(closing);
      try {
        await this.uninstallTrust();
      } catch (err) {
        this.opts.log.error(`stop: ${(err as Error).message}`);
      }
      this.session = null;
      await clearRecord(this.opts.stateDir);
      this.opts.log.info('capture stopped; rules, routes and trust-store entry removed');
      this.announce();
      return this.status();
    });
  }

  /**
   * Undoes what a previous helper recorded and did not remove (it was killed), plus our table
   * and rules at their default marks in case the record itself was lost. Runs before anything else.
   */
  async repair(): Promise<string[]> {
    return (await this.repairReport()).removed;
  }

  /**
   * repair() with the killed helper's session, for `helper.repair` and helper.info's
   * `previousSession`. Refused while this helper captures: the record and the default-config rules
   * are then the running session's own, and repairing would tear down a live capture behind its
   * back (capture.stop is the way to remove those).
   */
  repairReport(): Promise<HelperRepairResult> {
    return this.serial(async () => {
      if (this.session) {
        throw new RpcError(ErrorCode.CaptureRunning, 'capture is running: its rules, routes and CA entry are in use, not orphaned; stop capture first (capture.stop removes them)');
      }
      const done: string[] = [];
      const record = await readRecord(this.opts.stateDir);
      const configs: CaptureConfig[] = [{ ...CAPTURE_DEFAULTS, ports: [...CAPTURE_DEFAULTS.ports] }];
      if (record?.firewall) configs.unshift(record.firewall);
      // The defaults cover a lost record; when the record names the same rules and routes (the
      // usual case), reverting them again would only repeat every command at each start-up.
      const plans = new Map<string, SteeringPlan>();
      for (const plan of configs.map((c) => planSteering(c))) {
        const key = routeSteps(plan).map((step) => step.del.join(' ')).join('\n');
        if (!plans.has(key)) plans.set(key, plan);
      }
      // revert() deletes the table with nft's "add, then delete" idiom, which succeeds (and says
      // "removed") whether or not the table was there: ask first, so the report names only what was.
      const tables = new Set((await readSteeringState(this.opts.exec, configs[0]!)).nftTables.map((t) => `nft table ${t}`));
      for (const plan of plans.values()) {
        const report = await this.steering.revert(plan);
        for (const step of report.steps) {
          const phantom = step.step.startsWith('nft table ') && !tables.delete(step.step);
          if (step.outcome === 'removed' && !phantom) done.push(step.step);
          // Without nft no nft table can exist (hosts on the iptables backend): nothing to report.
          if (step.outcome === 'failed' && !/^nft is not installed/.test(step.error ?? '')) this.opts.log.error(`repair: ${step.step}: ${step.error ?? 'failed'}`);
        }
      }
      // The iptables backend's chains (either flavour) and ipset are ours by name; the ip rules and
      // routes both backends share were removed just above. The set goes last: chains of either
      // flavour keep it busy. Failures are logged by IptablesSteering.
      const ipt = IPTABLES_FLAVOURS.map((flavour) => new IptablesSteering(this.opts.exec, this.opts.log.child('firewall'), flavour));
      const iptSteps = [];
      for (const backend of ipt) iptSteps.push(...(await backend.revertChains()));
      if (ipt[0]) iptSteps.push(await ipt[0].revertSet());
      for (const step of iptSteps) if (step.outcome === 'removed') done.push(step.step);
      // Capture-scoped anchors are ours by name (trust/linux.ts), the record may be lost or stale;
      // the persistent install (ca.install) is kept.
      done.push(...(await this.trust.repair(record?.trust?.path)));
      await clearRecord(this.opts.stateDir);
      if (!record) return { removed: done };
      this.opts.log.warn(`repaired state left by helper pid ${record.pid}: ${done.join('; ') || 'nothing was left'}`);
      return { removed: done, previous: previousSession(record, done) };
    });
  }

  onStatusChange(listener: (status: CaptureStatus) => void): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  /** Tells status listeners (subscribed RPC clients) the current status; built only when someone listens. */
  private announce(): void {
    if (this.statusListeners.size === 0) return;
    const status = this.status();
    for (const listener of this.statusListeners) {
      try {
        listener(status);
      } catch (err) {
        this.opts.log.error(`status listener failed: ${(err as Error).message}`);
      }
    }
  }

  status(): CaptureStatus {
    const s = this.session;
    const { native } = this.opts;
    return {
      running: s !== null,
      available: native.captureAvailable,
      ...(native.reason ? { reason: native.reason } : {}),
      interceptCount: s?.engine.connectionCount ?? 0,
      listeners: s ? s.listeners.map((l) => ({ address: l.address, port: l.port })) : [],
      ...(s ? { config: s.config, startedAt: s.startedAt, interception: s.monitor.health() } : {}),
      rules: s ? (s.backend.name === 'nft' ? describePlan(s.plan) : describeIptablesPlan(s.plan)) : [],
      ...trustStatus(this.trust.state()),
      ...(s ? { firewall: { backend: s.backend.name, reason: s.backend.reason } } : {}),
    };
  }

  /** Removes the world-readable ca.pem and bundle.pem (shutdown and --cleanup); returns what it removed. */
  removePublicTrust(): Promise<string[]> {
    return this.publicTrust.remove();
  }

  async ca(): Promise<CaGetResult> {
    const ca = await this.loadCa();
    const files = await this.publicTrust.ensure(ca);
    return {
      pem: ca.certPem,
      fingerprintSha256: ca.fingerprintSha256,
      subject: ca.subject,
      notAfter: ca.notAfter.toISOString(),
      ...this.trust.state(ca.serialHex),
      caPath: files.caPath,
      bundlePath: files.bundlePath,
      env: files.env,
    };
  }

  /** ca.install: the persistent OS trust-store entry. */
  caInstall(_params: CaInstallParams): Promise<CaGetResult> {
    return this.serial(async () => {
      await this.trust.install(await this.loadCa());
      return this.ca();
    });
  }

  /** ca.uninstall: the persistent entry; a running capture stays trusted. */
  caUninstall(_params: CaUninstallParams): Promise<CaGetResult> {
    return this.serial(async () => {
      await this.trust.uninstall(await this.loadCa(), this.session !== null);
      return this.ca();
    });
  }

  /**
   * ca.rotate: a new CA replaces the stored one and every trust entry moves to it. Refused while a
   * capture runs: its engine and connections hold leaves of the current CA.
   */
  caRotate(): Promise<CaRotateResult> {
    return this.serial(async () => {
      if (this.session) throw new RpcError(ErrorCode.CaptureRunning, 'capture is running and serves leaves of the current CA; stop capture, then rotate');
      const previous = await this.loadCa();
      const next = await this.authority.generate();
      await this.trust.rotate(next, async () => {
        await this.authority.commit(next);
      });
      return { ...(await this.ca()), previousFingerprintSha256: previous.fingerprintSha256 };
    });
  }
}

/** capture.status's trust fields. */
function trustStatus(t: TrustState): Pick<CaptureStatus, 'caInstalled' | 'trustStorePath'> {
  return { caInstalled: t.installed, ...(t.trustStorePath ? { trustStorePath: t.trustStorePath } : {}) };
}

/** The report of a session a killed helper recorded; see PreviousSessionSchema for why it is not resumed. */
function previousSession(record: AppliedRecord, removed: string[]): PreviousSession {
  return {
    pid: record.pid,
    startedAt: record.startedAt,
    ...(record.firewall ? { ports: [...record.firewall.ports] } : {}),
    repairedAt: Date.now(),
    removed: [...removed],
    exchangesLost: true,
    note:
      `helper pid ${record.pid} stopped without cleaning up (killed or crashed) during a capture; ` +
      `${removed.length > 0 ? 'what it left was removed' : 'it had left nothing to remove'}. Its exchanges lived only in its memory and are lost, ` +
      'so the session was not resumed: start a new capture.',
  };
}
