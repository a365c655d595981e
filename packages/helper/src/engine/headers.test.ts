import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { requestUrl, stripHopByHop } from './headers.js';

describe('stripHopByHop', () => {
  it('drops hop-by-hop fields and those named by Connection', () => {
    const raw = ['Host', 'a', 'Connection', 'keep-alive, X-Hop', 'Keep-Alive', 'timeout=5', 'X-Hop', '1', 'TE', 'trailers', 'Upgrade', 'h2c', 'Proxy-Connection', 'x', 'X-End', '2'];
    assert.deepEqual(stripHopByHop(raw), ['Host', 'a', 'X-End', '2']);
  });

  it('keeps Transfer-Encoding on request when asked, drops it otherwise', () => {
    const raw = ['Transfer-Encoding', 'chunked', 'Content-Type', 'x'];
    assert.deepEqual(stripHopByHop(raw, true), raw);
    assert.deepEqual(stripHopByHop(raw), ['Content-Type', 'x']);
  });

  it('keeps case and duplicates', () => {
    assert.deepEqual(stripHopByHop(['set-cookie', 'a=1', 'Set-Cookie', 'b=2']), ['set-cookie', 'a=1', 'Set-Cookie', 'b=2']);
  });
});

describe('requestUrl', () => {
  it('prefers a valid Host header', () => {
    assert.equal(requestUrl('/p?q=1', 'api.test', 'sni.test', '198.18.0.2', 443), 'https://api.test/p?q=1');
    assert.equal(requestUrl('/', 'api.test:8443', undefined, '198.18.0.2', 8443), 'https://api.test:8443/');
  });

  it('falls back to SNI, then the address, adding non-default ports', () => {
    assert.equal(requestUrl('/x', undefined, 'sni.test', '198.18.0.2', 443), 'https://sni.test/x');
    assert.equal(requestUrl('/x', 'bad host/evil', undefined, 'fd00::2', 8443), 'https://[fd00::2]:8443/x');
  });

  it('keeps absolute-form targets', () => {
    assert.equal(requestUrl('https://a.test/z', 'b.test', undefined, '1.2.3.4', 443), 'https://a.test/z');
  });
});
