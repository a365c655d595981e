import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LiveExchange } from './live-exchange.js';
import { ExchangeStore, type ExchangeEvent } from './store.js';

function live(bodyCaptureLimit = 16): LiveExchange {
  return new LiveExchange({
    client: { address: '198.18.0.1', port: 40000 },
    server: { address: '198.18.0.2', port: 443 },
    tls: { sni: 'upstream.test' },
    method: 'GET',
    url: 'https://upstream.test/',
    httpVersion: '1.1',
    headers: [['Host', 'upstream.test']],
    bodyCaptureLimit,
  });
}

describe('ExchangeStore', () => {
  it('assigns monotonic ids and lists newest first with a cursor', () => {
    const store = new ExchangeStore({ maxCount: 100, maxBytes: 1e9 });
    for (let i = 0; i < 5; i++) store.add(live());
    const first = store.list(2);
    assert.deepEqual(first.exchanges.map((e) => e.id), [5, 4]);
    assert.equal(first.nextCursor, 4);
    const second = store.list(2, first.nextCursor);
    assert.deepEqual(second.exchanges.map((e) => e.id), [3, 2]);
    const last = store.list(2, second.nextCursor);
    assert.deepEqual(last.exchanges.map((e) => e.id), [1]);
    assert.equal(last.nextCursor, undefined);
  });

  it('evicts the oldest past the count bound', () => {
    const store = new ExchangeStore({ maxCount: 3, maxBytes: 1e9 });
    for (let i = 0; i < 5; i++) store.add(live());
    assert.equal(store.count, 3);
    assert.equal(store.get(2), undefined);
    assert.ok(store.get(3));
  });

  it('evicts the oldest past the byte bound, counting captured bodies as they grow', () => {
    const store = new ExchangeStore({ maxCount: 100, maxBytes: 4000 });
    const a = live(10_000);
    store.add(a);
    const b = live(10_000);
    store.add(b);
    b.responseBody.add(Buffer.alloc(3000));
    b.complete();
    store.finish(b);
    assert.equal(store.get(a.id), undefined, 'a was evicted to make room for b');
    assert.ok(store.get(b.id));
    assert.ok(store.totalBytes <= 4000);
  });

  it('emits started/updated/completed snapshots only to subscribers', () => {
    const store = new ExchangeStore({ maxCount: 10, maxBytes: 1e9 });
    const seen: [ExchangeEvent, string][] = [];
    const ex = live();
    store.add(ex); // nobody listens: nothing built
    const off = store.subscribe((event, snap) => seen.push([event, snap.state]));
    ex.setResponse({ status: 200, statusMessage: 'OK', httpVersion: '1.1', headers: [] });
    store.update(ex);
    ex.complete();
    store.finish(ex);
    off();
    store.add(live());
    assert.deepEqual(seen, [
      ['updated', 'in-flight'],
      ['completed', 'complete'],
    ]);
  });

  it('hands out snapshots that later changes do not touch', () => {
    const store = new ExchangeStore({ maxCount: 10, maxBytes: 1e9 });
    const ex = live();
    store.add(ex);
    const before = store.list(1).exchanges[0]!;
    ex.requestBody.add(Buffer.from('hello'));
    ex.complete();
    assert.equal(before.state, 'in-flight');
    assert.equal(before.request.body.size, 0);
    assert.equal(store.list(1).exchanges[0]!.request.body.size, 5);
  });
});

describe('body capture', () => {
  it('counts everything, keeps up to the cap, flags truncation', () => {
    const ex = live(4);
    ex.responseBody.add(Buffer.from('abc'));
    ex.responseBody.add(Buffer.from('defg'));
    assert.deepEqual(ex.responseBody.info(), { size: 7, captured: 4, truncated: true });
    assert.equal(ex.responseBody.bytes().toString(), 'abcd');
  });

  it('records error and end timing once', () => {
    const ex = live();
    ex.fail({ kind: 'upstream-connect', message: 'refused' });
    ex.complete();
    const snap = ex.snapshot();
    assert.equal(snap.state, 'error');
    assert.equal(snap.error?.kind, 'upstream-connect');
    assert.ok(snap.timing.end !== undefined && snap.timing.end >= 0);
  });
});
