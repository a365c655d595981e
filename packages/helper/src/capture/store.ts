/**
 * The bounded in-memory buffer of exchanges, bounded by count AND by bytes, with monotonic ids, and
 * the events subscribers follow. Eviction drops the oldest exchanges first. Events are built (as
 * snapshots) only when someone listens, so capture costs nothing extra with no client attached.
 */
import { EXCHANGES_LIST_SCAN_MAX, isEmptyFilter, matchesFilter, type Exchange, type ExchangeFilter } from '@tproxy/protocol';
import type { LiveExchange } from './live-exchange.js';

export type ExchangeEvent = 'started' | 'updated' | 'completed';
export type ExchangeListener = (event: ExchangeEvent, exchange: Exchange) => void;
/** What `clear()` did: how many were removed, and the highest id that existed then. */
export interface ClearResult {
  removed: number;
  throughId: number;
}
export type ClearListener = (result: ClearResult) => void;

export interface StoreLimits {
  /** Most exchanges kept. */
  maxCount: number;
  /** Most bytes (headers + captured bodies, approximately) kept. */
  maxBytes: number;
}

/**
 * 1000 exchanges / 64 MiB: a kept small exchange costs ~8 KB of heap beyond its accounted bytes, so
 * 5000 held ~30 MiB more RSS (bench/RESULTS.md, helper RSS at 256 connections: 210 -> 181 MiB).
 */
export const DEFAULT_STORE_LIMITS: StoreLimits = { maxCount: 1000, maxBytes: 64 * 1024 * 1024 };

export class ExchangeStore {
  private readonly items = new Map<number, LiveExchange>();
  /** Bytes accounted per id at the last (re)accounting. */
  private readonly sizes = new Map<number, number>();
  private bytes = 0;
  private nextId = 1;
  private readonly listeners = new Set<ExchangeListener>();
  private readonly clearListeners = new Set<ClearListener>();
  /** Exchanges up to this id were removed by clear(): their later events are not announced. */
  private clearedThrough = 0;

  constructor(readonly limits: StoreLimits = DEFAULT_STORE_LIMITS) {}

  /** Assigns the id, stores, announces `started`. */
  add(ex: LiveExchange): void {
    ex.id = this.nextId++;
    this.items.set(ex.id, ex);
    this.account(ex);
    this.emit('started', ex);
  }

  update(ex: LiveExchange): void {
    this.account(ex);
    this.emit('updated', ex);
  }

  /** Call once the exchange is complete or failed. */
  finish(ex: LiveExchange): void {
    this.account(ex);
    this.emit('completed', ex);
  }

  get(id: number): LiveExchange | undefined {
    return this.items.get(id);
  }

  /**
   * Newest first, ids strictly below `cursor` when given, only those matching `filter`. With a
   * filter, at most `scanMax` buffered exchanges are examined per call: if the page is not full by
   * then, it is returned short with `nextCursor` at the last one examined, so paging goes on where
   * the scan stopped and one call never walks the whole buffer.
   */
  list(limit: number, cursor?: number, filter?: ExchangeFilter, scanMax = EXCHANGES_LIST_SCAN_MAX): { exchanges: Exchange[]; nextCursor?: number } {
    const ids = [...this.items.keys()];
    let end = ids.length;
    if (cursor !== undefined) {
      // ids are ascending in insertion order; find the first id >= cursor.
      let lo = 0;
      let hi = ids.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (ids[mid]! < cursor) lo = mid + 1;
        else hi = mid;
      }
      end = lo;
    }
    if (isEmptyFilter(filter)) {
      const start = Math.max(0, end - limit);
      const page = ids.slice(start, end).reverse().map((id) => this.items.get(id)!.snapshot());
      return start > 0 ? { exchanges: page, nextCursor: ids[start]! } : { exchanges: page };
    }
    const page: Exchange[] = [];
    let i = end - 1;
    for (let scanned = 0; i >= 0 && page.length < limit && scanned < scanMax; i--, scanned++) {
      const snap = this.items.get(ids[i]!)!.snapshot();
      if (matchesFilter(snap, filter)) page.push(snap);
    }
    // `i + 1` is the last index examined; older ones remain when it is above 0.
    return i >= 0 ? { exchanges: page, nextCursor: ids[i + 1]! } : { exchanges: page };
  }

  /** Ids buffered right now, oldest first: what an export walks (an id may be gone when reached). */
  ids(): number[] {
    return [...this.items.keys()];
  }

  /**
   * Empties the buffer and tells clear listeners. In-flight exchanges go on on the wire; their later
   * updates are neither kept nor announced, so a subscriber that emptied its list on
   * `exchanges.cleared` never sees rows the helper no longer has.
   */
  clear(): ClearResult {
    const result = { removed: this.items.size, throughId: this.nextId - 1 };
    this.items.clear();
    this.sizes.clear();
    this.bytes = 0;
    this.clearedThrough = result.throughId;
    for (const l of this.clearListeners) {
      try {
        l(result);
      } catch {
        // As for exchange listeners: a listener's failure is its own.
      }
    }
    return result;
  }

  /** Called after every clear(). Returns the unsubscribe function. */
  onClear(listener: ClearListener): () => void {
    this.clearListeners.add(listener);
    return () => this.clearListeners.delete(listener);
  }

  get count(): number {
    return this.items.size;
  }

  get totalBytes(): number {
    return this.bytes;
  }

  subscribe(listener: ExchangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private account(ex: LiveExchange): void {
    if (!this.items.has(ex.id)) return; // already evicted: still served on the wire, no longer kept
    const size = ex.approxBytes();
    this.bytes += size - (this.sizes.get(ex.id) ?? 0);
    this.sizes.set(ex.id, size);
    this.evict();
  }

  private evict(): void {
    while (this.items.size > this.limits.maxCount || (this.bytes > this.limits.maxBytes && this.items.size > 1)) {
      const oldest = this.items.keys().next().value as number;
      this.items.delete(oldest);
      this.bytes -= this.sizes.get(oldest) ?? 0;
      this.sizes.delete(oldest);
    }
  }

  private emit(event: ExchangeEvent, ex: LiveExchange): void {
    if (this.listeners.size === 0 || ex.id <= this.clearedThrough) return;
    const snap = ex.snapshot();
    for (const l of this.listeners) {
      try {
        l(event, snap);
      } catch {
        // A listener's failure is its own (it drops its subscriber); capture goes on.
      }
    }
  }
}
