import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Exchange } from '@tproxy/protocol';
import { runningStatus, sampleExchange, stoppedStatus } from '../../test/fixtures.js';
import { MAX_ROWS, NOTICE_MS, RATE_WINDOW_MS, initialState, reducer, type Action, type State } from './reducer.js';

const started = (id: number): Exchange => sampleExchange({ id, state: 'in-flight', response: undefined, timing: { startedAt: id } });
const headed = (id: number): Exchange => sampleExchange({ id, state: 'in-flight', timing: { startedAt: id } });
const done = (id: number, status = 200): Exchange => sampleExchange({ id, response: { ...sampleExchange().response!, status }, timing: { startedAt: id, end: 5 } });

function run(state: State, ...actions: Action[]): State {
  return actions.reduce(reducer, state);
}

/** A connected dashboard with `n` complete rows (ids 1..n) and `listRows` rows on screen. */
function withRows(n: number, listRows = 5): State {
  const base = run(initialState, { type: 'connected', now: 0 }, { type: 'layout', listRows });
  return run(base, { type: 'exchangeEvents', events: Array.from({ length: n }, (_, i) => ({ event: 'completed' as const, exchange: done(i + 1) })), now: 0 });
}

const ids = (s: State) => s.visible.map((e) => e.id);
const onScreen = (s: State) => s.visible.slice(s.scrollTop, s.scrollTop + s.listRows).map((e) => e.id);

describe('connection', () => {
  test('connecting, failing with a hint, retrying keeps the failure shown, then connected', () => {
    let s = run(initialState, { type: 'connecting', attempt: 1 });
    assert.equal(s.connection.status, 'connecting');
    s = run(s, { type: 'connectFailed', cause: 'unreachable', message: 'tproxy-helper is not running at /x', hint: 'start it', retryInMs: 250 });
    assert.deepEqual(s.connection, { status: 'unreachable', message: 'tproxy-helper is not running at /x', hint: 'start it', attempt: 1, retryInMs: 250 });
    s = run(s, { type: 'connecting', attempt: 2 });
    assert.equal(s.connection.status, 'unreachable');
    assert.equal(s.connection.attempt, 2);
    s = run(s, { type: 'connected', now: 10 });
    assert.deepEqual(s.connection, { status: 'connected', attempt: 0 });
    assert.equal(s.everConnected, true);
  });

  test('access denied keeps its hint; losing the connection is "lost" and clears a pending capture op', () => {
    let s = run(initialState, { type: 'connectFailed', cause: 'denied', message: 'access denied: uid 1000', hint: '--allow-uid 1000', retryInMs: 2000 });
    assert.equal(s.connection.status, 'denied');
    assert.equal(s.connection.hint, '--allow-uid 1000');
    s = run(s, { type: 'connected', now: 0 }, { type: 'captureBusy', op: 'starting' }, { type: 'disconnected', message: 'tproxy-helper closed the connection' });
    assert.equal(s.connection.status, 'lost');
    assert.equal(s.captureBusy, undefined);
  });

  test('an unchanged status does not produce a new state (no re-render every poll)', () => {
    const s = run(initialState, { type: 'statusReceived', status: runningStatus() });
    assert.equal(reducer(s, { type: 'statusReceived', status: runningStatus() }), s);
    assert.notEqual(reducer(s, { type: 'statusReceived', status: runningStatus({ interceptCount: 99 }) }), s);
  });
});

