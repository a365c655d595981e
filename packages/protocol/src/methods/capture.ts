/**
 * `capture.*`: start, stop and inspect interception. The start parameters are validated here, once,
 * for the helper and every client alike; each message names the field that is wrong.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { z } from 'zod';
import { CAPTURE_DEFAULTS, ENGINE_LIMIT_DEFAULTS } from '../constants.js';
import { defineMethod } from './descriptor.js';

const U32_MAX = 0xffffffff;
/** Linux route table ids are u32, but 0 (unspec) and 253-255 (default/main/local) are reserved. */
const RESERVED_TABLES = new Set([0, 253, 254, 255]);

const portSchema = (what: string) =>
  z
    .number({ error: `${what} must be a number` })
    .int(`${what} must be an integer`)
    .min(1, `${what} must be between 1 and 65535`)
    .max(65535, `${what} must be between 1 and 65535`);

const markSchema = (what: string) =>
  z
    .number({ error: `${what} must be a number` })
    .int(`${what} must be an integer`)
    .min(1, `${what} must be greater than 0 (0 means "no mark")`)
    .max(U32_MAX, `${what} must fit in 32 bits`);

/** Longest cgroup path accepted (PATH_MAX is 4096; real unit paths are far shorter). */
const CGROUP_PATH_MAX = 1024;

const uidSchema = z
  .number({ error: 'uids[] must be a number' })
  .int('uids[] must be an integer')
  .min(0, 'uids[] must be between 0 and 4294967294')
  .max(U32_MAX - 1, 'uids[] must be between 0 and 4294967294');

/**
 * A cgroup v2 path relative to the cgroup2 root, as /proc/PID/cgroup shows it after `0::`
 * (`system.slice/nginx.service`, `user.slice/user-1000.slice/session-2.scope`); one leading `/`
 * is accepted and dropped. Never `..` or `.`: the helper resolves it under the cgroup2 mount and
 * must not be walked out of it.
 */
export const CgroupPathSchema = z
  .string({ error: 'cgroup must be a string' })
  .max(CGROUP_PATH_MAX, `cgroup must be at most ${CGROUP_PATH_MAX} characters`)
  .transform((p) => (p.startsWith('/') ? p.slice(1) : p))
  .refine((p) => p.length > 0, 'cgroup must name a cgroup below the root (e.g. system.slice/nginx.service), not the root itself')
  // eslint-disable-next-line no-control-regex
  .refine((p) => !/[\x00-\x1f\x7f]/.test(p), 'cgroup must not contain NUL or control characters')
  .refine((p) => p.split('/').every((seg) => seg !== '' && seg !== '.' && seg !== '..'), 'cgroup must be a plain relative path: no empty, "." or ".." segments');

/** Whose connections a capture takes; both fields given means both must match. */
export const CaptureScopeSchema = z
  .object({
    /**
     * Only sockets owned by these uids (nft `meta skuid`). Omitted: every user for root and for
     * operators the helper's configuration grants `"captureUids": "any"`; the operator's own uid
     * for every other operator.
     */
    uids: z
      .array(uidSchema, { error: 'uids must be an array of uids' })
      .min(1, 'uids must name at least one uid (omit it for the default)')
      .max(64, 'uids may name at most 64 uids')
      .refine((u) => new Set(u).size === u.length, 'uids must not repeat a uid')
      .optional(),
    /** Only sockets of processes in this cgroup v2 subtree (nft `socket cgroupv2`), e.g. a systemd unit. */
    cgroup: CgroupPathSchema.optional(),
  })
  .strict();

/**
 * Which firewall steers connections: `auto` (nft when it answers, else iptables), `nft`,
 * `iptables` (the iptables flavour already holding rules, else iptables-nft), or one flavour.
 */
const limitSchema = (what: string, min: number, max: number) =>
  z
    .number({ error: `limits.${what} must be a number` })
    .int(`limits.${what} must be an integer`)
    .min(min, `limits.${what} must be between ${min} and ${max}`)
    .max(max, `limits.${what} must be between ${min} and ${max}`);

const D = ENGINE_LIMIT_DEFAULTS;

