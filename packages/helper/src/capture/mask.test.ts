import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { maskHeaderValue, maskRawHeaders, maskSecret } from './mask.js';

describe('header masking', () => {
  it('keeps the auth scheme and a short prefix of the credential', () => {
    const masked = maskHeaderValue('Authorization', 'Bearer sk-live-0123456789abcdef');
    assert.equal(masked, 'Bearer sk-l…[masked 24]');
    assert.ok(!masked.includes('0123456789'));
  });

  it('masks proxy-authorization, api-key-like and token headers', () => {
    for (const name of ['Proxy-Authorization', 'X-Api-Key', 'api-key', 'x-goog-api-key', 'X-Auth-Token', 'X-Amz-Security-Token', 'private-token', 'x-client-secret']) {
      const masked = maskHeaderValue(name, 'supersecretvalue1234');
      assert.ok(!masked.includes('secretvalue1234'), `${name} was not masked: ${masked}`);
      assert.match(masked, /\[masked 20\]$/);
    }
  });

  it('keeps cookie names and masks each value', () => {
    assert.equal(maskHeaderValue('Cookie', 'sid=abcdef123456; theme=dark'), 'sid=abc…[masked 12]; theme=d…[masked 4]');
  });

  it('keeps set-cookie attributes and masks only the value', () => {
    assert.equal(maskHeaderValue('Set-Cookie', 'sid=abcdef123456; Path=/; HttpOnly'), 'sid=abc…[masked 12]; Path=/; HttpOnly');
  });

  it('leaves ordinary headers untouched', () => {
    assert.equal(maskHeaderValue('Content-Type', 'application/json'), 'application/json');
    assert.equal(maskHeaderValue('Accept', '*/*'), '*/*');
  });

  it('never reveals more than a quarter of a short secret', () => {
    assert.equal(maskSecret('abc'), '…[masked 3]');
    assert.equal(maskSecret(''), '…[masked 0]');
  });

  it('maps raw headers to masked pairs in wire order, duplicates kept', () => {
    assert.deepEqual(maskRawHeaders(['Host', 'a.test', 'Cookie', 'a=1234', 'cookie', 'b=5678']), [
      ['Host', 'a.test'],
      ['Cookie', 'a=1…[masked 4]'],
      ['cookie', 'b=5…[masked 4]'],
    ]);
  });
});
