/**
 * The exchange filter shared by `exchanges.list`, `exchanges.subscribe` and `exchanges.export`, and
 * its pure matcher. Every condition given must hold (AND); an empty filter matches everything.
 *
 * What is known when: host, method and URL are fixed when the request head arrives (`started`);
 * the status is known once the response head arrived and never changes after. So a filter without
 * `status` decides an exchange at `started`, and one with `status` decides it at the first
 * snapshot carrying a response. An exchange without a response (in flight, or failed before one)
 * never matches a status range. Once an exchange matches, it keeps matching for the rest of its life.
 */
import { z } from 'zod';
import type { Exchange } from './model/exchange.js';

/** Longest host glob accepted: a DNS name is at most 253 characters; a few more for wildcards. */
export const FILTER_HOST_MAX = 300;
/** Longest URL substring accepted. */
export const FILTER_TEXT_MAX = 2048;
/** Most methods in one filter. */
export const FILTER_METHODS_MAX = 32;

const MethodNameSchema = z
  .string()
  .regex(/^[A-Za-z][A-Za-z0-9_-]{0,31}$/, 'method must be an HTTP method name such as GET or POST (letters, digits, - or _; at most 32)');

const StatusBound = z.number().int('status bounds must be integers').min(100, 'status bounds must be between 100 and 999').max(999, 'status bounds must be between 100 and 999');

export const StatusRangeSchema = z
  .object({
    /** Lowest status that matches (inclusive, 100..999). Default 100. */
    min: StatusBound.optional(),
    /** Highest status that matches (inclusive, 100..999). Default 999. */
    max: StatusBound.optional(),
  })
  .strict()
  .refine((r) => r.min === undefined || r.max === undefined || r.min <= r.max, { message: 'status.min must not be greater than status.max' });

export const ExchangeFilterSchema = z
  .object({
    /**
     * Glob matched against the request's host (from the URL, without port or IPv6 brackets),
     * case-insensitively: `*` is any run of characters (dots included, so `*.example.com` matches
     * `a.b.example.com` but not `example.com`), `?` is exactly one character. No other syntax.
     */
    host: z.string().min(1, 'host must not be empty').max(FILTER_HOST_MAX, `host must be at most ${FILTER_HOST_MAX} characters`).optional(),
    /** One method or a list of methods (any of them matches), compared case-insensitively. */
    method: z.union([MethodNameSchema, z.array(MethodNameSchema).min(1, 'method list must not be empty').max(FILTER_METHODS_MAX, `at most ${FILTER_METHODS_MAX} methods`)]).optional(),
    /** Inclusive response status range; exchanges without a response do not match. */
    status: StatusRangeSchema.optional(),
    /** Case-insensitive substring of the request URL. */
    text: z.string().min(1, 'text must not be empty').max(FILTER_TEXT_MAX, `text must be at most ${FILTER_TEXT_MAX} characters`).optional(),
  })
  .strict();

export type StatusRange = z.infer<typeof StatusRangeSchema>;
export type ExchangeFilter = z.infer<typeof ExchangeFilterSchema>;

/**
 * `*` and `?` glob, case-insensitive, over the whole string. Iterative with one backtrack point
 * (the classic wildcard algorithm): O(len(glob) × len(text)) at worst, never exponential, so a
 * caller's pattern cannot stall the helper the way a regular expression could.
 */
export function globMatch(glob: string, text: string): boolean {
  const g = glob.toLowerCase();
  const t = text.toLowerCase();
  let gi = 0;
  let ti = 0;
  let starG = -1;
  let starT = 0;
  while (ti < t.length) {
    const c = g[gi];
    if (c === '*') {
      starG = gi++;
      starT = ti;
    } else if (c !== undefined && (c === '?' || c === t[ti])) {
      gi++;
      ti++;
    } else if (starG !== -1) {
      gi = starG + 1;
      ti = ++starT;
    } else {
      return false;
    }
  }
  while (g[gi] === '*') gi++;
  return gi === g.length;
}

/**
 * The host part of an absolute URL, lower-cased, without userinfo, port or IPv6 brackets; `''` when
 * the URL has no authority. Plain string work: the URL comes from the intercepted client and need
 * not be one `new URL` accepts.
 */
export function urlHost(url: string): string {
  const scheme = url.indexOf('://');
  if (scheme === -1) return '';
  let authority = url.slice(scheme + 3);
  const end = authority.search(/[/?#]/);
  if (end !== -1) authority = authority.slice(0, end);
  const at = authority.lastIndexOf('@');
  if (at !== -1) authority = authority.slice(at + 1);
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    return (close === -1 ? authority.slice(1) : authority.slice(1, close)).toLowerCase();
  }
  const colon = authority.indexOf(':');
  return (colon === -1 ? authority : authority.slice(0, colon)).toLowerCase();
}

/** True when `exchange` satisfies every condition of `filter` (see the module comment for timing). */
export function matchesFilter(exchange: Exchange, filter: ExchangeFilter | undefined): boolean {
  if (!filter) return true;
  if (filter.host !== undefined) {
    const host = urlHost(exchange.request.url) || (exchange.tls.sni ?? '').toLowerCase();
    if (!globMatch(filter.host, host)) return false;
  }
  if (filter.method !== undefined) {
    const wanted = Array.isArray(filter.method) ? filter.method : [filter.method];
    const method = exchange.request.method.toUpperCase();
    if (!wanted.some((m) => m.toUpperCase() === method)) return false;
  }
  if (filter.status !== undefined) {
    const status = exchange.response?.status;
    if (status === undefined) return false;
    if (status < (filter.status.min ?? 100) || status > (filter.status.max ?? 999)) return false;
  }
  if (filter.text !== undefined && !exchange.request.url.toLowerCase().includes(filter.text.toLowerCase())) return false;
  return true;
}

/** True when the filter sets no condition (a page or stream without one can skip the matcher). */
export function isEmptyFilter(filter: ExchangeFilter | undefined): boolean {
  return !filter || (filter.host === undefined && filter.method === undefined && filter.status === undefined && filter.text === undefined);
}
