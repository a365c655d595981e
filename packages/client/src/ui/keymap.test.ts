import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HELP, resolveKey, splitInput } from './keymap.js';
import { initialState, type State } from './state/reducer.js';

const list: State = { ...initialState, listRows: 10 };

describe('resolveKey', () => {
  test('list keys', () => {
    assert.deepEqual(resolveKey(list, 's', {}), { kind: 'run', effect: 'toggleCapture' });
    assert.deepEqual(resolveKey(list, 'k', {}), { kind: 'dispatch', action: { type: 'move', delta: -1 } });
    assert.deepEqual(resolveKey(list, '', { downArrow: true }), { kind: 'dispatch', action: { type: 'move', delta: 1 } });
    assert.deepEqual(resolveKey(list, '', { pageUp: true }), { kind: 'dispatch', action: { type: 'move', delta: -10 } });
    assert.deepEqual(resolveKey(list, 'G', { shift: true }), { kind: 'dispatch', action: { type: 'moveTo', where: 'last' } });
    assert.deepEqual(resolveKey(list, '', { home: true }), { kind: 'dispatch', action: { type: 'moveTo', where: 'first' } });
    assert.deepEqual(resolveKey(list, '', { return: true }), { kind: 'dispatch', action: { type: 'openDetail' } });
    assert.deepEqual(resolveKey(list, 'q', {}), { kind: 'run', effect: 'quit' });
    assert.deepEqual(resolveKey(list, 'c', { ctrl: true }), { kind: 'run', effect: 'quit' });
    assert.equal(resolveKey(list, '', { escape: true }), undefined, 'Esc with no filter does nothing');
  });

  test('while the filter is edited, letters are text (q does not quit)', () => {
    const editing: State = { ...list, filterEditing: true };
    assert.deepEqual(resolveKey(editing, 'q', {}), { kind: 'dispatch', action: { type: 'filterInput', text: 'q' } });
    assert.deepEqual(resolveKey(editing, '', { backspace: true }), { kind: 'dispatch', action: { type: 'filterBackspace' } });
    assert.deepEqual(resolveKey(editing, '', { escape: true }), { kind: 'dispatch', action: { type: 'filterClear' } });
    assert.deepEqual(resolveKey(editing, 'c', { ctrl: true }), { kind: 'run', effect: 'quit' });
  });

  test('detail: q and Esc go back, j scrolls, y copies', () => {
    const detail: State = { ...list, view: 'detail', detail: { id: 1, status: 'loading', scroll: 0, lineCount: 50, pageRows: 20 } };
    assert.deepEqual(resolveKey(detail, 'q', {}), { kind: 'dispatch', action: { type: 'closeDetail' } });
    assert.deepEqual(resolveKey(detail, 'j', {}), { kind: 'dispatch', action: { type: 'detailScroll', delta: 1 } });
    assert.deepEqual(resolveKey(detail, '', { pageDown: true }), { kind: 'dispatch', action: { type: 'detailScroll', delta: 19 } });
    assert.deepEqual(resolveKey(detail, 'y', {}), { kind: 'run', effect: 'copyCurl' });
  });

  test('form: Enter submits, Tab moves, text goes to the field; help swallows everything but its close keys', () => {
    const form: State = { ...list, form: { ports: '443', ipv6: true, field: 'ports', submitting: false } };
    assert.deepEqual(resolveKey(form, '', { return: true }), { kind: 'run', effect: 'submitForm' });
    assert.deepEqual(resolveKey(form, '', { tab: true }), { kind: 'dispatch', action: { type: 'formNextField' } });
    assert.deepEqual(resolveKey(form, 's', {}), { kind: 'dispatch', action: { type: 'formInput', text: 's' } });
    const help: State = { ...list, helpOpen: true };
    assert.equal(resolveKey(help, 's', {}), undefined);
    assert.deepEqual(resolveKey(help, '', { escape: true }), { kind: 'dispatch', action: { type: 'toggleHelp' } });
  });

  test('the help table names every list key the resolver acts on', () => {
    const text = HELP.flatMap((s) => s.keys.map(([k]) => k)).join(' ');
    for (const key of ['s', 'o', 'f', '/', 'c', 'e', 'y', 'q', 'Enter', 'Esc', 'PgUp', 'Home', 'End', 'j', 'k', 'g', 'G']) {
      assert.ok(text.split(/\s+/).includes(key), `help mentions ${key}`);
    }
  });
});

describe('splitInput', () => {
  test('splits typed text followed by Enter into single presses', () => {
    assert.deepEqual(splitInput('ab\r', {}), [
      ['a', {}],
      ['b', {}],
      ['', { return: true }],
    ]);
  });

  test('maps DEL, backspace and tab inside a run', () => {
    assert.deepEqual(splitInput('x\x7f\b\t', {}), [
      ['x', {}],
      ['', { backspace: true }],
      ['', { backspace: true }],
      ['', { tab: true }],
    ]);
  });

  test('passes single keys, escape sequences and chords through whole', () => {
    assert.deepEqual(splitInput('j', {}), [['j', {}]]);
    assert.deepEqual(splitInput('\x1b[A', { upArrow: true }), [['\x1b[A', { upArrow: true }]]);
    assert.deepEqual(splitInput('c', { ctrl: true }), [['c', { ctrl: true }]]);
  });
});
