import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { forwardableFields, h2ErrorName, splitPseudo, toHeaderObject } from './h2-headers.js';

describe('h2 headers', () => {
  it('splits pseudo-headers from fields, first of each pseudo-header wins, field order kept', () => {
    const raw = [':method', 'GET', 'b', '2', ':path', '/x', 'a', '1', ':path', '/evil', 'b', '3'];
    assert.deepEqual(splitPseudo(raw), { pseudo: { ':method': 'GET', ':path': '/x' }, fields: ['b', '2', 'a', '1', 'b', '3'] });
  });

  it('drops connection-specific fields and any te but trailers (RFC 9113 §8.2.2)', () => {
    const fields = ['Connection', 'close', 'keep-alive', '5', 'transfer-encoding', 'chunked', 'upgrade', 'h2c', 'proxy-connection', 'x', 'te', 'gzip', 'x-a', '1'];
    assert.deepEqual(forwardableFields(fields), ['x-a', '1']);
    assert.deepEqual(forwardableFields(['TE', ' Trailers ', 'content-type', 'application/grpc']), ['te', ' Trailers ', 'content-type', 'application/grpc']);
  });

  it('builds Node header objects with repeated fields as arrays, pseudo-headers first', () => {
    const h = toHeaderObject({ ':status': 200 }, ['set-cookie', 'a=1', 'x', 'y', 'set-cookie', 'b=2', 'set-cookie', 'c=3']);
    assert.deepEqual(Object.keys(h), [':status', 'set-cookie', 'x']);
    assert.deepEqual(h['set-cookie'], ['a=1', 'b=2', 'c=3']);
  });

  it('names error codes, unknown ones in hex', () => {
    assert.equal(h2ErrorName(0), 'NO_ERROR');
    assert.equal(h2ErrorName(8), 'CANCEL');
    assert.equal(h2ErrorName(13), 'HTTP_1_1_REQUIRED');
    assert.equal(h2ErrorName(0x1f), '0x1f');
  });
});
