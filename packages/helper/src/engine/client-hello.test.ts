/**
 * The ClientHello reader against real first flights (captured live from Node's tls, openssl
 * s_client and curl on loopback), the same bytes split at every offset and re-framed into many small
 * records, and hostile inputs: other protocols, truncation, oversize lengths, duplicate extensions.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import tls from 'node:tls';
import { describe, it } from 'node:test';
import { MAX_CLIENT_HELLO_BYTES, parseClientHello } from './client-hello.js';

/** Listens on loopback, runs `start(port)` and returns the first bytes a client sent, up to `ms`. */
async function capture(start: (port: number) => () => void, ms = 5000): Promise<Buffer> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  let stop: (() => void) | undefined;
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no ClientHello captured')), ms);
      server.once('connection', (s) => {
        const chunks: Buffer[] = [];
        s.on('data', (d: Buffer) => {
          chunks.push(d);
          const all = Buffer.concat(chunks);
          if (parseClientHello(all).kind !== 'need-more') {
            clearTimeout(timer);
            resolve(all);
            s.destroy();
          }
        });
        s.on('error', () => undefined);
      });
      stop = start(port);
    });
  } finally {
    stop?.();
    server.close();
  }
}

function nodeClient(opts: tls.ConnectionOptions) {
  return (port: number) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...opts });
    s.on('error', () => undefined);
    return () => s.destroy();
  };
}

function command(argv: string[]) {
  return (port: number) => {
    const child = spawn(argv[0]!, argv.slice(1).map((a) => a.replace('PORT', String(port))), { stdio: ['pipe', 'ignore', 'ignore'] });
    child.on('error', () => undefined);
    return () => child.kill();
  };
}

/** Re-frames one TLS record's payload into records of at most `size` bytes. */
function reframe(hello: Buffer, size: number): Buffer {
  const payload = hello.subarray(5, 5 + hello.readUInt16BE(3));
  const out: Buffer[] = [];
  for (let i = 0; i < payload.length; i += size) {
    const part = payload.subarray(i, i + size);
    const head = Buffer.from([0x16, 0x03, 0x01, 0, 0]);
    head.writeUInt16BE(part.length, 3);
    out.push(head, part);
  }
  return Buffer.concat(out);
}

/** A minimal hand-built ClientHello with the given extensions (type, data). */
function handBuilt(extensions: Array<[number, Buffer]>): Buffer {
  const ext = Buffer.concat(extensions.map(([t, d]) => Buffer.concat([u16(t), u16(d.length), d])));
  const body = Buffer.concat([Buffer.from([0x03, 0x03]), Buffer.alloc(32), Buffer.from([0]), u16(2), Buffer.from([0x13, 0x01]), Buffer.from([1, 0]), u16(ext.length), ext]);
  const hs = Buffer.concat([Buffer.from([1, body.length >> 16, (body.length >> 8) & 255, body.length & 255]), body]);
  return Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), u16(hs.length), hs]);
}
function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}
function sniExt(...names: Buffer[]): Buffer {
  const list = Buffer.concat(names.map((n) => Buffer.concat([Buffer.from([0]), u16(n.length), n])));
  return Buffer.concat([u16(list.length), list]);
}
function alpnExt(...protos: string[]): Buffer {
  const list = Buffer.concat(protos.map((p) => Buffer.concat([Buffer.from([p.length]), Buffer.from(p, 'latin1')])));
  return Buffer.concat([u16(list.length), list]);
}

describe('parseClientHello on real clients', () => {
  it('reads SNI and ALPN from Node tls', async () => {
    const hello = await capture(nodeClient({ servername: 'Node.Example', ALPNProtocols: ['h2', 'http/1.1'] }));
    const r = parseClientHello(hello);
    assert.equal(r.kind, 'tls');
    assert.ok(r.kind === 'tls');
    assert.equal(r.sni, 'Node.Example');
    assert.deepEqual(r.alpn, ['h2', 'http/1.1']);
    assert.equal(r.length, hello.length);
  });

  it('sees no SNI and no ALPN when Node sends none', async () => {
    const r = parseClientHello(await capture(nodeClient({ servername: '' })));
    assert.deepEqual(r.kind === 'tls' ? [r.sni, r.alpn] : r, [undefined, []]);
  });

  it('reads openssl s_client with and without -servername', async () => {
    const withName = parseClientHello(await capture(command(['openssl', 's_client', '-connect', '127.0.0.1:PORT', '-servername', 'ossl.test', '-alpn', 'h2,http/1.1'])));
    assert.deepEqual(withName.kind === 'tls' ? [withName.sni, withName.alpn] : withName, ['ossl.test', ['h2', 'http/1.1']]);
    const without = parseClientHello(await capture(command(['openssl', 's_client', '-connect', '127.0.0.1:PORT', '-noservername'])));
    assert.deepEqual(without.kind === 'tls' ? [without.sni, without.alpn] : without, [undefined, []]);
  });

  it('reads curl --http2', async () => {
    const hello = await capture(command(['curl', '-sk', '--http2', '--connect-to', 'curl.test:443:127.0.0.1:PORT', 'https://curl.test/']));
    const r = parseClientHello(hello);
    assert.equal(r.kind === 'tls' && r.sni, 'curl.test');
    assert.ok(r.kind === 'tls' && r.alpn.includes('h2') && r.alpn.includes('http/1.1'), JSON.stringify(r));
  });

  it('asks for more at every split point, then parses the whole', async () => {
    const hello = await capture(nodeClient({ servername: 'split.test', ALPNProtocols: ['http/1.1'] }));
    for (let i = 0; i < hello.length; i++) assert.equal(parseClientHello(hello.subarray(0, i)).kind, 'need-more', `prefix ${i}`);
    const r = parseClientHello(Buffer.concat([hello, Buffer.from('trailing application bytes')]));
    assert.equal(r.kind === 'tls' && r.length, hello.length);
  });

  it('reassembles a ClientHello spread over many records', async () => {
    const hello = await capture(nodeClient({ servername: 'records.test', ALPNProtocols: ['h2'] }));
    for (const size of [1, 3, 64, 500]) {
      const framed = reframe(hello, size);
      const r = parseClientHello(framed);
      assert.deepEqual(r.kind === 'tls' ? [r.sni, r.alpn, r.length] : r, ['records.test', ['h2'], framed.length], `records of ${size}`);
      assert.equal(parseClientHello(framed.subarray(0, framed.length - 1)).kind, 'need-more');
    }
  });
});

