/** `helper.*`: who the helper is, what this host lets it do, and undoing what a killed helper left. */
import { z } from 'zod';
import { defineMethod } from './descriptor.js';

export const HelperInfoParamsSchema = z.object({}).strict();

/**
 * What a helper that died without cleaning up (kill -9, OOM, power loss) left behind, as found in
 * its applied-state record and undone by a later repair. The session is reported, never resumed:
 * its decrypted exchanges lived only in the dead process's memory, and its listeners and TLS state
 * died with it, so a "resumed" capture would be a new capture that claims an old history.
 */
export const PreviousSessionSchema = z.object({
  /** pid of the helper that recorded the session (no longer running). */
  pid: z.number().int(),
  /** When that helper started capturing (epoch ms), as it recorded it. */
  startedAt: z.number().optional(),
  /** The ports it was intercepting, when its record named the firewall config. */
  ports: z.array(z.number().int()).optional(),
  /** When the repair ran (epoch ms). */
  repairedAt: z.number(),
  /** What the repair removed for it, one line each (rules, routes, trust-store entries); may be empty. */
  removed: z.array(z.string()),
  /** Always true: the session's exchanges were held in the dead helper's memory and are gone. */
  exchangesLost: z.literal(true),
  /** One sentence for people: what happened and why the session was not resumed. */
  note: z.string(),
});

export const HelperInfoResultSchema = z.object({
  /** Always `tproxy-helper`. */
  name: z.string(),
  /** Helper package version. */
  version: z.string(),
  /** Protocol version spoken (see PROTOCOL_VERSION). */
  protocolVersion: z.number().int(),
  /** Helper process id. */
  pid: z.number().int(),
  /** Milliseconds since the helper started. */
  uptimeMs: z.number(),
  /** Whether the native addon loaded and the process may steer traffic; `reason` says why not. */
  native: z.object({ available: z.boolean(), reason: z.string().optional() }),
  /** Directory holding the CA and the applied-state record. */
  stateDir: z.string(),
  /** The caller as the kernel reported it (SO_PEERCRED). */
  peer: z.object({ uid: z.number().int(), pid: z.number().int() }).optional(),
  /**
   * Present when this helper's start-up repair (or a later `helper.repair`) found a session a
   * killed helper left behind: what it was and what was removed for it.
   */
  previousSession: PreviousSessionSchema.optional(),
});

export const helperInfo = defineMethod({
  method: 'helper.info',
  summary: 'Helper version, protocol version and whether capture is possible on this host',
  params: HelperInfoParamsSchema,
  result: HelperInfoResultSchema,
  access: 'read',
});

export const HelperRepairParamsSchema = z.object({}).strict();

export const HelperRepairResultSchema = z.object({
  /**
   * What was removed, one line each: steering rules and routes of a killed helper (its recorded
   * config and the default one), every `tproxy-*` trust-store entry. Empty on a clean host.
   */
  removed: z.array(z.string()),
  /** The killed helper's session, when an applied-state record of one was found. */
  previous: PreviousSessionSchema.optional(),
});

export const helperRepair = defineMethod({
  method: 'helper.repair',
  summary: 'Remove rules, routes and trust-store entries a killed helper left behind (refused while capture runs)',
  params: HelperRepairParamsSchema,
  result: HelperRepairResultSchema,
  access: 'write',
});

export type PreviousSession = z.infer<typeof PreviousSessionSchema>;
export type HelperRepairResult = z.infer<typeof HelperRepairResultSchema>;
export type HelperInfoParams = z.infer<typeof HelperInfoParamsSchema>;
export type HelperInfoResult = z.infer<typeof HelperInfoResultSchema>;
