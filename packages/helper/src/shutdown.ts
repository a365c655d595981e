/**
 * An ordered registry of async cleanups run once at exit: capture (firewall, trust store) first,
 * then listeners, then the RPC socket. Each step has a time limit so one stuck step cannot keep
 * the others from running, and every failure is logged, never swallowed.
 */
import type { Logger } from './log.js';

interface Step {
  name: string;
  run: () => Promise<void> | void;
}

const STEP_TIMEOUT_MS = 15_000;

export class Shutdown {
  private readonly steps: Step[] = [];
  private running: Promise<void> | null = null;

  constructor(private readonly log: Logger) {}

  /** Steps run in the order they were added. */
  add(name: string, run: () => Promise<void> | void): void {
    this.steps.push({ name, run });
  }

  run(): Promise<void> {
    this.running ??= this.runSteps();
    return this.running;
  }

  private async runSteps(): Promise<void> {
    for (const step of this.steps) {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          Promise.resolve().then(step.run),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`timed out after ${STEP_TIMEOUT_MS} ms`)), STEP_TIMEOUT_MS);
          }),
        ]);
      } catch (err) {
        this.log.error(`shutdown: ${step.name} failed: ${(err as Error).message}`);
      } finally {
        clearTimeout(timer);
      }
    }
  }
}