describe('parseClientHello on hostile or foreign input', () => {
  it('says not-tls for other protocols', () => {
    for (const text of ['GET / HTTP/1.1\r\n', 'SSH-2.0-OpenSSH\r\n', '\x80\x2e\x01\x03\x01']) {
      assert.equal(parseClientHello(Buffer.from(text, 'latin1')).kind, 'not-tls', JSON.stringify(text));
    }
    assert.equal(parseClientHello(Buffer.from([0x16, 0x02])).kind, 'not-tls');
  });

  it('refuses oversized and zero-length records, and a non-ClientHello first message', () => {
    assert.equal(parseClientHello(Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff, 0x00])).kind, 'invalid');
    assert.equal(parseClientHello(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x00])).kind, 'invalid');
    assert.equal(parseClientHello(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0, 0, 0])).kind, 'invalid');
    // A handshake length of 16 MB is refused at once, not waited for.
    assert.equal(parseClientHello(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0xff, 0xff, 0xff])).kind, 'invalid');
  });

  it('bounds the bytes it will wait for', () => {
    // Many tiny records: legal framing, but past the bound it is refused rather than buffered.
    const record = Buffer.from([0x16, 0x03, 0x01, 0x00, 0x01, 0x01]);
    const many = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x3f, 0xff]), ...Array.from({ length: 4000 }, () => record)]);
    const r = parseClientHello(many);
    assert.equal(r.kind, 'invalid');
    assert.ok(many.length > MAX_CLIENT_HELLO_BYTES);
  });

  it('refuses a record of another type inside the hello', () => {
    const hello = reframe(handBuilt([[0, sniExt(Buffer.from('a.test'))]]), 10);
    const broken = Buffer.from(hello);
    broken[15] = 0x17;
    assert.equal(parseClientHello(broken).kind, 'invalid');
  });

  it('parses hand-built hellos and refuses malformed extensions', () => {
    const ok = parseClientHello(handBuilt([[0, sniExt(Buffer.from('a.test'))], [16, alpnExt('h2', 'http/1.1')]]));
    assert.deepEqual(ok.kind === 'tls' ? [ok.sni, ok.alpn] : ok, ['a.test', ['h2', 'http/1.1']]);
    const bad: Array<[string, Array<[number, Buffer]>]> = [
      ['duplicate SNI extension', [[0, sniExt(Buffer.from('a'))], [0, sniExt(Buffer.from('b'))]]],
      ['two host names', [[0, sniExt(Buffer.from('a'), Buffer.from('b'))]]],
      ['empty host name', [[0, sniExt(Buffer.alloc(0))]]],
      ['SNI not UTF-8', [[0, sniExt(Buffer.from([0xff, 0xfe]))]]],
      ['SNI list length past the end', [[0, Buffer.from([0x00, 0x40, 0x00, 0x00, 0x01, 0x61])]]],
      ['empty ALPN name', [[16, Buffer.from([0x00, 0x01, 0x00])]]],
      ['empty ALPN list', [[16, Buffer.from([0x00, 0x00])]]],
    ];
    for (const [what, exts] of bad) assert.equal(parseClientHello(handBuilt(exts)).kind, 'invalid', what);
  });

  it('keeps a NUL or non-ASCII SNI as sent for sni.ts to refuse', () => {
    const r = parseClientHello(handBuilt([[0, sniExt(Buffer.from('a\u0000.test'))]]));
    assert.equal(r.kind === 'tls' && r.sni, 'a\u0000.test');
    const idn = parseClientHello(handBuilt([[0, sniExt(Buffer.from('bücher.test'))]]));
    assert.equal(idn.kind === 'tls' && idn.sni, 'bücher.test');
  });

  it('never throws on random bytes after a TLS header', () => {
    for (let i = 0; i < 2000; i++) {
      const len = 4 + Math.floor(Math.random() * 200);
      const body = Buffer.from(Array.from({ length: len }, () => Math.floor(Math.random() * 256)));
      body[0] = 1;
      body.writeUIntBE(len - 4, 1, 3);
      const data = Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), u16(len), body]);
      const r = parseClientHello(data);
      assert.ok(['tls', 'invalid'].includes(r.kind), r.kind);
    }
  });
});
