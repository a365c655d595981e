/**
 * Per-name TLS server contexts for the interception listener: an LRU of `tls.SecureContext` keyed
 * by canonical name, capped, with each entry re-minted shortly before its leaf expires (mockttp's
 * getSecureContext cache, mitmproxy's CertStore). The API is synchronous — a miss mints on the
 * spot (~1–2 ms) — so concurrent SNICallbacks for one new name cannot race into two mints. It owns
 * no sockets and no files; the engine asks it for a context and does the handshake itself.
 *
 * The context serves the leaf alone, not leaf + CA: the CA is the trust anchor the client already
 * has (else the handshake fails anyway), and RFC 8446 §4.4.2 / RFC 5246 §7.4.2 let the root be
 * omitted, which saves ~1 KB per handshake.
 */
import { createSecureContext, type SecureContext } from 'node:tls';
import { canonicalName, issueLeaf, type IssuedLeaf, type LeafKey } from './leaf.js';
import type { CaMaterial } from './material.js';

/**
 * Entries cap. A browsing session touches a few hundred hosts; 1000 contexts (~2–3 KB of
 * certificate each plus OpenSSL's SSL_CTX) keep memory bounded at a few MB.
 */
export const DEFAULT_MAX_CONTEXTS = 1000;

/** Re-mint this long before notAfter, mirroring the notBefore backdate for fast client clocks. */
export const DEFAULT_REFRESH_MARGIN_MS = 2 * 24 * 3600 * 1000;

export interface LeafCacheOptions {
  /** Maximum cached names; the least recently used is dropped beyond it. Default 1000. */
  max?: number;
  /** Clock, injectable for expiry tests. */
  now?: () => Date;
  /** Re-mint when a leaf is this close to notAfter. Default 2 days. */
  refreshMarginMs?: number;
}

export interface LeafCacheStats {
  /** get() calls answered from the cache. */
  hits: number;
  /** get() calls that found nothing usable (absent or about to expire). */
  misses: number;
  /** Leaves minted; equals misses unless a mint threw. */
  mints: number;
  /** Entries dropped to honour the cap. */
  evictions: number;
  /** Entries currently cached. */
  size: number;
}

interface Entry {
  context: SecureContext;
  /** Time (ms) from which this entry is too close to expiry to hand out. */
  staleAt: number;
}

export class LeafCache {
  private readonly entries = new Map<string, Entry>();
  private max: number;
  private readonly now: () => Date;
  private readonly refreshMarginMs: number;
  private readonly counters = { hits: 0, misses: 0, mints: 0, evictions: 0 };

  constructor(
    private readonly ca: CaMaterial,
    private readonly leafKey: LeafKey,
    options: LeafCacheOptions = {},
  ) {
    this.max = Math.max(1, options.max ?? DEFAULT_MAX_CONTEXTS);
    this.now = options.now ?? (() => new Date());
    this.refreshMarginMs = options.refreshMarginMs ?? DEFAULT_REFRESH_MARGIN_MS;
  }

  /**
   * The server context for `name` (an SNI host name or an IP literal). Throws CaError 'invalid-name'
   * for names leaf.ts refuses to mint, before touching the cache.
   */
  get(name: string): SecureContext {
    const key = canonicalName(name).name;
    const now = this.now();
    const cached = this.entries.get(key);
    // Map iteration order is insertion order: delete + set moves the entry to the MRU end.
    if (cached) this.entries.delete(key);
    if (cached && now.getTime() < cached.staleAt) {
      this.counters.hits++;
      this.entries.set(key, cached);
      return cached.context;
    }
    this.counters.misses++;
    const leaf = issueLeaf(this.ca, this.leafKey, key, now);
    this.counters.mints++;
    // A leaf clamped to a CA that expires soon has less life left than the margin; keep it for half
    // of what remains rather than re-minting on every call.
    const remaining = leaf.notAfter.getTime() - now.getTime();
    const entry: Entry = { context: contextFor(leaf), staleAt: leaf.notAfter.getTime() - Math.min(this.refreshMarginMs, remaining / 2) };
    this.entries.set(key, entry);
    this.evictOverflow();
    return entry.context;
  }

  /**
   * Applies a new cap (capture.start's `limits.leafCacheSize`): the cache outlives one capture, the
   * limit is per capture. Shrinking drops the least recently used entries at once, so a flood of
   * unique SNI names can never hold more than `max` contexts.
   */
  setMax(max: number): void {
    this.max = Math.max(1, Math.floor(max));
    this.evictOverflow();
  }

  private evictOverflow(): void {
    while (this.entries.size > this.max) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
      this.counters.evictions++;
    }
  }

  stats(): LeafCacheStats {
    return { ...this.counters, size: this.entries.size };
  }

  /**
   * Drops every cached context; counters are kept. A cache is bound to one CA: after the CA is
   * regenerated, build a new LeafCache rather than clearing this one.
   */
  clear(): void {
    this.entries.clear();
  }
}

function contextFor(leaf: IssuedLeaf): SecureContext {
  return createSecureContext({ cert: leaf.certPem, key: leaf.keyPem });
}
