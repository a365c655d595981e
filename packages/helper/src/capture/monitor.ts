/**
 * Keeps a running capture's steering alive and honest, owned by the capture service (started after
 * apply, stopped before revert):
 * - heartbeat: every HEARTBEAT_INTERVAL_MS, Steering.heartbeat refreshes the `ports` set elements,
 *   whose PORTS_TIMEOUT_SECONDS lifetime is what makes a killed helper fail open (plan.ts);
 * - check: every VERIFY_INTERVAL_MS, Steering.verify compares the kernel with the plan, so a table,
 *   rule or route that someone else flushed or deleted is reported ("interception lost").
 * Both report into `health()` (capture.status `interception`) and log once per change of the
 * problem list. A failed run is logged and reported, never thrown: the timers keep going.
 * Runs never overlap: the next one is scheduled when the previous finished.
 * It must not change the kernel itself (apply.ts does) nor decide what is steered (plan.ts).
 */
import type { Steering } from '../firewall/apply.js';
import { HEARTBEAT_INTERVAL_MS } from '../firewall/plan.js';
import type { SteeringPlan } from '../firewall/plan.js';
import type { Logger } from '../log.js';

/** How often the steering is compared with the plan; cheap: six read-only list/show commands. */
export const VERIFY_INTERVAL_MS = 5_000;

/** The timer functions used; tests inject a manual clock. */
export interface MonitorTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realTimers: MonitorTimers = {
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    // The RPC server keeps the daemon alive; the monitor alone must not.
    t.unref();
    return t;
  },
  clearTimeout(handle) {
    clearTimeout(handle as NodeJS.Timeout);
  },
};

/** What capture.status reports as `interception` (see CaptureStatusSchema). */
export interface InterceptionHealth {
  ok: boolean;
  problems: string[];
  checkedAt: number;
  heartbeatAt?: number;
}

export interface SteeringMonitorOptions {
  steering: Pick<Steering, 'heartbeat' | 'verify'>;
  plan: SteeringPlan;
  log: Logger;
  timers?: MonitorTimers;
  now?: () => number;
  heartbeatMs?: number;
  verifyMs?: number;
  /** Called when interception is lost or restored (the set of problems changed). */
  onChange?: (health: InterceptionHealth) => void;
}

export class SteeringMonitor {
  private readonly timers: MonitorTimers;
  private readonly now: () => number;
  private readonly handles = new Map<'heartbeat' | 'verify', unknown>();
  private readonly running = new Set<Promise<void>>();
  private stopped = true;
  /** Problems from the last verify and from the last heartbeat, kept apart so each clears itself. */
  private verifyProblems: string[] = [];
  private heartbeatProblem: string | null = null;
  private checkedAt: number;
  private heartbeatAt: number | undefined;
  private reported = '';

  constructor(private readonly opts: SteeringMonitorOptions) {
    this.timers = opts.timers ?? realTimers;
    this.now = opts.now ?? Date.now;
    this.checkedAt = this.now();
  }

  /** Starts both loops; the first heartbeat and check run one interval from now (apply just succeeded). */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.checkedAt = this.now();
    this.schedule('heartbeat', this.opts.heartbeatMs ?? HEARTBEAT_INTERVAL_MS, () => this.heartbeatOnce());
    this.schedule('verify', this.opts.verifyMs ?? VERIFY_INTERVAL_MS, () => this.checkOnce());
  }

  /** Stops both loops and waits for a run in progress, so none runs after the caller's revert. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const handle of this.handles.values()) this.timers.clearTimeout(handle);
    this.handles.clear();
    await Promise.all([...this.running]);
  }

  health(): InterceptionHealth {
    const problems = this.problems();
    return { ok: problems.length === 0, problems, checkedAt: this.checkedAt, ...(this.heartbeatAt !== undefined ? { heartbeatAt: this.heartbeatAt } : {}) };
  }

  /** One heartbeat; never throws. */
  async heartbeatOnce(): Promise<void> {
    try {
      await this.opts.steering.heartbeat(this.opts.plan);
      this.heartbeatAt = this.now();
      this.heartbeatProblem = null;
    } catch (err) {
      this.heartbeatProblem = `fail-open heartbeat failed (interception stops ${this.opts.plan.portsTimeoutSeconds} s after the last success): ${(err as Error).message}`;
    }
    this.checkedAt = this.now();
    this.report();
  }

  /** One comparison of the kernel with the plan; never throws. */
  async checkOnce(): Promise<void> {
    try {
      const result = await this.opts.steering.verify(this.opts.plan);
      this.verifyProblems = result.missing.map((m) => `missing: ${m}`);
    } catch (err) {
      this.verifyProblems = [`checking the steering rules failed: ${(err as Error).message}`];
    }
    this.checkedAt = this.now();
    this.report();
  }

  private problems(): string[] {
    return [...this.verifyProblems, ...(this.heartbeatProblem ? [this.heartbeatProblem] : [])];
  }

  /** Logs when the set of problems changed since the last report. */
  private report(): void {
    const problems = this.problems();
    const key = problems.join('\n');
    if (key === this.reported) return;
    this.reported = key;
    if (problems.length > 0) this.opts.log.error(`interception lost or degraded: ${problems.join('; ')}`);
    else this.opts.log.info('interception restored: every steering rule and route is in place again');
    this.opts.onChange?.(this.health());
  }

  private schedule(name: 'heartbeat' | 'verify', ms: number, task: () => Promise<void>): void {
    if (this.stopped) return;
    this.handles.set(
      name,
      this.timers.setTimeout(() => {
        this.handles.delete(name);
        if (this.stopped) return;
        const run = task().finally(() => {
          this.running.delete(run);
          this.schedule(name, ms, task);
        });
        this.running.add(run);
      }, ms),
    );
  }
}
