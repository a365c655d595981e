/**
 * The helper's one CA at a time: loaded (or created) on first use and kept, with the leaf cache
 * that signs with it. Rotation is two-phase so trust entries for the new CA can be made before the
 * old one is given up: generate() makes a CA in memory only, commit() stores it (key 0600,
 * replacing the old pair) and drops the leaf cache, so no leaf of the old CA is served again. It
 * does not touch trust stores (trust/manager.ts) and does not decide when rotation is allowed.
 */
import type { Logger } from '../log.js';
import { LeafCache } from './cache.js';
import { generateCa } from './generate.js';
import { createLeafKey, type LeafKey } from './leaf.js';
import { caMaterialFromPem, type CaMaterial } from './material.js';
import { loadOrCreateCa, saveCa, type StoredCa } from './store.js';

export interface CaAuthorityOptions {
  stateDir: string;
  log: Logger;
  /** Runs once per load, before anyone gets the CA (trust entries follow a regenerated CA). */
  onLoad?: (ca: StoredCa) => Promise<void>;
}

export class CaAuthority {
  private current: Promise<StoredCa> | null = null;
  /** One leaf key per helper run (ECDSA P-256 by default, TPROXY_LEAF_KEY=rsa-2048 for RSA; as mitmproxy, mockttp); it survives rotation, the CA signs anew. */
  private leafKey: Promise<LeafKey> | null = null;
  private certs: LeafCache | null = null;

  constructor(private readonly opts: CaAuthorityOptions) {}

  /** The CA, created on first use and kept for the helper's lifetime (or until commit()). */
  load(): Promise<StoredCa> {
    this.current ??= loadOrCreateCa(this.opts.stateDir, { log: this.opts.log })
      .then(async (ca) => {
        await this.opts.onLoad?.(ca);
        return ca;
      })
      .catch((err: unknown) => {
        this.current = null;
        throw err;
      });
    return this.current;
  }

  /** The leaf cache for the current CA. */
  async leafCache(): Promise<LeafCache> {
    const ca = await this.load();
    this.leafKey ??= createLeafKey();
    const key = await this.leafKey;
    this.certs ??= new LeafCache(ca, key);
    return this.certs;
  }

  /** A brand-new CA, not stored and not in use yet. */
  async generate(): Promise<CaMaterial> {
    const g = await generateCa();
    return caMaterialFromPem(g.certPem, g.keyPem);
  }

  /** Makes `next` the stored and current CA; leaves of the previous CA are never served again. */
  async commit(next: CaMaterial): Promise<StoredCa> {
    const stored = await saveCa(this.opts.stateDir, next);
    this.current = Promise.resolve(stored);
    this.certs = null;
    this.opts.log.info(`rotated: now using CA ${stored.subject} (serial ${stored.serialHex}, sha256 ${stored.fingerprintSha256})`);
    return stored;
  }
}
