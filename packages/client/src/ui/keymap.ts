/**
 * Which key does what, in each mode, as data plus one pure resolver: the keymap hook feeds it
 * Ink's (input, key) and runs the result, and the help overlay renders HELP from the same file so
 * the two cannot drift apart. Modes, by priority: help overlay, start form, detail view, filter
 * line being edited, list.
 */
import type { Key } from 'ink';
import type { Action, State } from './state/reducer.js';

/** Work that needs the helper, the file system or the terminal; the container runs it. */
export type Effect = 'toggleCapture' | 'submitForm' | 'exportHar' | 'copyCurl' | 'quit';

export type Command = { readonly kind: 'dispatch'; readonly action: Action } | { readonly kind: 'run'; readonly effect: Effect };

export type KeyLike = Partial<Key>;

const act = (action: Action): Command => ({ kind: 'dispatch', action });
const run = (effect: Effect): Command => ({ kind: 'run', effect });

export interface HelpSection {
  readonly title: string;
  readonly keys: readonly (readonly [keys: string, does: string])[];
}

export const HELP: readonly HelpSection[] = [
  {
    title: 'List',
    keys: [
      ['↑ ↓  k j', 'select previous / next (stops following)'],
      ['PgUp PgDn', 'page up / down'],
      ['g Home  G End', 'first / newest (G follows again)'],
      ['f', 'follow newest on / off'],
      ['Enter', 'open the exchange'],
      ['/', 'filter: words, host:*.x.com method:POST status:4xx status:500-599 is:error'],
      ['Esc', 'clear the filter'],
      ['s', 'start / stop capture'],
      ['o', 'capture options (ports, IPv6), Enter starts'],
      ['c', 'clear this list (the helper keeps its buffer)'],
      ['e', 'export the filtered list to ./tproxy-<time>.har'],
      ['y', 'copy the request as curl (clipboard + file)'],
      ['q  Ctrl-C', 'quit'],
    ],
  },
  {
    title: 'Detail',
    keys: [
      ['↑ ↓  k j  PgUp PgDn', 'scroll'],
      ['g G', 'top / bottom'],
      ['y', 'copy as curl'],
      ['Esc  q', 'back to the list'],
    ],
  },
];

/**
 * One read from the terminal can hold several key presses: a held key (`jjjj`), fast typing or a
 * paste followed by Enter (`hostile\r`), a run of Backspaces. Ink hands such a read over as one
 * input, so it is split here into single presses, each resolved against the state the previous
 * one left (`/a\r` opens the filter, types `a`, accepts it). Escape sequences (arrows, PgDn) are
 * already split by Ink and are passed through whole, as are single keys and Ctrl/Meta chords.
 */
export function splitInput(input: string, key: KeyLike): (readonly [string, KeyLike])[] {
  if (input.length <= 1 || key.ctrl || key.meta || input.startsWith('\x1b')) return [[input, key]];
  return [...input].map((ch): readonly [string, KeyLike] => {
    if (ch === '\r' || ch === '\n') return ['', { return: true }];
    if (ch === '\x7f' || ch === '\b') return ['', { backspace: true }];
    if (ch === '\t') return ['', { tab: true }];
    return [ch, {}];
  });
}

function isBackspace(key: KeyLike): boolean {
  return key.backspace === true || key.delete === true;
}

function scrollKeys(input: string, key: KeyLike, page: number, scroll: (delta: number) => Action, to: (first: boolean) => Action): Command | undefined {
  if (key.upArrow || input === 'k') return act(scroll(-1));
  if (key.downArrow || input === 'j') return act(scroll(1));
  if (key.pageUp || (key.ctrl && input === 'b')) return act(scroll(-page));
  if (key.pageDown || (key.ctrl && input === 'f') || input === ' ') return act(scroll(page));
  if (key.home || input === 'g') return act(to(true));
  if (key.end || input === 'G') return act(to(false));
  return undefined;
}

export function resolveKey(state: State, input: string, key: KeyLike): Command | undefined {
  if (key.ctrl && input === 'c') return run('quit');

  if (state.helpOpen) {
    return input === '?' || input === 'q' || key.escape || key.return ? act({ type: 'toggleHelp' }) : undefined;
  }

  if (state.form) {
    if (key.escape) return act({ type: 'formCancel' });
    if (key.return) return run('submitForm');
    if (key.tab || key.upArrow || key.downArrow) return act({ type: 'formNextField' });
    if (isBackspace(key)) return act({ type: 'formBackspace' });
    if (input && !key.ctrl && !key.meta) return act({ type: 'formInput', text: input });
    return undefined;
  }

  if (state.view === 'detail') {
    if (key.escape || input === 'q' || key.leftArrow) return act({ type: 'closeDetail' });
    if (input === 'y') return run('copyCurl');
    if (input === '?') return act({ type: 'toggleHelp' });
    const page = Math.max(1, (state.detail?.pageRows ?? 1) - 1);
    return scrollKeys(
      input,
      key,
      page,
      (delta) => ({ type: 'detailScroll', delta }),
      (top) => ({ type: 'detailScrollTo', where: top ? 'top' : 'bottom' }),
    );
  }

  if (state.filterEditing) {
    if (key.escape) return act({ type: 'filterClear' });
    if (key.return) return act({ type: 'filterAccept' });
    if (isBackspace(key)) return act({ type: 'filterBackspace' });
    if (key.upArrow) return act({ type: 'move', delta: -1 });
    if (key.downArrow) return act({ type: 'move', delta: 1 });
    if (input && !key.ctrl && !key.meta) return act({ type: 'filterInput', text: input });
    return undefined;
  }

  switch (input) {
    case 'q':
      return run('quit');
    case 's':
      return run('toggleCapture');
    case 'o':
      return act({ type: 'formOpen' });
    case 'f':
      return act({ type: 'toggleFollow' });
    case '/':
      return act({ type: 'filterOpen' });
    case 'c':
      return act({ type: 'clearList' });
    case 'e':
      return run('exportHar');
    case 'y':
      return run('copyCurl');
    case '?':
      return act({ type: 'toggleHelp' });
  }
  if (key.return) return act({ type: 'openDetail' });
  if (key.escape) return state.filter.source ? act({ type: 'filterClear' }) : undefined;
  return scrollKeys(
    input,
    key,
    Math.max(1, state.listRows),
    (delta) => ({ type: 'move', delta }),
    (first) => ({ type: 'moveTo', where: first ? 'first' : 'last' }),
  );
}
