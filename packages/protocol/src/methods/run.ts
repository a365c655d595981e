/**
 * `capture.run` / `capture.runEnd`: capture only one command's traffic (`tproxyctl run -- CMD`).
 * The client starts CMD held before exec, asks the helper to move it into a fresh cgroup and start a
 * capture scoped to that cgroup, then lets it exec; every child inherits the cgroup. `runEnd` (or
 * the requesting connection closing) stops that capture and removes the cgroup.
 */
import { z } from 'zod';
import { CaptureStartParamsSchema, CaptureStatusSchema } from './capture.js';
import { defineMethod } from './descriptor.js';

export const CaptureRunParamsSchema = z
  .object({
    /**
     * The process to scope the capture to: a child of the calling process (its PPid is the
     * caller's SO_PEERCRED pid) owned by the caller's uid, not yet running the command (it waits
     * to exec). The helper moves it into the run's cgroup before capture starts.
     */
    pid: z
      .number({ error: 'pid must be a number' })
      .int('pid must be an integer')
      .min(2, 'pid must be a process id greater than 1')
      .max(4194304, 'pid must be at most 4194304 (pid_max limit)'),
    /**
     * capture.start parameters for the run's capture. `scope.cgroup` must be absent (the run sets
     * it); `scope.uids` narrows it further and is subject to the same policy as capture.start.
     */
    capture: CaptureStartParamsSchema.optional(),
  })
  .strict()
  .superRefine((p, ctx) => {
    if (p.capture?.scope?.cgroup !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['capture', 'scope', 'cgroup'], message: 'capture.run sets the cgroup itself; use capture.start to scope to an existing cgroup' });
    }
  });

export const CaptureRunResultSchema = z.object({
  /** The run's cgroup, relative to the cgroup2 root (e.g. `tproxy/run-3`). */
  cgroup: z.string(),
  /** The capture now running, scoped to that cgroup (and to the operator's uid for operators). */
  status: CaptureStatusSchema,
});

export const CaptureRunEndParamsSchema = z.object({}).strict();

export const CaptureRunEndResultSchema = z.object({
  /** The run's cgroup, relative to the cgroup2 root. */
  cgroup: z.string(),
  /** Exchanges recorded while the run's capture ran. */
  exchanges: z.number().int().nonnegative(),
  /** The cgroup was removed. False while processes remain in it (see remainingPids). */
  cgroupRemoved: z.boolean(),
  /**
   * Processes still in the cgroup (daemonized children of the command). They are not killed; the
   * helper removes the cgroup once they are gone, or at the next capture stop.
   */
  remainingPids: z.array(z.number().int()),
  /** Capture status after the run's capture was stopped. */
  status: CaptureStatusSchema,
});

export const captureRun = defineMethod({
  method: 'capture.run',
  summary: "Move a waiting child of the caller into a new cgroup and start a capture scoped to it (tproxyctl run); fails with capture-already-running if a capture runs",
  params: CaptureRunParamsSchema,
  result: CaptureRunResultSchema,
  access: 'write',
});

export const captureRunEnd = defineMethod({
  method: 'capture.runEnd',
  summary: "End this connection's run: stop its capture and remove its cgroup (also done when the connection closes)",
  params: CaptureRunEndParamsSchema,
  result: CaptureRunEndResultSchema,
  access: 'write',
});

export type CaptureRunParams = z.input<typeof CaptureRunParamsSchema>;
export type CaptureRunResult = z.infer<typeof CaptureRunResultSchema>;
export type CaptureRunEndResult = z.infer<typeof CaptureRunEndResultSchema>;
