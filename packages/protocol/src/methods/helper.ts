/** `helper.*`: who the helper is and what this host lets it do. */
import { z } from 'zod';
import { defineMethod } from './descriptor.js';

export const HelperInfoParamsSchema = z.object({}).strict();

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
});

export const helperInfo = defineMethod({
  method: 'helper.info',
  summary: 'Helper version, protocol version and whether capture is possible on this host',
  params: HelperInfoParamsSchema,
  result: HelperInfoResultSchema,
  access: 'read',
});

export type HelperInfoParams = z.infer<typeof HelperInfoParamsSchema>;
export type HelperInfoResult = z.infer<typeof HelperInfoResultSchema>;