/** capture.start `limits`: each field optional, defaults from ENGINE_LIMIT_DEFAULTS. */
export const EngineLimitsParamsSchema = z
  .object({
    /** Largest request or response head, bytes (1 KiB..1 MiB). */
    maxHeaderBytes: limitSchema('maxHeaderBytes', 1024, 1024 * 1024).default(D.maxHeaderBytes),
    /** Most header fields in one head (8..10000). */
    maxHeaderCount: limitSchema('maxHeaderCount', 8, 10_000).default(D.maxHeaderCount),
    /** h2 SETTINGS_MAX_CONCURRENT_STREAMS towards clients (1..10000). */
    h2MaxConcurrentStreams: limitSchema('h2MaxConcurrentStreams', 1, 10_000).default(D.h2MaxConcurrentStreams),
    /** Open intercepted connections per local process (1..100000). */
    maxConnectionsPerProcess: limitSchema('maxConnectionsPerProcess', 1, 100_000).default(D.maxConnectionsPerProcess),
    /** Leaf certificates kept (16..100000). */
    leafCacheSize: limitSchema('leafCacheSize', 16, 100_000).default(D.leafCacheSize),
    /** TLS handshake deadline for clients, seconds (1..300). */
    handshakeTimeoutSeconds: limitSchema('handshakeTimeoutSeconds', 1, 300).default(D.handshakeTimeoutSeconds),
    /** Idle client connections are closed after this many seconds (1..86400). */
    clientIdleTimeoutSeconds: limitSchema('clientIdleTimeoutSeconds', 1, 86_400).default(D.clientIdleTimeoutSeconds),
    /** Idle pooled upstream connections are closed after this many seconds (1..86400). */
    upstreamIdleTimeoutSeconds: limitSchema('upstreamIdleTimeoutSeconds', 1, 86_400).default(D.upstreamIdleTimeoutSeconds),
  })
  .strict();

/** The effective limits: every field present. */
export const EngineLimitsSchema = z.object({
  maxHeaderBytes: z.number().int(),
  maxHeaderCount: z.number().int(),
  h2MaxConcurrentStreams: z.number().int(),
  maxConnectionsPerProcess: z.number().int(),
  leafCacheSize: z.number().int(),
  handshakeTimeoutSeconds: z.number().int(),
  clientIdleTimeoutSeconds: z.number().int(),
  upstreamIdleTimeoutSeconds: z.number().int(),
});

export const FirewallChoiceSchema = z.enum(['auto', 'nft', 'iptables', 'iptables-nft', 'iptables-legacy'], {
  error: 'firewall must be auto, nft, iptables, iptables-nft or iptables-legacy',
});

/** The firewall backend a capture uses (iptables-nft and iptables-legacy need the ipset package). */
export const FirewallBackendSchema = z.enum(['nft', 'iptables-nft', 'iptables-legacy']);

