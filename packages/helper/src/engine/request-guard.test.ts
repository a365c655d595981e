import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkRequestHead, tooManyResponseHeaders } from './request-guard.js';

const limits = { maxHeaderCount: 3 };

describe('checkRequestHead', () => {
  it('accepts an ordinary head at the field limit', () => {
    assert.equal(checkRequestHead('1.1', ['Host', 'a', 'Accept', '*/*', 'Transfer-Encoding', 'chunked'], limits), undefined);
  });

  it('refuses one field over the limit with 431', () => {
    const r = checkRequestHead('1.1', ['Host', 'a', 'A', '1', 'B', '2', 'C', '3'], limits);
    assert.deepEqual(r, { status: 431, statusMessage: 'Request Header Fields Too Large', reason: 'the request has more than 3 header fields' });
  });

  it('refuses two Host fields, in any case', () => {
    assert.equal(checkRequestHead('1.1', ['Host', 'a', 'HOST', 'b'], limits)?.status, 400);
  });

  it('refuses Transfer-Encoding outside HTTP/1.1', () => {
    assert.match(checkRequestHead('1.0', ['Host', 'a', 'transfer-encoding', 'chunked'], limits)?.reason ?? '', /HTTP\/1\.0/);
    assert.equal(checkRequestHead('1.0', ['Host', 'a', 'Content-Length', '3'], limits), undefined);
  });
});

describe('tooManyResponseHeaders', () => {
  it('counts pairs, not entries', () => {
    assert.equal(tooManyResponseHeaders(['A', '1', 'B', '2', 'C', '3'], limits), undefined);
    assert.match(tooManyResponseHeaders(['A', '1', 'B', '2', 'C', '3', 'D', '4'], limits) ?? '', /more than 3/);
  });
});
