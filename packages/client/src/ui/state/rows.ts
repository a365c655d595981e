/**
 * The dashboard's own copy of the exchanges: an array sorted by id (the helper's ids are monotonic,
 * so newest last), merged from snapshots that may arrive out of order and more than once, bounded
 * by count. Pure helpers for the reducer; arrays are never mutated in place.
 */
import type { Exchange } from '@tproxy/protocol';

/** Rows kept; the same count the helper's buffer keeps by default (capture/store.ts). */
export const MAX_ROWS = 5000;

/**
 * How far an exchange has got: snapshots only move forward, so a stale one (an `exchanges.list`
 * page computed before a notification we already applied) never overwrites a newer one.
 */
export function progress(ex: Exchange): number {
  if (ex.state !== 'in-flight') return 2;
  return ex.response ? 1 : 0;
}

/** Index of the row with `id`, or -1. */
export function indexOfId(rows: readonly Exchange[], id: number): number {
  const i = lowerBound(rows, id);
  return i < rows.length && rows[i]!.id === id ? i : -1;
}

/** First index whose id is >= `id` (rows.length when none). */
export function lowerBound(rows: readonly Exchange[], id: number): number {
  let lo = 0;
  let hi = rows.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (rows[mid]!.id < id) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function pushOrReplace(out: Exchange[], ex: Exchange): void {
  const last = out[out.length - 1];
  if (last && last.id === ex.id) {
    if (progress(ex) >= progress(last)) out[out.length - 1] = ex;
  } else {
    out.push(ex);
  }
}

/**
 * Merges `incoming` (any order, duplicates allowed, applied in order for equal ids) into `rows`.
 * Ids at or below `minId` are ignored (the user cleared them); the oldest rows beyond `max` drop.
 * Returns `rows` itself when nothing changed.
 */
export function mergeRows(rows: readonly Exchange[], incoming: readonly Exchange[], minId = 0, max = MAX_ROWS): readonly Exchange[] {
  const inc = incoming.filter((ex) => ex.id > minId).sort((a, b) => a.id - b.id);
  if (inc.length === 0) return rows;
  const out: Exchange[] = [];
  let i = 0;
  let j = 0;
  while (i < rows.length || j < inc.length) {
    const r = rows[i];
    const n = inc[j];
    if (n === undefined || (r !== undefined && r.id < n.id)) {
      out.push(r!);
      i++;
    } else if (r === undefined || n.id < r.id) {
      pushOrReplace(out, n);
      j++;
    } else {
      let cur = r;
      i++;
      while (j < inc.length && inc[j]!.id === cur.id) {
        if (progress(inc[j]!) >= progress(cur)) cur = inc[j]!;
        j++;
      }
      out.push(cur);
    }
  }
  return out.length > max ? out.slice(out.length - max) : out;
}
