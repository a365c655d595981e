import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatZodError } from '../validation.js';
import { CaptureStartParamsSchema, methods } from './index.js';

function startError(params: unknown): string {
  const r = CaptureStartParamsSchema.safeParse(params);
  assert.equal(r.success, false, `expected ${JSON.stringify(params)} to be rejected`);
  return formatZodError(r.error!);
}

describe('method registry', () => {
  it('has unique method names and strict params', () => {
    const names = Object.values(methods).map((m) => m.method);
    assert.equal(new Set(names).size, names.length);
    for (const m of Object.values(methods)) {
      assert.equal(m.params.safeParse({ unexpected: 1 }).success, false, `${m.method} must reject unknown params`);
    }
  });
});

describe('capture.start params', () => {
  it('fills every default', () => {
    assert.deepEqual(CaptureStartParamsSchema.parse({}), {
      ports: [443],
      mark: 0x2333,
      bypassMark: 0x539,
      markMask: 0x3fff,
      routeTable: 233,
      listenV4: '127.0.0.1',
      listenV6: '::1',
      listenPort: 8443,
      ipv6: true,
      bodyCaptureLimit: 65536,
      limits: {
        maxHeaderBytes: 65536,
        maxHeaderCount: 256,
        h2MaxConcurrentStreams: 256,
        maxConnectionsPerProcess: 1024,
        leafCacheSize: 1000,
        handshakeTimeoutSeconds: 10,
        clientIdleTimeoutSeconds: 120,
        upstreamIdleTimeoutSeconds: 60,
      },
    });
  });

  it('fills omitted limits and names a bad one', () => {
    assert.equal(CaptureStartParamsSchema.parse({ limits: { maxHeaderCount: 100 } }).limits.maxHeaderCount, 100);
    assert.equal(CaptureStartParamsSchema.parse({ limits: { maxHeaderCount: 100 } }).limits.leafCacheSize, 1000);
    assert.match(startError({ limits: { leafCacheSize: 1 } }), /^limits\.leafCacheSize: limits\.leafCacheSize must be between 16 and 100000/);
    assert.match(startError({ limits: { bogus: 1 } }), /bogus/);
  });

  it('names the bad field in each message', () => {
    assert.match(startError({ ports: [0] }), /^ports\[0\]: ports\[\] must be between 1 and 65535/);
    assert.match(startError({ ports: [70000] }), /ports\[0\]/);
    assert.match(startError({ ports: [] }), /^ports: .*at least one/);
    assert.match(startError({ ports: [443, 443] }), /^ports: .*repeat/);
    assert.match(startError({ ports: 'x' }), /^ports: /);
    assert.match(startError({ mark: 0 }), /^mark: mark must be greater than 0/);
    assert.match(startError({ mark: 2 ** 32 }), /^mark: .*32 bits/);
    assert.match(startError({ mark: 7, bypassMark: 7 }), /^bypassMark: bypassMark must differ from mark/);
    assert.match(startError({ routeTable: 0 }), /^routeTable: /);
    assert.match(startError({ routeTable: 2 ** 31 }), /^routeTable: /);
    assert.match(startError({ routeTable: 254 }), /^routeTable: .*reserved/);
    assert.match(startError({ listenV4: '::1' }), /^listenV4: /);
    assert.match(startError({ listenV6: '127.0.0.1' }), /^listenV6: /);
    assert.match(startError({ listenPort: 443 }), /^listenPort: .*intercept itself/);
    assert.match(startError({ mark: 1.5 }), /^mark: mark must be an integer/);
    assert.match(startError({ bogus: true }), /bogus/);
  });

  it('accepts the edges of each range', () => {
    const ok = CaptureStartParamsSchema.parse({ ports: [1, 65535], mark: 0xffffffff, bypassMark: 1, markMask: 0xffffffff, routeTable: 2 ** 31 - 1 });
    assert.deepEqual(ok.ports, [1, 65535]);
  });

  it('keeps mark and bypassMark within markMask and distinct under it', () => {
    assert.match(startError({ markMask: 0 }), /^markMask: markMask must be greater than 0/);
    assert.match(startError({ mark: 0x4000 }), /^mark: mark 0x4000 has bits outside markMask 0x3fff \(0x4000\); choose a mark within the mask or widen markMask/);
    assert.match(startError({ markMask: 0xff }), /bypassMark: bypassMark 0x539 has bits outside markMask 0xff \(0x500\)/);
    assert.match(startError({ markMask: 0xff }), /mark 0x2333 has bits outside markMask 0xff/);
    assert.match(startError({ mark: 0x12333 }), /^mark: mark 0x12333 has bits outside markMask 0x3fff \(0x10000\)/);
    assert.match(startError({ bypassMark: 0x12333 }), /bypassMark must differ from mark under markMask 0x3fff/);
    assert.equal(CaptureStartParamsSchema.parse({ mark: 0x80000000, bypassMark: 1, markMask: 0xffffffff }).mark, 0x80000000, 'the full 32-bit mask is accepted');
    const ok = CaptureStartParamsSchema.parse({ markMask: 0xff0000, mark: 0x230000, bypassMark: 0x10000 });
    assert.deepEqual([ok.mark, ok.bypassMark, ok.markMask], [0x230000, 0x10000, 0xff0000]);
  });
});