describe('rows', () => {
  test('started, updated and completed replace the same row in place', () => {
    let s = withRows(0);
    s = run(s, { type: 'exchangeEvents', events: [{ event: 'started', exchange: started(1) }, { event: 'started', exchange: started(2) }], now: 0 });
    assert.deepEqual(ids(s), [1, 2]);
    s = run(s, { type: 'exchangeEvents', events: [{ event: 'updated', exchange: headed(1) }], now: 0 });
    assert.equal(s.rows[0]!.response?.status, 200);
    assert.equal(s.rows[0]!.state, 'in-flight');
    s = run(s, { type: 'exchangeEvents', events: [{ event: 'completed', exchange: done(1, 404) }], now: 0 });
    assert.deepEqual(ids(s), [1, 2]);
    assert.equal(s.rows[0]!.state, 'complete');
    assert.equal(s.rows[0]!.response?.status, 404);
  });

  test('a stale snapshot never overwrites a newer one (list page after a notification)', () => {
    let s = run(withRows(0), { type: 'exchangeEvents', events: [{ event: 'completed', exchange: done(7) }], now: 0 });
    s = run(s, { type: 'listLoaded', exchanges: [started(7), done(6)], instance: undefined });
    // An unknown instance starts over from the list; the same instance merges.
    assert.equal(s.rows.find((e) => e.id === 7)!.state, 'in-flight');
    s = run(s, { type: 'listLoaded', exchanges: [started(7)], instance: 'a' }, { type: 'exchangeEvents', events: [{ event: 'completed', exchange: done(7) }], now: 0 });
    s = run(s, { type: 'listLoaded', exchanges: [headed(7), started(8)], instance: 'a' });
    assert.deepEqual(ids(s), [7, 8]);
    assert.equal(s.rows[0]!.state, 'complete');
  });

  test('a different helper instance replaces the rows (ids restart with the helper)', () => {
    let s = run(withRows(3), { type: 'listLoaded', exchanges: [done(1), done(2), done(3)], instance: 'pid1' });
    s = run(s, { type: 'listLoaded', exchanges: [done(1)], instance: 'pid2' });
    assert.deepEqual(ids(s), [1]);
  });

  test(`bounded to ${MAX_ROWS} rows, oldest dropped`, () => {
    const s = withRows(MAX_ROWS + 10);
    assert.equal(s.rows.length, MAX_ROWS);
    assert.equal(s.rows[0]!.id, 11);
    assert.equal(s.rows[s.rows.length - 1]!.id, MAX_ROWS + 10);
  });

  test('clear empties the list and ignores later snapshots of the cleared ids, but not new ones', () => {
    let s = run(withRows(3), { type: 'listLoaded', exchanges: [done(1), done(2), done(3)], instance: 'i' }, { type: 'clearList' });
    assert.deepEqual(ids(s), []);
    s = run(s, { type: 'exchangeEvents', events: [{ event: 'completed', exchange: done(3) }, { event: 'started', exchange: started(4) }], now: 0 });
    assert.deepEqual(ids(s), [4]);
    s = run(s, { type: 'listLoaded', exchanges: [done(1), done(4)], instance: 'i' });
    assert.deepEqual(ids(s), [4]);
  });

  test('the helper clearing its buffer drops the cleared rows and keeps newer ones', () => {
    let s = run(withRows(3), { type: 'listLoaded', exchanges: [done(1), done(2), done(3), started(4)], instance: 'i' }, { type: 'helperCleared', throughId: 3 });
    assert.deepEqual(ids(s), [4]);
    s = run(s, { type: 'exchangeEvents', events: [{ event: 'completed', exchange: done(2) }], now: 0 });
    assert.deepEqual(ids(s), [4], 'a late snapshot of a cleared id does not bring it back');
  });
});

describe('selection and scrolling', () => {
  test('follow (on by default) keeps the newest row selected and at the bottom of the screen', () => {
    let s = withRows(12);
    assert.equal(s.follow, true);
    assert.equal(s.selectedId, 12);
    assert.deepEqual(onScreen(s), [8, 9, 10, 11, 12]);
    s = run(s, { type: 'exchangeEvents', events: [{ event: 'started', exchange: started(13) }], now: 0 });
    assert.equal(s.selectedId, 13);
    assert.deepEqual(onScreen(s), [9, 10, 11, 12, 13]);
  });

  test('moving up stops following; new rows then leave selection and screen where they were', () => {
    let s = run(withRows(12), { type: 'move', delta: -2 });
    assert.equal(s.follow, false);
    assert.equal(s.selectedId, 10);
    assert.deepEqual(onScreen(s), [8, 9, 10, 11, 12]);
    s = run(s, { type: 'exchangeEvents', events: [{ event: 'started', exchange: started(13) }, { event: 'started', exchange: started(14) }], now: 0 });
    assert.equal(s.selectedId, 10);
    assert.deepEqual(onScreen(s), [8, 9, 10, 11, 12]);
  });

  test('the screen scrolls only when the selection leaves it; moves clamp at both ends', () => {
    let s = run(withRows(12), { type: 'move', delta: -4 });
    assert.deepEqual(onScreen(s), [8, 9, 10, 11, 12]);
    s = run(s, { type: 'move', delta: -1 });
    assert.equal(s.selectedId, 7);
    assert.deepEqual(onScreen(s), [7, 8, 9, 10, 11]);
    s = run(s, { type: 'move', delta: -100 });
    assert.equal(s.selectedId, 1);
    assert.equal(s.scrollTop, 0);
    s = run(s, { type: 'move', delta: 5 });
    assert.equal(s.selectedId, 6);
    assert.deepEqual(onScreen(s), [2, 3, 4, 5, 6]);
    s = run(s, { type: 'move', delta: 100 });
    assert.equal(s.selectedId, 12);
    assert.equal(s.follow, false);
  });

  test('g goes to the first row without following; G goes to the newest and follows again; f toggles', () => {
    let s = run(withRows(12), { type: 'moveTo', where: 'first' });
    assert.equal(s.selectedId, 1);
    assert.equal(s.follow, false);
    assert.deepEqual(onScreen(s), [1, 2, 3, 4, 5]);
    s = run(s, { type: 'moveTo', where: 'last' });
    assert.equal(s.selectedId, 12);
    assert.equal(s.follow, true);
    s = run(s, { type: 'toggleFollow' }, { type: 'move', delta: -3 }, { type: 'toggleFollow' });
    assert.equal(s.selectedId, 12);
  });

  test('when the selected row is dropped (bounded list) the next newer one is selected', () => {
    let s = run(withRows(MAX_ROWS), { type: 'moveTo', where: 'first' });
    s = run(s, { type: 'exchangeEvents', events: [{ event: 'started', exchange: started(MAX_ROWS + 1) }], now: 0 });
    assert.equal(s.selectedId, 2);
    assert.equal(s.scrollTop, 0);
  });

  test('a smaller screen keeps the selection visible', () => {
    let s = run(withRows(12), { type: 'move', delta: -4 });
    assert.equal(s.selectedId, 8);
    s = run(s, { type: 'layout', listRows: 2 });
    assert.deepEqual(onScreen(s), [8, 9]);
    s = run(s, { type: 'move', delta: -1 });
    assert.deepEqual(onScreen(s), [7, 8]);
  });
});

