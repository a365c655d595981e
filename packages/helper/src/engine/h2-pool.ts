/**
 * Pooled HTTP/2 sessions to original destinations, one per (address, port, server name): every
 * stream a client opens towards the same destination is multiplexed on one verified upstream
 * connection, so many short client connections do not each cost an upstream handshake. The first
 * session of a destination may adopt the "warm" socket the engine opened while learning the
 * upstream's ALPN; later ones dial a new marked, verified socket the way upstream.ts does. A session
 * that receives GOAWAY, errors or closes leaves the pool at once: new streams go to a new session,
 * streams already on it finish (or fail with the code the upstream gave) where they are.
 */
import http2 from 'node:http2';
import type tls from 'node:tls';
import type { Logger } from '../log.js';
import { connectUpstream, type UpstreamOptions, type UpstreamTarget } from './upstream.js';

/** Opens a verified TLS socket to the target on which the upstream agreed to speak h2. */
export type H2Dialer = (target: UpstreamTarget) => Promise<tls.TLSSocket>;

export interface H2PoolOptions {
  /** Dials new upstream sockets; `dialH2(upstream)` in production. */
  dial: H2Dialer;
  log: Logger;
  /** An upstream session with no open stream is closed after this long. */
  idleTimeoutMs: number;
  /** Largest response header list we accept from upstreams (SETTINGS_MAX_HEADER_LIST_SIZE). */
  maxHeaderListSize: number;
  /** Most header fields in one upstream response head. */
  maxHeaderListPairs: number;
}

/** The only protocol a pooled session's socket may offer. */
const H2_ALPN: readonly string[] = ['h2'];

/** Thrown when a destination answered the TLS handshake without agreeing to h2. */
export class UpstreamNotH2Error extends Error {
  override readonly name = 'UpstreamNotH2Error';
  readonly code = 'ERR_UPSTREAM_ALPN';
}

/**
 * Dials with upstream.ts's connectUpstream (the same marked connector, trust anchors and strict
 * identity check) offering only `h2`: a pooled h2 session must not land on an h1 connection.
 */
export function dialH2(opts: UpstreamOptions): H2Dialer {
  return (target) =>
    connectUpstream(target, opts, H2_ALPN).catch((err: NodeJS.ErrnoException) => {
      // RFC 7301 §3.2: a server that speaks none of the offered protocols answers alert 120.
      if (err.code !== 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL') throw err;
      throw new UpstreamNotH2Error(`${target.serverName ?? target.address}:${target.port} did not agree to HTTP/2 (TLS alert no_application_protocol)`);
    });
}

function keyOf(t: UpstreamTarget): string {
  return `${t.address}|${t.port}|${t.serverName ?? ''}`;
}

/** `https://name:port` for the session's default :authority (only used when a request lacks one). */
function authorityUrl(t: UpstreamTarget): string {
  const host = t.serverName ?? (t.address.includes(':') ? `[${t.address}]` : t.address);
  return `https://${host}:${t.port}`;
}

/** A destination's pooled session; `session` is set as soon as it exists (before it is usable). */
interface Entry {
  ready: Promise<http2.ClientHttp2Session>;
  session?: http2.ClientHttp2Session;
}

export class H2SessionPool {
  private readonly sessions = new Map<string, Entry>();
  private readonly open = new Set<http2.ClientHttp2Session>();
  private sessionsCreated = 0;

  constructor(private readonly opts: H2PoolOptions) {}

  /** Sessions opened since the pool was created (a reuse measure for tests and stats). */
  get created(): number {
    return this.sessionsCreated;
  }

  /** Upstream sessions currently open. */
  get size(): number {
    return this.open.size;
  }

  /**
   * A usable session for the target: the pooled one, or a new one on `warm` (when given and still
   * open) or on a freshly dialled socket. Concurrent callers for a new destination share one dial.
   */
  session(target: UpstreamTarget, warm?: tls.TLSSocket): Promise<http2.ClientHttp2Session> {
    const key = keyOf(target);
    const pooled = this.sessions.get(key);
    if (pooled) {
      if (warm) warm.destroy(); // a pooled session already serves this destination
      return pooled.ready;
    }
    // No sweep needed: an entry leaves the map when its session closes, errors or gets GOAWAY.
    const entry = {} as Entry;
    entry.ready = this.create(target, key, warm, entry);
    this.sessions.set(key, entry);
    // A failed dial is not cached: the next stream tries again.
    entry.ready.catch(() => {
      if (this.sessions.get(key) === entry) this.sessions.delete(key);
    });
    return entry.ready;
  }

  private async create(target: UpstreamTarget, key: string, warm: tls.TLSSocket | undefined, entry: Entry): Promise<http2.ClientHttp2Session> {
    const socket = warm && !warm.destroyed && warm.alpnProtocol === 'h2' ? warm : (warm?.destroy(), await this.opts.dial(target));
    if (socket.alpnProtocol !== 'h2') {
      socket.destroy();
      const where = `${target.serverName ?? target.address}:${target.port}`;
      throw new UpstreamNotH2Error(`${where} did not agree to HTTP/2 (ALPN ${socket.alpnProtocol || 'none'})`);
    }
    const session = http2.connect(authorityUrl(target), {
      createConnection: () => socket,
      maxHeaderListPairs: this.opts.maxHeaderListPairs,
      settings: { enablePush: false, maxHeaderListSize: this.opts.maxHeaderListSize },
    });
    this.sessionsCreated++;
    this.open.add(session);
    entry.session = session;
    const drop = () => {
      if (this.sessions.get(key) === entry) this.sessions.delete(key);
    };
    const promise = new Promise<http2.ClientHttp2Session>((resolve, reject) => {
      // The socket is already verified; waiting for the peer's SETTINGS means a stream is never
      // sent on a connection that turns out not to speak h2 at all.
      session.once('connect', () => {
        session.off('error', reject);
        resolve(session);
      });
      session.once('error', reject);
    });
    session.on('goaway', (code: number, lastStreamId: number) => {
      this.opts.log.debug(`upstream ${key} sent GOAWAY (code ${code}, last stream ${lastStreamId}): session leaves the pool`);
      drop();
    });
    session.on('error', (err: Error) => {
      this.opts.log.debug(`upstream session ${key} failed: ${err.message}`);
      drop();
    });
    session.on('close', () => {
      drop();
      this.open.delete(session);
    });
    // Http2Session's timeout fires after that long without any frame: nothing is in flight then.
    session.setTimeout(this.opts.idleTimeoutMs, () => {
      drop();
      session.close();
    });
    return promise;
  }

  /** Closes every upstream session; their streams are destroyed. */
  destroy(): void {
    for (const s of this.open) s.destroy();
    this.open.clear();
    this.sessions.clear();
  }
}
