/**
 * The WebSocket frame parser on hand-built RFC 6455 frames: masking, fragmentation with control
 * frames in between, every length encoding, frames split at every byte, the text budget, and
 * garbage that must stop parsing without throwing.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { WS_MESSAGE_RECORD_CAP, WebSocketTracker } from './websocket.js';

/** One frame; `mask` given → masked as a client must. */
function frame(opcode: number, payload: Buffer | string, opts: { fin?: boolean; mask?: Buffer; rsv1?: boolean; rawLen?: Buffer } = {}): Buffer {
  const data = Buffer.from(payload);
  const b0 = (opts.fin === false ? 0 : 0x80) | (opts.rsv1 ? 0x40 : 0) | opcode;
  const maskBit = opts.mask ? 0x80 : 0;
  let len: Buffer;
  if (opts.rawLen) len = opts.rawLen;
  else if (data.length < 126) len = Buffer.from([maskBit | data.length]);
  else if (data.length < 65536) {
    len = Buffer.alloc(3);
    len[0] = maskBit | 126;
    len.writeUInt16BE(data.length, 1);
  } else {
    len = Buffer.alloc(9);
    len[0] = maskBit | 127;
    len.writeBigUInt64BE(BigInt(data.length), 1);
  }
  const body = Buffer.from(data);
  if (opts.mask) for (let i = 0; i < body.length; i++) body[i]! ^= opts.mask[i & 3]!;
  return Buffer.concat([Buffer.from([b0]), len, opts.mask ?? Buffer.alloc(0), body]);
}

const MASK = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);
const T0 = 1_700_000_000_000;

