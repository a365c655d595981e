/**
 * A pure reader for the first flight of an intercepted connection: is it TLS, and if so which
 * server name (SNI, RFC 6066 §3) and which ALPN protocols (RFC 7301 §3.1) does its ClientHello
 * carry. It never touches sockets: the engine feeds it every byte received so far and gets back
 * `need-more`, `not-tls`, `invalid` or the parsed hello. The handshake message may be split over
 * several TLS records and those records over several TCP segments (RFC 8446 §5.1 allows both);
 * the reader reassembles them, bounded by MAX_CLIENT_HELLO_BYTES so a peer cannot make us buffer
 * without end. Nothing is consumed: the engine replays the same bytes into TLS or the relay.
 */

/** A ClientHello larger than this is refused (real ones are < 2 KB; 16 KiB leaves room for post-quantum key shares). */
export const MAX_CLIENT_HELLO_BYTES = 16 * 1024;

const RECORD_HEADER = 5;
const CONTENT_HANDSHAKE = 0x16;
const HANDSHAKE_CLIENT_HELLO = 0x01;
/** RFC 8446 §5.1: a record fragment is at most 2^14 bytes. */
const MAX_RECORD_FRAGMENT = 1 << 14;
const EXT_SERVER_NAME = 0x0000;
const EXT_ALPN = 0x0010;
const SNI_HOST_NAME = 0x00;

export interface ParsedClientHello {
  kind: 'tls';
  /**
   * The host_name entry of server_name, decoded as UTF-8 (a valid name is ASCII; anything else is
   * left for sni.ts to judge). Absent when the client sent no SNI.
   */
  sni?: string;
  /** ALPN protocol names offered, in the client's order; empty when the extension is absent. */
  alpn: string[];
  /** Bytes of the records that carried the ClientHello. */
  length: number;
}

export type ClientHelloResult =
  | ParsedClientHello
  /** The bytes so far are a valid prefix: read more. */
  | { kind: 'need-more' }
  /** The first byte is not a TLS handshake record: some other protocol on this port. */
  | { kind: 'not-tls'; reason: string }
  /** It starts like TLS but the ClientHello is malformed or too large. */
  | { kind: 'invalid'; reason: string };

/** Reads big-endian fields from a buffer and throws Malformed past its end. */
class Reader {
  private pos = 0;
  constructor(private readonly buf: Buffer) {}
  get remaining(): number {
    return this.buf.length - this.pos;
  }
  u8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }
  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  bytes(n: number): Buffer {
    this.need(n);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
  /** A vector with a `lenBytes`-byte length prefix. */
  vector(lenBytes: 1 | 2): Buffer {
    return this.bytes(lenBytes === 1 ? this.u8() : this.u16());
  }
  private need(n: number): void {
    if (this.pos + n > this.buf.length) throw new Malformed('truncated field');
  }
}

