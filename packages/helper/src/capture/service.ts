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
import { CAPTURE_DEFAULTS, ErrorCode, RpcError, type CaGetResult, type CaptureConfig, type CaptureStatus } from '@tproxy/protocol';
import { LeafCache } from '../ca/cache.js';
import { createLeafKey, type LeafKey } from '../ca/leaf.js';
import { loadOrCreateCa, type StoredCa } from '../ca/store.js';
import { Engine } from '../engine/engine.js';
import { HttpProxy } from '../engine/http-proxy.js';
import { UpstreamPool } from '../engine/upstream.js';
import type { Exec } from '../exec.js';
import { Steering, revertError } from '../firewall/apply.js';
import { describePlan, planSteering, type SteeringPlan } from '../firewall/plan.js';
import { routeSteps } from '../firewall/routing.js';
import { clearRecord, readRecord, updateRecord } from '../firewall/record.js';
import type { Logger } from '../log.js';
import { closeListener, openTransparentListener, type TransparentListener } from '../net/listener.js';
import { markedConnector } from '../net/upstream-socket.js';
import { anchorPath, detectTrustStore, findInstalledCas, installCa, uninstallCa, type TrustStore } from '../trust/linux.js';
import { PublicTrustFiles } from '../trust/public-files.js';
import { loadSystemRoots } from '../trust/system-roots.js';
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
}

interface Session {
  config: CaptureConfig;
  plan: SteeringPlan;
  listeners: TransparentListener[];
  engine: Engine;
  proxy: HttpProxy;
  pool: UpstreamPool;
  /** Fail-open heartbeat and "interception lost" checks; stopped before the steering is reverted. */
  monitor: SteeringMonitor;
  startedAt: number;
}

type Undo = { what: string; run: () => Promise<unknown> | void };

export class CaptureService {
  private session: Session | null = null;
  /** Serialises start/stop so two clients cannot interleave host changes. */
  private busy: Promise<unknown> = Promise.resolve();
  private caPromise: Promise<StoredCa> | null = null;
  private leafKey: Promise<LeafKey> | null = null;
  private certs: LeafCache | null = null;
  private trustPath: string | null = null;
  private readonly steering: Steering;
  private trustStorePromise: Promise<TrustStore | null> | null = null;
  private readonly publicTrust: PublicTrustFiles;

  constructor(private readonly opts: CaptureServiceOptions) {
    this.steering = new Steering(opts.exec, opts.log.child('firewall'));
    this.publicTrust = new PublicTrustFiles({
      dir: opts.publicDir,
      ...(opts.systemBundles ? { systemBundles: opts.systemBundles } : {}),
      log: opts.log.child('public-trust'),
    });
    if (opts.trustStore !== undefined) this.trustStorePromise = Promise.resolve(opts.trustStore);
  }

  /** The OS trust store, detected once (anchor dir present and its refresh command installed). */
  private trustStore(): Promise<TrustStore | null> {
    this.trustStorePromise ??= detectTrustStore(undefined, this.opts.log.child('trust'));
    return this.trustStorePromise;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.busy.then(fn, fn);
    this.busy = next.catch(() => undefined);
    return next;
  }

  /** The CA, created on first use and kept for the helper's lifetime. */
  private loadCa(): Promise<StoredCa> {
    this.caPromise ??= loadOrCreateCa(this.opts.stateDir, { log: this.opts.log.child('ca') }).catch((err: unknown) => {
      this.caPromise = null;
      throw err;
    });
    return this.caPromise;
  }

