import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sampleExchange } from '../test/fixtures.js';
import { isActive, matchesFilter, parseFilter } from './filter.js';

const get = sampleExchange({ id: 1 });
const post = sampleExchange({
  id: 2,
  request: { ...get.request, method: 'POST', url: 'https://api.example.com:8443/v1/Orders?x=1' },
  response: { ...get.response!, status: 404 },
});
const failed = sampleExchange({ id: 3, state: 'error', response: undefined, error: { kind: 'upstream-tls', message: 'bad cert' } });
const pending = sampleExchange({ id: 4, state: 'in-flight', response: undefined, request: { ...get.request, url: 'https://[::1]:8443/x' } });
const all = [get, post, failed, pending];

function ids(text: string): number[] {
  const f = parseFilter(text);
  return all.filter((ex) => matchesFilter(f, ex)).map((ex) => ex.id);
}

describe('filter', () => {
  test('empty text matches everything and is not active', () => {
    assert.deepEqual(ids(''), [1, 2, 3, 4]);
    assert.equal(isActive(parseFilter('   ')), false);
  });

  test('free words match a URL substring, case-insensitively, all of them', () => {
    assert.deepEqual(ids('orders'), [2]);
    assert.deepEqual(ids('example index'), [1, 3]);
    assert.deepEqual(ids('"v1/orders?x"'), [2]);
  });

  test('host: globs are anchored; plain words are substrings; ports and brackets are not part of the host', () => {
    assert.deepEqual(ids('host:*.example.com'), [2]);
    assert.deepEqual(ids('host:example.com'), [1, 2, 3]);
    assert.deepEqual(ids('host:exa?ple.com'), [1, 3]);
    assert.deepEqual(ids('host:::1'), [4]);
    assert.deepEqual(ids('host:8443'), []);
  });

  test('method: takes a comma list, any case', () => {
    assert.deepEqual(ids('method:post'), [2]);
    assert.deepEqual(ids('method:GET,POST'), [1, 2, 3, 4]);
  });

  test('status: code, class and range; exchanges without a response never match', () => {
    assert.deepEqual(ids('status:404'), [2]);
    assert.deepEqual(ids('status:2xx'), [1]);
    assert.deepEqual(ids('status:4XX'), [2]);
    assert.deepEqual(ids('status:200-499'), [1, 2]);
  });

  test('is:error, is:in-flight; negation with - or !', () => {
    assert.deepEqual(ids('is:error'), [3]);
    assert.deepEqual(ids('is:in-flight'), [4]);
    assert.deepEqual(ids('-is:error'), [1, 2, 4]);
    assert.deepEqual(ids('!method:GET'), [2]);
    assert.deepEqual(ids('-orders'), [1, 3, 4]);
  });

  test('a key with no value yet is ignored; a malformed value is reported and ignored', () => {
    assert.deepEqual(ids('status:'), [1, 2, 3, 4]);
    const f = parseFilter('status:4 is:weird orders');
    assert.equal(f.errors.length, 2);
    assert.match(f.errors[0]!, /^status:4: /);
    assert.match(f.errors[1]!, /^is:weird: /);
    assert.deepEqual(all.filter((ex) => matchesFilter(f, ex)).map((ex) => ex.id), [2]);
  });

  test('unknown keys are plain words (a URL may contain a colon)', () => {
    assert.deepEqual(ids('https://api'), [2]);
  });
});
