/**
 * Idle exit for a socket-activated helper: once nothing needs it (no capture running, no RPC
 * client connected) for `idleMs`, call `onIdle` so the daemon exits 0 and systemd, which still
 * holds the listening socket, starts it again on the next connection. Pure apart from the
 * injectable clock: the daemon calls `update()` whenever the capture or a connection changes.
 */

export interface IdleState {
  captureRunning: boolean;
  clients: number;
}

export interface IdleClock {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realClock: IdleClock = {
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref(); // the open server keeps the process alive; the timer alone must not
    return t;
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** Why the helper is busy, or null when it is idle. */
export function busyReason(state: IdleState): string | null {
  if (state.captureRunning) return 'capture is running';
  if (state.clients > 0) return `${state.clients} RPC client(s) connected`;
  return null;
}

export class IdleExit {
  private handle: unknown = null;
  private fired = false;

  constructor(
    private readonly idleMs: number,
    private readonly state: () => IdleState,
    /** Called once, with a sentence saying why the helper is exiting. */
    private readonly onIdle: (why: string) => void,
    private readonly clock: IdleClock = realClock,
  ) {
    if (!(idleMs > 0)) throw new RangeError(`idle timeout must be positive, got ${idleMs}`);
  }

  /** Re-evaluates the state: arms the timer when idle, disarms it when busy. */
  update(): void {
    if (this.fired) return;
    const busy = busyReason(this.state());
    if (busy !== null) {
      this.disarm();
    } else if (this.handle === null) {
      this.handle = this.clock.setTimeout(() => this.expire(), this.idleMs);
    }
  }

  /** Stops for good (shutdown). */
  dispose(): void {
    this.fired = true;
    this.disarm();
  }

  get armed(): boolean {
    return this.handle !== null;
  }

  private disarm(): void {
    if (this.handle !== null) this.clock.clearTimeout(this.handle);
    this.handle = null;
  }

  private expire(): void {
    this.handle = null;
    // Re-check: a change may have raced the timer without an update() reaching us first.
    if (busyReason(this.state()) !== null) return this.update();
    this.fired = true;
    this.onIdle(`idle for ${this.idleMs / 1000} s (no capture running, no RPC client connected)`);
  }
}