export const CaptureStartParamsSchema = z
  .object({
    /** Destination TCP ports to intercept. Default [443]. */
    ports: z
      .array(portSchema('ports[]'), { error: 'ports must be an array of port numbers' })
      .min(1, 'ports must name at least one port')
      .max(64, 'ports may name at most 64 ports')
      .refine((p) => new Set(p).size === p.length, 'ports must not repeat a port')
      .default(CAPTURE_DEFAULTS.ports),
    /** fwmark for intercepted packets. Default 0x2333. */
    mark: markSchema('mark').default(CAPTURE_DEFAULTS.mark),
    /** SO_MARK of the helper's own upstream sockets, never intercepted. Default 0x539. */
    bypassMark: markSchema('bypassMark').default(CAPTURE_DEFAULTS.bypassMark),
    /**
     * The fwmark bits tproxy owns; `mark` and `bypassMark` must lie within it and differ under it.
     * Bits outside it (VPNs, Docker, Tailscale, kube-proxy) are kept and ignored. Default 0x3fff.
     */
    markMask: markSchema('markMask').default(CAPTURE_DEFAULTS.markMask),
    /** Policy-routing table id. Default 233. */
    routeTable: z
      .number({ error: 'routeTable must be a number' })
      .int('routeTable must be an integer')
      .min(1, 'routeTable must be between 1 and 2147483647')
      .max(2 ** 31 - 1, 'routeTable must be between 1 and 2147483647')
      .refine((t) => !RESERVED_TABLES.has(t), 'routeTable must not be a reserved table (253 default, 254 main, 255 local)')
      .default(CAPTURE_DEFAULTS.routeTable),
    /** IPv4 address of the transparent listener. Default 127.0.0.1. */
    listenV4: z.string().refine(isIPv4, 'listenV4 must be an IPv4 address').default(CAPTURE_DEFAULTS.listenV4),
    /** IPv6 address of the transparent listener. Default ::1. */
    listenV6: z.string().refine(isIPv6, 'listenV6 must be an IPv6 address').default(CAPTURE_DEFAULTS.listenV6),
    /** Port of the transparent listeners. Default 8443. */
    listenPort: portSchema('listenPort').default(CAPTURE_DEFAULTS.listenPort),
    /** Intercept IPv6 destinations too. Default true. */
    ipv6: z.boolean({ error: 'ipv6 must be true or false' }).default(CAPTURE_DEFAULTS.ipv6),
    /** Bytes of each body kept in the capture (0..16 MiB). Default 64 KiB. */
    bodyCaptureLimit: z
      .number({ error: 'bodyCaptureLimit must be a number' })
      .int('bodyCaptureLimit must be an integer')
      .min(0, 'bodyCaptureLimit must be between 0 and 16777216')
      .max(16 * 1024 * 1024, 'bodyCaptureLimit must be between 0 and 16777216')
      .default(CAPTURE_DEFAULTS.bodyCaptureLimit),
    /** Whose connections to take (uids, cgroup). Omitted: see CaptureScopeSchema.uids for the default. */
    scope: CaptureScopeSchema.optional(),
    /** Engine limits; each omitted field takes its ENGINE_LIMIT_DEFAULTS value. */
    limits: EngineLimitsParamsSchema.default(() => ({ ...ENGINE_LIMIT_DEFAULTS })),
    /**
     * Firewall backend for this capture. Omitted or `auto`: the helper's `--firewall` flag decides
     * (itself `auto` by default: nft when it answers, else iptables); anything else overrides it.
     */
    firewall: FirewallChoiceSchema.optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.mark === c.bypassMark) {
      ctx.addIssue({ code: 'custom', path: ['bypassMark'], message: 'bypassMark must differ from mark' });
    }
    // Marks are compared under the mask only, so each must be non-zero there and have no bits
    // outside it (those would be written into bits other tools own).
    for (const field of ['mark', 'bypassMark'] as const) {
      const outside = (c[field] & ~c.markMask) >>> 0;
      if (outside !== 0) {
        ctx.addIssue({
          code: 'custom',
          path: [field],
          message: `${field} 0x${c[field].toString(16)} has bits outside markMask 0x${c.markMask.toString(16)} (0x${outside.toString(16)}); choose a ${field} within the mask or widen markMask`,
        });
      }
    }
    if (c.mark !== c.bypassMark && ((c.mark ^ c.bypassMark) & c.markMask) === 0) {
      ctx.addIssue({ code: 'custom', path: ['bypassMark'], message: `bypassMark must differ from mark under markMask 0x${c.markMask.toString(16)}` });
    }
    if (c.ports.includes(c.listenPort)) {
      ctx.addIssue({
        code: 'custom',
        path: ['listenPort'],
        message: 'listenPort must not be one of the intercepted ports (the listener would intercept itself)',
      });
    }
  });