describe('filter', () => {
  const mixed = (): State =>
    run(withRows(0), {
      type: 'exchangeEvents',
      events: [done(1, 200), done(2, 404), done(3, 500), done(4, 404)].map((exchange) => ({ event: 'completed' as const, exchange })),
      now: 0,
    });

  test('typing narrows the rows as you type; backspace widens again; Enter keeps it; Esc clears it', () => {
    let s = run(mixed(), { type: 'filterOpen' });
    assert.equal(s.filterEditing, true);
    for (const c of 'status:4xx') s = reducer(s, { type: 'filterInput', text: c });
    assert.deepEqual(ids(s), [2, 4]);
    assert.equal(s.selectedId, 4);
    s = run(s, { type: 'filterBackspace' }, { type: 'filterBackspace' }, { type: 'filterBackspace' }, { type: 'filterInput', text: '5' });
    assert.equal(s.filter.source, 'status:5');
    assert.deepEqual(ids(s), [1, 2, 3, 4], 'a half-typed term is ignored');
    s = run(s, { type: 'filterInput', text: 'xx' }, { type: 'filterAccept' });
    assert.equal(s.filterEditing, false);
    assert.deepEqual(ids(s), [3]);
    s = run(s, { type: 'exchangeEvents', events: [{ event: 'completed', exchange: done(5, 503) }, { event: 'completed', exchange: done(6, 200) }], now: 0 });
    assert.deepEqual(ids(s), [3, 5], 'new rows are filtered too');
    s = run(s, { type: 'filterClear' });
    assert.deepEqual(ids(s), [1, 2, 3, 4, 5, 6]);
  });

  test('pasted control characters never reach the filter text', () => {
    const s = run(mixed(), { type: 'filterOpen' }, { type: 'filterInput', text: 'a\x1b[2Jb\x07' });
    assert.equal(s.filter.source, 'a[2Jb');
  });
});

describe('views', () => {
  test('Enter opens the selected exchange; bodies arrive; scrolling clamps to the content; Esc goes back', () => {
    let s = run(withRows(3), { type: 'move', delta: -1 }, { type: 'openDetail' });
    assert.equal(s.view, 'detail');
    assert.deepEqual(s.detail, { id: 2, status: 'loading', scroll: 0, lineCount: 0, pageRows: 1 });
    s = run(s, { type: 'detailLoaded', id: 1, detail: { exchange: done(1), requestBody: '', responseBody: '' } });
    assert.equal(s.detail!.status, 'loading', 'an answer for another exchange is ignored');
    s = run(s, { type: 'detailLoaded', id: 2, detail: { exchange: done(2), requestBody: '', responseBody: 'e30=' } });
    assert.equal(s.detail!.status, 'loaded');
    s = run(s, { type: 'detailLayout', lineCount: 30, pageRows: 10 }, { type: 'detailScroll', delta: 100 });
    assert.equal(s.detail!.scroll, 20);
    s = run(s, { type: 'detailScroll', delta: -3 }, { type: 'detailScrollTo', where: 'top' });
    assert.equal(s.detail!.scroll, 0);
    s = run(s, { type: 'detailScrollTo', where: 'bottom' }, { type: 'detailLayout', lineCount: 12, pageRows: 10 });
    assert.equal(s.detail!.scroll, 2, 'a shorter layout clamps the scroll');
    s = run(s, { type: 'closeDetail' });
    assert.equal(s.view, 'list');
    assert.equal(s.detail, undefined);
  });

  test('a failed fetch is kept for the view to show; Enter on an empty list does nothing', () => {
    let s = run(withRows(1), { type: 'openDetail' }, { type: 'detailFailed', id: 1, message: 'gone' });
    assert.equal(s.detail!.status, 'error');
    assert.equal(s.detail!.error, 'gone');
    s = run(withRows(0), { type: 'openDetail' });
    assert.equal(s.view, 'list');
  });

  test('help toggles', () => {
    assert.equal(run(initialState, { type: 'toggleHelp' }).helpOpen, true);
    assert.equal(run(initialState, { type: 'toggleHelp' }, { type: 'toggleHelp' }).helpOpen, false);
  });
});

