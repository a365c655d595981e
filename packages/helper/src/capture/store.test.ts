import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LiveExchange } from './live-exchange.js';
import { ExchangeStore, type ExchangeEvent } from './store.js';

function live(bodyCaptureLimit = 16, method = 'GET', url = 'https://upstream.test/'): LiveExchange {
  return new LiveExchange({
    client: { address: '198.18.0.1', port: 40000 },
    server: { address: '198.18.0.2', port: 443 },
    tls: { sni: 'upstream.test' },
    method,
    url,
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

describe('ExchangeStore filters and clear', () => {
  /** 20 exchanges: even ids are POST to a.test, odd ones GET to b.test. */
  function mixed(): ExchangeStore {
    const store = new ExchangeStore({ maxCount: 100, maxBytes: 1e9 });
    for (let i = 1; i <= 20; i++) store.add(i % 2 === 0 ? live(16, 'POST', `https://a.test/${i}`) : live(16, 'GET', `https://b.test/${i}`));
    return store;
  }

  it('pages a filtered list by cursor without skipping or repeating', () => {
    const store = mixed();
    const seen: number[] = [];
    let cursor: number | undefined;
    for (let calls = 0; calls < 20; calls++) {
      const page = store.list(3, cursor, { method: 'POST' });
      seen.push(...page.exchanges.map((e) => e.id));
      assert.ok(page.exchanges.every((e) => e.request.method === 'POST'));
      cursor = page.nextCursor;
      if (cursor === undefined) break;
    }
    assert.deepEqual(seen, [20, 18, 16, 14, 12, 10, 8, 6, 4, 2]);
  });

  it('bounds the scan of one call and resumes where it stopped', () => {
    const store = mixed();
    // 4 examined per call: ids 20..17, then 16..13, ... each holds two matches of host b.test.
    const first = store.list(10, undefined, { host: 'b.test' }, 4);
    assert.deepEqual(first.exchanges.map((e) => e.id), [19, 17]);
    assert.equal(first.nextCursor, 17);
    const second = store.list(10, first.nextCursor, { host: 'b.test' }, 4);
    assert.deepEqual(second.exchanges.map((e) => e.id), [15, 13]);
    // A filter nothing matches: short (empty) pages that still carry a cursor, until the oldest.
    const none = store.list(10, undefined, { host: 'c.test' }, 8);
    assert.deepEqual(none, { exchanges: [], nextCursor: 13 });
    const tail = store.list(10, 5, { host: 'c.test' }, 8);
    assert.deepEqual(tail, { exchanges: [] });
  });

  it('filters by status only once a response is known', () => {
    const store = new ExchangeStore({ maxCount: 10, maxBytes: 1e9 });
    const a = live();
    const b = live();
    store.add(a);
    store.add(b);
    a.setResponse({ status: 404, statusMessage: 'Not Found', httpVersion: '1.1', headers: [] });
    store.update(a);
    assert.deepEqual(store.list(10, undefined, { status: { min: 400, max: 499 } }).exchanges.map((e) => e.id), [a.id]);
  });

  it('clear empties the buffer, reports the count, tells clear listeners, and silences removed in-flight exchanges', () => {
    const store = new ExchangeStore({ maxCount: 10, maxBytes: 1e9 });
    const inflight = live();
    store.add(inflight);
    store.add(live());
    const events: string[] = [];
    store.subscribe((event, ex) => events.push(`${event}:${ex.id}`));
    store.onClear((r) => events.push(`cleared:${r.removed}:${r.throughId}`));
    assert.deepEqual(store.clear(), { removed: 2, throughId: 2 });
    assert.equal(store.count, 0);
    assert.equal(store.totalBytes, 0);
    assert.deepEqual(store.list(10), { exchanges: [] });
    inflight.complete();
    store.finish(inflight); // still served on the wire, no longer kept or announced
    const next = live();
    store.add(next);
    assert.equal(next.id, 3, 'ids stay monotonic across a clear');
    assert.deepEqual(events, ['cleared:2:2', 'started:3']);
    assert.equal(store.count, 1);
    assert.deepEqual(store.clear(), { removed: 1, throughId: 3 });
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
