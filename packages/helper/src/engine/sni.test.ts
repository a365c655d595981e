import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canonicalSni } from './sni.js';

function name(input: string): string | undefined {
  const d = canonicalSni(input);
  return d.ok ? d.name : undefined;
}

describe('canonicalSni', () => {
  it('lower-cases ASCII and drops the root dot', () => {
    assert.equal(name('WWW.Example.COM.'), 'www.example.com');
    assert.equal(name('a-b.c0'), 'a-b.c0');
  });

  it('turns IDN labels into A-labels and keeps valid A-labels', () => {
    assert.equal(name('bücher.example'), 'xn--bcher-kva.example');
    assert.equal(name('xn--bcher-kva.example'), 'xn--bcher-kva.example');
    assert.equal(name('faß.de'), 'xn--fa-hia.de');
  });

  it('refuses Unicode that IDNA would map to another name', () => {
    // U+212A KELVIN SIGN maps to "k": the client did not send "k.example".
    assert.equal(canonicalSni('\u212a.example').ok, false);
    assert.equal(canonicalSni('bÜcher.example').ok, false, 'upper-case non-ASCII is mapped, so refused');
    assert.equal(name('Bücher.example'), 'xn--bcher-kva.example', 'ASCII letters are simply lower-cased');
    assert.equal(canonicalSni('e\u0301.example').ok, false, 'not NFC');
    assert.equal(canonicalSni('xn--zz.example').ok, false, 'undecodable A-label');
  });

  it('gives IP literals their normal form', () => {
    assert.deepEqual(canonicalSni('192.0.2.1'), { ok: true, kind: 'ip', name: '192.0.2.1' });
    assert.deepEqual(canonicalSni('2001:DB8:0:0::1'), { ok: true, kind: 'ip', name: '2001:db8::1' });
    assert.deepEqual(canonicalSni('[::ffff:192.0.2.1]'), { ok: true, kind: 'ip', name: '192.0.2.1' });
  });

  it('refuses wildcards, bad characters and bad lengths', () => {
    for (const bad of ['*.example.com', 'a*.example', '', '.', 'a..b', '-a.example', 'a-.example', 'a b.example', 'a\u0000.example', 'a/b', 'x@y', `${'a'.repeat(64)}.example`, `${'a.'.repeat(127)}aa`, '1.2.3', 'example.123']) {
      const d = canonicalSni(bad);
      assert.equal(d.ok, false, JSON.stringify(bad));
      assert.equal(!d.ok && d.code, 'invalid', JSON.stringify(bad));
    }
  });

  it('marks underscore names for passthrough', () => {
    const d = canonicalSni('my_host.example.com');
    assert.equal(d.ok, false);
    assert.equal(!d.ok && d.code, 'underscore');
  });

  it('accepts the longest legal name', () => {
    const longest = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`;
    assert.equal(longest.length, 253);
    assert.equal(name(`${longest}.`), longest);
  });
});