describe('start form and capture', () => {
  test('opens with the current options; ports take digits, commas and spaces only; Tab and Space toggle IPv6', () => {
    let s = run(initialState, { type: 'formOpen' });
    assert.deepEqual(s.form, { ports: '443', ipv6: true, field: 'ports', submitting: false });
    s = run(s, { type: 'formInput', text: ',84x43' }, { type: 'formBackspace' }, { type: 'formInput', text: '3' });
    assert.equal(s.form!.ports, '443,8443');
    s = run(s, { type: 'formInput', text: ' ' });
    assert.equal(s.form!.ports, '443,8443 ', 'space is text in the ports field');
    s = run(s, { type: 'formNextField' }, { type: 'formInput', text: ' ' });
    assert.equal(s.form!.ipv6, false);
    s = run(s, { type: 'formInput', text: '9' });
    assert.equal(s.form!.ports, '443,8443 ', 'digits do not go into the IPv6 field');
    assert.equal(run(s, { type: 'formCancel' }).form, undefined);
  });

  test('a helper error naming a field is shown in the form on that field; success closes it and keeps the options', () => {
    let s = run(initialState, { type: 'formOpen' }, { type: 'captureBusy', op: 'starting' });
    assert.equal(s.form!.submitting, true);
    s = run(s, { type: 'captureFailed', message: 'ports[0]: ports[] must be between 1 and 65535', now: 0 });
    assert.equal(s.form!.error, 'ports[0]: ports[] must be between 1 and 65535');
    assert.equal(s.form!.errorField, 'ports');
    assert.equal(s.form!.submitting, false);
    assert.equal(s.captureBusy, undefined);
    s = run(s, { type: 'captureBusy', op: 'starting' }, { type: 'captureDone', status: runningStatus(), options: { ports: [443, 8443], ipv6: false }, now: 0 });
    assert.equal(s.form, undefined);
    assert.deepEqual(s.startOptions, { ports: [443, 8443], ipv6: false });
    assert.equal(s.capture?.running, true);
    assert.match(s.notice!.text, /^capture started/);
  });

  test('a failure without the form becomes an error notice', () => {
    const s = run(initialState, { type: 'captureBusy', op: 'stopping' }, { type: 'captureFailed', message: 'capture is not running', now: 0 });
    assert.deepEqual(s.notice, { text: 'capture is not running', level: 'error', expiresAt: NOTICE_MS });
    assert.equal(run(s, { type: 'captureDone', status: stoppedStatus(), now: 1 }).notice!.text, 'capture stopped');
  });
});

describe('rate and notices (injected clock)', () => {
  const completions = (n: number, now: number): Action => ({
    type: 'exchangeEvents',
    events: Array.from({ length: n }, (_, i) => ({ event: 'completed' as const, exchange: done(now * 1000 + i + 1) })),
    now,
  });

  test('exchanges per second over the window, counting only completions', () => {
    let s = run(initialState, { type: 'connected', now: 0 });
    s = run(s, { type: 'exchangeEvents', events: [{ event: 'started', exchange: started(1) }], now: 500 });
    assert.equal(s.rate, 0);
    s = run(s, completions(10, 1000));
    assert.equal(s.rate, 10, 'one second of history: 10 in 1 s');
    s = run(s, completions(10, 2000));
    assert.equal(s.rate, 10, '20 in 2 s');
    s = run(s, { type: 'tick', now: 10_000 });
    assert.equal(s.rate, 0, 'completions older than the window no longer count');
    s = run(s, completions(50, 10_000));
    assert.equal(s.rate, 50 / (RATE_WINDOW_MS / 1000));
  });

  test('a tick that changes nothing returns the same state; notices expire', () => {
    let s = run(initialState, { type: 'notice', text: 'hello', level: 'info', now: 1000 });
    assert.equal(reducer(s, { type: 'tick', now: 1000 }), s);
    s = run(s, { type: 'tick', now: 1000 + NOTICE_MS });
    assert.equal(s.notice, undefined);
  });
});