/** The effective capture configuration: every default filled in. */
export const CaptureConfigSchema = z.object({
  ports: z.array(z.number().int()),
  mark: z.number().int(),
  bypassMark: z.number().int(),
  /**
   * The fwmark bits tproxy owns. Absent only in applied records written before masks existed,
   * whose rules were installed with the full mask: the default lets repair delete exactly those.
   */
  markMask: z.number().int().default(0xffffffff),
  routeTable: z.number().int(),
  listenV4: z.string(),
  listenV6: z.string(),
  listenPort: z.number().int(),
  ipv6: z.boolean(),
  bodyCaptureLimit: z.number().int(),
  /** Effective engine limits (absent in records written before limits existed: the defaults). */
  limits: EngineLimitsSchema.default(() => ({ ...ENGINE_LIMIT_DEFAULTS })),
  /**
   * The effective scope, after the helper applied its policy (an operator's own uid filled in).
   * Absent or empty: every local process.
   */
  scope: z
    .object({
      /** Only sockets owned by these uids. */
      uids: z.array(z.number().int()).optional(),
      /** Only sockets of processes in this cgroup v2 subtree, relative to the cgroup2 root. */
      cgroup: z.string().optional(),
    })
    .optional(),
});

export const CaptureStatusSchema = z.object({
  /** A capture is running: rules applied and listeners accepting. */
  running: z.boolean(),
  /** Capture can run on this host; when false, `reason` says what is missing. */
  available: z.boolean(),
  reason: z.string().optional(),
  /** Connections accepted by the transparent listeners since this capture started. */
  interceptCount: z.number().int().nonnegative(),
  /** Listener endpoints while running. */
  listeners: z.array(z.object({ address: z.string(), port: z.number().int() })),
  /** Effective configuration while running. */
  config: CaptureConfigSchema.optional(),
  /** What is applied to the kernel while running: one line per rule or route, in apply order. */
  rules: z.array(z.string()),
  /** Wall-clock start of the running capture (epoch ms). */
  startedAt: z.number().optional(),
  /** Whether our CA is currently installed in the OS trust store. */
  caInstalled: z.boolean(),
  /** The trust-store file we installed, while installed. */
  trustStorePath: z.string().optional(),
  /** While running: the firewall backend that steers connections, and why it was chosen. */
  firewall: z
    .object({
      /** `nft`, `iptables-nft` or `iptables-legacy`. */
      backend: FirewallBackendSchema,
      /** One sentence, e.g. "nft answers (nftables is preferred: one atomic table for both families)". */
      reason: z.string(),
    })
    .optional(),
  /**
   * While running: whether the steering is still intact. The helper compares the kernel with what
   * it applied every few seconds and refreshes the fail-open port set every ~2 s; someone else
   * flushing or deleting our nft table, ip rule or route, or a failing refresh, shows up here.
   */
  interception: z
    .object({
      /** Everything applied is still in place and the last refresh succeeded. */
      ok: z.boolean(),
      /** One line per problem, e.g. "missing: nft table inet tproxy_helper"; empty when ok. */
      problems: z.array(z.string()),
      /** When the last check or refresh finished (epoch ms). */
      checkedAt: z.number(),
      /** When the fail-open port set was last refreshed (epoch ms); interception stops ~8 s after it. */
      heartbeatAt: z.number().optional(),
    })
    .optional(),
});

export const CaptureStopParamsSchema = z.object({}).strict();
export const CaptureStatusParamsSchema = z.object({}).strict();

export const captureStart = defineMethod({
  method: 'capture.start',
  summary: 'Install the CA, apply the steering rules and start intercepting',
  params: CaptureStartParamsSchema,
  result: CaptureStatusSchema,
  access: 'write',
});

export const captureStop = defineMethod({
  method: 'capture.stop',
  summary: 'Stop intercepting, revert every rule and route, and remove the CA from the trust store',
  params: CaptureStopParamsSchema,
  result: CaptureStatusSchema,
  access: 'write',
});

export const captureStatus = defineMethod({
  method: 'capture.status',
  summary: 'Whether capture runs or can run, and what is applied',
  params: CaptureStatusParamsSchema,
  result: CaptureStatusSchema,
  access: 'read',
});

export type CaptureStartParams = z.input<typeof CaptureStartParamsSchema>;
export type CaptureScope = z.infer<typeof CaptureScopeSchema>;
export type CaptureConfig = z.infer<typeof CaptureConfigSchema>;
export type FirewallChoice = z.infer<typeof FirewallChoiceSchema>;
export type EngineLimits = z.infer<typeof EngineLimitsSchema>;
export type FirewallBackend = z.infer<typeof FirewallBackendSchema>;
export type CaptureStatus = z.infer<typeof CaptureStatusSchema>;