  start(config: CaptureConfig): Promise<CaptureStatus> {
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
        return this.status();
      } catch (err) {
        await this.rollback(undo);
        throw err;
      }
    });
  }

  private async startSteps(config: CaptureConfig, native: NonNullable<NativeStatus['native']>, undo: Undo[]): Promise<Session> {
    const { log, store } = this.opts;
    const ca = await this.loadCa();
    this.leafKey ??= createLeafKey();
    this.certs ??= new LeafCache(ca, await this.leafKey);
    const certs = this.certs;
    const trust = await this.upstreamTrust(ca);

    const pool = new UpstreamPool({ connect: markedConnector(native, config.bypassMark), trust });
    const proxy = new HttpProxy({ pool, store, bodyCaptureLimit: config.bodyCaptureLimit, log: log.child('http') });
    const engine = new Engine({ certs: { contextFor: (name) => certs.get(name) }, proxy, log: log.child('engine') });
    undo.push({ what: 'closing intercepted connections', run: () => (engine.closeAll(), proxy.close(), pool.destroy()) });

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

    const trustStore = await this.trustStore();
    if (trustStore) {
      const store = trustStore;
      await updateRecord(this.opts.stateDir, { pid: process.pid, trust: { path: anchorPath(store, ca.serialHex), refresh: [...store.refresh] } });
      const path = await installCa(store, ca.certPem, ca.serialHex, this.opts.exec);
      this.trustPath = path;
      undo.push({ what: `removing the CA from ${path}`, run: () => this.uninstallTrust() });
      log.info(`installed the CA into the trust store: ${path}`);
    } else {
      log.warn('no supported OS trust store found; clients must trust the CA themselves (tproxyctl ca --pem)');
    }

    const plan = planSteering(config);
    // Intent first: if we die between here and the end of apply, the next helper reverts it.
    await updateRecord(this.opts.stateDir, { pid: process.pid, startedAt: Date.now(), firewall: config });
    undo.push({ what: 'reverting steering', run: () => this.revertSteering(plan) });
    await this.steering.apply(plan);
    const monitor = new SteeringMonitor({ steering: this.steering, plan, log: log.child('monitor') });
    undo.push({ what: 'stopping the steering monitor', run: () => monitor.stop() });
    monitor.start();

    log.info(`capture running: ports ${config.ports.join(',')} → ${addresses.map((a) => `${a}:${config.listenPort}`).join(', ')}`);
    return { config, plan, listeners, engine, proxy, pool, monitor, startedAt: Date.now() };
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

  private async revertSteering(plan: SteeringPlan): Promise<void> {
    const error = revertError(await this.steering.revert(plan));
    if (error) this.opts.log.error(error.message);
  }

  private async uninstallTrust(): Promise<void> {
    const store = await this.trustStore();
    if (!this.trustPath || !store) return;
    await uninstallCa(this.trustPath, store, this.opts.exec);
    this.opts.log.info(`removed the CA from the trust store: ${this.trustPath}`);
    this.trustPath = null;
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
      await this.revertSteering(s.plan);
      const closing = s.listeners.map((l) => closeListener(l));
      s.engine.closeAll();
      s.proxy.close();
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
      return this.status();
    });
  }

  /**
   * Undoes what a previous helper recorded and did not remove (it was killed), plus our table
   * and rules at their default marks in case the record itself was lost. Runs before anything else.
   */
  repair(): Promise<string[]> {
    return this.serial(async () => {
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
      for (const plan of plans.values()) {
        const report = await this.steering.revert(plan);
        for (const step of report.steps) {
          if (step.outcome === 'removed') done.push(step.step);
          if (step.outcome === 'failed') this.opts.log.error(`repair: ${step.step}: ${step.error ?? 'failed'}`);
        }
      }
      // Every tproxy-* anchor is ours by name (trust/linux.ts); the record may be lost or stale.
      const store = await this.trustStore();
      const leftovers = new Set(store ? await findInstalledCas(store) : []);
      if (record?.trust) leftovers.add(record.trust.path);
      for (const path of store ? leftovers : []) {
        try {
          await uninstallCa(path, store!, this.opts.exec);
          done.push(`trust-store entry ${path}`);
        } catch (err) {
          this.opts.log.error(`repair: removing ${path}: ${(err as Error).message}`);
        }
      }
      await clearRecord(this.opts.stateDir);
      if (record) this.opts.log.warn(`repaired state left by helper pid ${record.pid}: ${done.join('; ') || 'nothing was left'}`);
      return done;
    });
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
      rules: s ? describePlan(s.plan) : [],
      caInstalled: this.trustPath !== null,
      ...(this.trustPath ? { trustStorePath: this.trustPath } : {}),
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
      installed: this.trustPath !== null,
      ...(this.trustPath ? { trustStorePath: this.trustPath } : {}),
      caPath: files.caPath,
      bundlePath: files.bundlePath,
      env: files.env,
    };
  }
}
