/**
 * The bounded in-memory buffer of exchanges, bounded by count AND by bytes, with monotonic ids, and
 * the events subscribers follow. Eviction drops the oldest exchanges first. Events are built (as
 * snapshots) only when someone listens, so capture costs nothing extra with no client attached.
 */
import type { Exchange } from '@tproxy/protocol';
import type { LiveExchange } from './live-exchange.js';

export type ExchangeEvent = 'started' | 'updated' | 'completed';
export type ExchangeListener = (event: ExchangeEvent, exchange: Exchange) => void;

export interface StoreLimits {
  /** Most exchanges kept. */
  maxCount: number;
  /** Most bytes (headers + captured bodies, approximately) kept. */
  maxBytes: number;
}

export const DEFAULT_STORE_LIMITS: StoreLimits = { maxCount: 5000, maxBytes: 256 * 1024 * 1024 };

export class ExchangeStore {
  private readonly items = new Map<number, LiveExchange>();
  /** Bytes accounted per id at the last (re)accounting. */
  private readonly sizes = new Map<number, number>();
  private bytes = 0;
  private nextId = 1;
  private readonly listeners = new Set<ExchangeListener>();

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

  /** Newest first, ids strictly below `cursor` when given. */
  list(limit: number, cursor?: number): { exchanges: Exchange[]; nextCursor?: number } {
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
    const start = Math.max(0, end - limit);
    const page = ids.slice(start, end).reverse().map((id) => this.items.get(id)!.snapshot());
    return start > 0 ? { exchanges: page, nextCursor: ids[start]! } : { exchanges: page };
  }

  clear(): void {
    this.items.clear();
    this.sizes.clear();
    this.bytes = 0;
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
    if (this.listeners.size === 0) return;
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