describe('WebSocketTracker', () => {
  it('counts masked client text and unmasked server binary, with the text unmasked', () => {
    const ws = new WebSocketTracker(1024, undefined, () => T0);
    const up = frame(1, 'hello', { mask: MASK });
    const down = frame(2, Buffer.from([0, 1, 2, 3]));
    ws.up.push(up);
    ws.down.push(down);
    const info = ws.info();
    assert.equal(info.messagesUp, 1);
    assert.equal(info.messagesDown, 1);
    assert.equal(info.bytesUp, up.length);
    assert.equal(info.bytesDown, down.length);
    assert.deepEqual(info.messages, [
      { dir: 'up', time: T0, opcode: 1, size: 5, text: 'hello' },
      { dir: 'down', time: T0, opcode: 2, size: 4 },
    ]);
  });

  it('reassembles a fragmented message around a ping, fed one byte at a time', () => {
    const ws = new WebSocketTracker(1024, undefined, () => T0);
    const stream = Buffer.concat([
      frame(1, 'héllo ', { fin: false, mask: MASK }),
      frame(9, 'p', { mask: MASK }),
      frame(0, 'wor', { fin: false, mask: MASK }),
      frame(0, 'ld', { mask: MASK }),
    ]);
    for (const b of stream) ws.up.push(Buffer.from([b]));
    const info = ws.info();
    assert.equal(info.error, undefined);
    assert.equal(info.messagesUp, 1);
    assert.deepEqual(
      info.messages.map((m) => [m.opcode, m.size, m.text]),
      [
        [9, 1, undefined],
        [1, Buffer.byteLength('héllo world'), 'héllo world'],
      ],
    );
    assert.equal(info.bytesUp, stream.length);
  });

  it('reads 16-bit and 64-bit lengths and keeps text only up to the budget', () => {
    const ws = new WebSocketTracker(100);
    const big = 'a'.repeat(70_000);
    ws.down.push(frame(1, 'x'.repeat(300)));
    ws.down.push(frame(1, big));
    const info = ws.info();
    assert.equal(info.messagesDown, 2);
    assert.equal(info.messages[0]!.size, 300);
    assert.equal(info.messages[0]!.text, 'x'.repeat(100));
    assert.equal(info.messages[0]!.truncated, true);
    assert.equal(info.messages[1]!.size, 70_000);
    assert.equal(info.messages[1]!.text, undefined, 'the budget is spent');
    assert.equal(info.messages[1]!.truncated, true);
    assert.ok(ws.approxBytes() < 1000, 'memory stays bounded by the budget');
  });

  it('records the close code and reason, and an empty text message', () => {
    const ws = new WebSocketTracker(1024);
    ws.up.push(frame(1, '', { mask: MASK }));
    const close = Buffer.concat([Buffer.from([0x03, 0xe8]), Buffer.from('bye')]);
    ws.up.push(frame(8, close, { mask: MASK }));
    ws.down.push(frame(8, close));
    const info = ws.info();
    assert.equal(info.closeCode, 1000);
    assert.equal(info.messages[0]!.text, '');
    assert.deepEqual(
      info.messages.slice(1).map((m) => [m.dir, m.closeCode, m.text]),
      [
        ['up', 1000, 'bye'],
        ['down', 1000, 'bye'],
      ],
    );
  });

  it('counts permessage-deflate messages without decoding them', () => {
    const ws = new WebSocketTracker(1024);
    ws.down.push(frame(1, Buffer.from([0xf2, 0x48, 0xcd]), { rsv1: true }));
    assert.deepEqual(ws.info().messages.map((m) => [m.size, m.compressed, m.text]), [[3, true, undefined]]);
  });

  it('stops at a length past 2^53 without allocating, and keeps counting bytes', () => {
    const ws = new WebSocketTracker(1024);
    const raw = Buffer.alloc(9);
    raw[0] = 127;
    raw.writeBigUInt64BE(0x7fff_ffff_ffff_ffffn, 1);
    ws.down.push(Buffer.concat([Buffer.from([0x82]), raw]));
    ws.down.push(Buffer.alloc(1000));
    const info = ws.info();
    assert.match(info.error ?? '', /^server: frame length .* out of range/);
    assert.equal(info.bytesDown, 10 + 1000);
    assert.equal(info.messages.length, 0);
  });

  it('accepts a declared length it cannot see the end of, without buffering the payload', () => {
    const ws = new WebSocketTracker(16);
    const head = Buffer.alloc(10);
    head[0] = 0x82;
    head[1] = 127;
    head.writeBigUInt64BE(1n << 40n, 2);
    ws.down.push(head);
    for (let i = 0; i < 64; i++) ws.down.push(Buffer.alloc(64 * 1024));
    const info = ws.info();
    assert.equal(info.error, undefined);
    assert.equal(info.messages.length, 0, 'the message has not ended');
    assert.ok(ws.approxBytes() < 100);
  });

  const violations: [string, Buffer, RegExp][] = [
    ['a reserved data opcode', frame(3, 'x'), /reserved data opcode 3/],
    ['a reserved control opcode', frame(0xb, 'x'), /reserved control opcode 11/],
    ['a fragmented control frame', frame(9, 'x', { fin: false }), /fragmented control frame/],
    ['a control frame over 125 bytes', frame(9, 'x'.repeat(126)), /control frame payload of 126/],
    ['a continuation with no message', frame(0, 'x'), /continuation frame without a message/],
    ['a new message inside a fragmented one', Buffer.concat([frame(1, 'a', { fin: false }), frame(1, 'b')]), /new data frame before/],
    ['RSV2 set', Buffer.from([0xa1, 0x00]), /RSV2\/RSV3/],
    ['HTTP instead of frames', Buffer.from('GET / HTTP/1.1\r\n\r\n'), /reserved|RSV/],
  ];
  for (const [name, bytes, why] of violations) {
    it(`stops parsing at ${name}`, () => {
      const ws = new WebSocketTracker(1024);
      ws.down.push(bytes);
      ws.down.push(frame(1, 'after'));
      const info = ws.info();
      assert.match(info.error ?? '', why);
      assert.equal(info.messagesDown, 0, 'nothing counted after the violation');
      assert.equal(info.bytesDown, bytes.length + 7);
    });
  }

  it('keeps at most the record cap of messages while the counters go on', () => {
    let changes = 0;
    const ws = new WebSocketTracker(1024, () => changes++);
    const many = Buffer.concat(Array.from({ length: WS_MESSAGE_RECORD_CAP + 50 }, () => frame(2, 'z')));
    ws.down.push(many);
    const info = ws.info();
    assert.equal(info.messagesDown, WS_MESSAGE_RECORD_CAP + 50);
    assert.equal(info.messages.length, WS_MESSAGE_RECORD_CAP);
    assert.equal(changes, WS_MESSAGE_RECORD_CAP + 50);
  });

  it('hands out copies: a snapshot does not change afterwards', () => {
    const ws = new WebSocketTracker(1024);
    ws.up.push(frame(1, 'one', { mask: MASK }));
    const before = ws.info();
    ws.up.push(frame(1, 'two', { mask: MASK }));
    assert.equal(before.messages.length, 1);
    assert.equal(before.messagesUp, 1);
  });
});