class Malformed extends Error {}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Classifies and, when complete, parses the ClientHello at the start of `data`. */
export function parseClientHello(data: Buffer): ClientHelloResult {
  if (data.length === 0) return { kind: 'need-more' };
  if (data[0] !== CONTENT_HANDSHAKE) return { kind: 'not-tls', reason: `first byte 0x${data[0]!.toString(16).padStart(2, '0')} is not a TLS handshake record` };
  if (data.length >= 2 && data[1] !== 0x03) return { kind: 'not-tls', reason: 'record version is not TLS (0x03xx)' };

  // Reassemble the handshake message from as many records as it takes.
  const fragments: Buffer[] = [];
  let have = 0;
  let offset = 0;
  let want: number | undefined;
  while (want === undefined || have < want) {
    if (data.length < offset + RECORD_HEADER) return { kind: 'need-more' };
    if (data[offset] !== CONTENT_HANDSHAKE) return { kind: 'invalid', reason: 'a non-handshake record interrupts the ClientHello' };
    if (data[offset + 1] !== 0x03) return { kind: 'invalid', reason: 'record version is not TLS (0x03xx)' };
    const len = data.readUInt16BE(offset + 3);
    if (len === 0 || len > MAX_RECORD_FRAGMENT) return { kind: 'invalid', reason: `record length ${len} out of range` };
    if (offset + RECORD_HEADER + len > MAX_CLIENT_HELLO_BYTES + RECORD_HEADER * 4) return { kind: 'invalid', reason: `ClientHello exceeds ${MAX_CLIENT_HELLO_BYTES} bytes` };
    if (data.length < offset + RECORD_HEADER + len) return { kind: 'need-more' };
    fragments.push(data.subarray(offset + RECORD_HEADER, offset + RECORD_HEADER + len));
    have += len;
    offset += RECORD_HEADER + len;
    if (want === undefined && have >= 4) {
      const head = Buffer.concat(fragments);
      if (head[0] !== HANDSHAKE_CLIENT_HELLO) return { kind: 'invalid', reason: `first handshake message is type ${head[0]}, not ClientHello` };
      const bodyLen = head.readUIntBE(1, 3);
      if (bodyLen > MAX_CLIENT_HELLO_BYTES) return { kind: 'invalid', reason: `ClientHello of ${bodyLen} bytes exceeds ${MAX_CLIENT_HELLO_BYTES}` };
      want = 4 + bodyLen;
    }
  }
  const message = Buffer.concat(fragments).subarray(4, want);
  try {
    return { kind: 'tls', ...parseBody(message), length: offset };
  } catch (err) {
    if (err instanceof Malformed) return { kind: 'invalid', reason: `malformed ClientHello: ${err.message}` };
    throw err;
  }
}

function parseBody(body: Buffer): { sni?: string; alpn: string[] } {
  const r = new Reader(body);
  const version = r.u16();
  if (version >> 8 !== 0x03) throw new Malformed(`legacy_version 0x${version.toString(16)}`);
  r.bytes(32); // random
  if (r.vector(1).length > 32) throw new Malformed('session id longer than 32 bytes');
  const suites = r.vector(2);
  if (suites.length === 0 || suites.length % 2 !== 0) throw new Malformed('bad cipher_suites length');
  if (r.vector(1).length === 0) throw new Malformed('no compression methods');
  const out: { sni?: string; alpn: string[] } = { alpn: [] };
  if (r.remaining === 0) return out; // no extensions at all (SSL 3.0 style)
  const exts = new Reader(r.vector(2));
  if (r.remaining !== 0) throw new Malformed('bytes after the extensions');
  const seen = new Set<number>();
  while (exts.remaining > 0) {
    const type = exts.u16();
    const ext = exts.vector(2);
    // RFC 8446 §4.2: at most one extension of each type.
    if (seen.has(type)) throw new Malformed(`duplicate extension ${type}`);
    seen.add(type);
    if (type === EXT_SERVER_NAME) {
      const sni = parseServerName(ext);
      if (sni !== undefined) out.sni = sni;
    } else if (type === EXT_ALPN) {
      out.alpn = parseAlpn(ext);
    }
  }
  return out;
}

function parseServerName(ext: Buffer): string | undefined {
  const r = new Reader(ext);
  const list = new Reader(r.vector(2));
  if (r.remaining !== 0) throw new Malformed('bytes after server_name_list');
  let name: string | undefined;
  while (list.remaining > 0) {
    const type = list.u8();
    const value = list.vector(2);
    if (type !== SNI_HOST_NAME) continue; // unknown name types are skipped (RFC 6066 §3)
    // RFC 6066 §3: at most one name of a given type.
    if (name !== undefined) throw new Malformed('more than one host_name');
    if (value.length === 0) throw new Malformed('empty host_name');
    try {
      name = utf8.decode(value);
    } catch {
      throw new Malformed('host_name is not UTF-8');
    }
  }
  return name;
}

function parseAlpn(ext: Buffer): string[] {
  const r = new Reader(ext);
  const list = new Reader(r.vector(2));
  if (r.remaining !== 0) throw new Malformed('bytes after protocol_name_list');
  const out: string[] = [];
  while (list.remaining > 0) {
    const name = list.vector(1);
    // RFC 7301 §3.1: empty names are not allowed.
    if (name.length === 0) throw new Malformed('empty ALPN protocol name');
    out.push(name.toString('latin1'));
  }
  if (out.length === 0) throw new Malformed('empty ALPN list');
  return out;
}
