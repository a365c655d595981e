/**
 * Fixed names and defaults shared by the helper and every client. Changing a default here changes
 * it everywhere, so each one carries the reason it has the value it has.
 */

/** Bumped on any incompatible change to a method, notification or model; reported by `helper.info`. */
export const PROTOCOL_VERSION = 1;

/** Default RPC socket; systemd's RuntimeDirectory=tproxy creates /run/tproxy (see systemd/). */
export const DEFAULT_SOCKET_PATH = '/run/tproxy/helper.sock';

/** Default state directory (systemd StateDirectory=tproxy): CA, applied-rules record. */
export const DEFAULT_STATE_DIR = '/var/lib/tproxy';

/** Longest JSON-RPC line either side accepts; large enough for an exchange with two 64 KiB bodies in base64. */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/**
 * Engine limits, each overridable in capture.start `limits`. They bound what one misbehaving or
 * hostile client can make the helper hold: header memory, h2 streams, connections, minted leaves,
 * and how long an idle or half-open connection may stay.
 */
export const ENGINE_LIMIT_DEFAULTS = {
  /** Largest request or response head (h1 header block, h2 decoded header list), bytes. */
  maxHeaderBytes: 64 * 1024,
  /** Most header fields in one head. */
  maxHeaderCount: 256,
  /** SETTINGS_MAX_CONCURRENT_STREAMS towards h2 clients. */
  h2MaxConcurrentStreams: 256,
  /** Open intercepted connections per local process (by pid); more are refused at accept. */
  maxConnectionsPerProcess: 1024,
  /** Leaf SecureContexts kept (LRU); one shared leaf key, so a flood of names never mints keys. */
  leafCacheSize: 1000,
  /** A client that has not finished its TLS handshake by then is dropped. */
  handshakeTimeoutSeconds: 10,
  /** An idle client connection (no request in flight, nothing received) is closed after this long. */
  clientIdleTimeoutSeconds: 120,
  /** A pooled upstream connection idle this long is closed. */
  upstreamIdleTimeoutSeconds: 60,
} as const;


/** Capture defaults, all overridable per `capture.start`. */
export const CAPTURE_DEFAULTS = {
  /** Intercepted destination ports. */
  ports: [443] as number[],
  /** fwmark set on intercepted packets so `ip rule` routes them to the local table. */
  mark: 0x2333,
  /** SO_MARK on the helper's own upstream sockets; the OUTPUT chain returns early on it (anti-loop). */
  bypassMark: 0x539,
  /**
   * The fwmark bits tproxy owns: marks are set with `ct mark set ct mark and ~mask or mark`, compared
   * as `mark and mask == ...` and routed by `fwmark mark/mask`, so bits outside it, set by other
   * users of fwmarks, are kept and ignored. 0x3fff (the low 14 bits) stays clear of kube-proxy's
   * 0x4000 (masquerade) and 0x8000 (drop), Tailscale's 0xff0000 and Calico's upper 16 bits.
   */
  markMask: 0x3fff,
  /** Policy-routing table holding `local 0.0.0.0/0` and `local ::/0`. */
  routeTable: 233,
  /** Transparent listener addresses and port. Loopback keeps the listener unreachable from outside. */
  listenV4: '127.0.0.1',
  listenV6: '::1',
  listenPort: 8443,
  /** Whether IPv6 destinations are intercepted too. */
  ipv6: true,
  /** Bytes of each body kept in the capture; the wire copy is never cut. */
  bodyCaptureLimit: 64 * 1024,
  /** Engine limits (see ENGINE_LIMIT_DEFAULTS). */
  limits: ENGINE_LIMIT_DEFAULTS,
} as const;

