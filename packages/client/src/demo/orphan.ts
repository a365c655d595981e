/**
 * "Exit when the demo is gone" for the demo's own child processes (the site and the traffic
 * generator). They are started with a new session (so a terminal's Ctrl-C does not reach them; the
 * demo stops them by pid), which also means nothing kills them if the demo itself is SIGKILLed.
 * So each polls its parent: once it has been reparented, the demo is gone and it exits. Comparing
 * process.ppid with the pid the demo passed in is immune to pid reuse.
 */

/** How often a demo child checks its parent; also the longest it can outlive the demo. */
export const ORPHAN_POLL_MS = 1000;

/** Calls `onOrphaned` (default: exit 0) once our parent is no longer `parentPid`. */
export function exitWhenOrphaned(parentPid: number, onOrphaned: () => void = () => process.exit(0)): void {
  if (process.ppid !== parentPid) return onOrphaned();
  const timer = setInterval(() => {
    if (process.ppid !== parentPid) {
      clearInterval(timer);
      onOrphaned();
    }
  }, ORPHAN_POLL_MS);
  timer.unref();
}

/** Parses a `--parent-pid` value: a positive integer, or undefined. */
export function parsePid(raw: string | undefined): number | undefined {
  if (raw === undefined || !/^\d+$/.test(raw)) return undefined;
  const pid = Number(raw);
  return pid > 0 && Number.isSafeInteger(pid) ? pid : undefined;
}
