/**
 * The dashboard's whole state and every way it changes, as one pure reducer (Ink's `gameReducer`,
 * gemini-cli's `shellReducer`). It owns: the connection's state as the header shows it, the capture
 * status, the merged and bounded exchange rows, the filter and the rows it lets through, selection
 * and scrolling (follow mode sticks to the newest row), the view (list, detail, help, start form),
 * notices, and the exchanges-per-second rate. Time comes in on actions (`now`), never from a clock.
 * It does no I/O: calls to the helper, files and the clipboard are effects in hooks/, which report
 * back with actions.
 */
import type { CaptureStatus, Exchange, ExchangeDetail } from '@tproxy/protocol';
import type { ExchangeEvent } from '../../rpc/client.js';
import { EMPTY_FILTER, isActive, matchesFilter, parseFilter, type Filter } from '../filter.js';
import { fieldOfError, type FormField, type StartOptions } from './form.js';
import { MAX_ROWS, indexOfId, lowerBound, mergeRows } from './rows.js';

/** Completions counted for the rate; long enough to smooth bursts, short enough to follow changes. */
export const RATE_WINDOW_MS = 5000;
/** How long a notice stays unless replaced. */
export const NOTICE_MS = 8000;

export type ConnectionStatus = 'connecting' | 'connected' | 'unreachable' | 'denied' | 'lost' | 'error';

export interface ConnectionState {
  readonly status: ConnectionStatus;
  /** Why we are not connected, escaped by the header, and what the user can do about it. */
  readonly message?: string;
  readonly hint?: string;
  /** Connection attempts since the last success. */
  readonly attempt: number;
  /** Delay before the next attempt, when one is scheduled. */
  readonly retryInMs?: number;
}

export interface DetailState {
  readonly id: number;
  readonly status: 'loading' | 'loaded' | 'error';
  readonly data?: ExchangeDetail;
  readonly error?: string;
  readonly scroll: number;
  /** Set by the view once it has laid the content out, so scrolling can be clamped here. */
  readonly lineCount: number;
  readonly pageRows: number;
}

export interface FormState {
  readonly ports: string;
  readonly ipv6: boolean;
  readonly field: FormField;
  readonly submitting: boolean;
  readonly error?: string;
  readonly errorField?: FormField;
}

export interface Notice {
  readonly text: string;
  readonly level: 'info' | 'error';
  readonly expiresAt: number;
}

export interface State {
  readonly socketPath: string;
  readonly connection: ConnectionState;
  /** Once connected, every later failure is shown as "reconnecting". */
  readonly everConnected: boolean;
  readonly capture: CaptureStatus | undefined;
  readonly captureBusy: 'starting' | 'stopping' | undefined;
  /** Which helper process the rows came from (pid + start time): ids restart with the helper. */
  readonly instance: string | undefined;
  /** Sorted by id, newest last, at most MAX_ROWS. */
  readonly rows: readonly Exchange[];
  /** `c` hides every id up to here; later snapshots of those ids are ignored too. */
  readonly clearedThrough: number;
  readonly filter: Filter;
  readonly filterEditing: boolean;
  /** `rows` that pass the filter. */
  readonly visible: readonly Exchange[];
  readonly selectedId: number | undefined;
  readonly follow: boolean;
  /** Index into `visible` of the first row on screen. */
  readonly scrollTop: number;
  /** Rows the list can show; set by the layout. */
  readonly listRows: number;
  readonly view: 'list' | 'detail';
  readonly detail: DetailState | undefined;
  readonly helpOpen: boolean;
  readonly form: FormState | undefined;
  /** Used by `s`; the form edits them. */
  readonly startOptions: StartOptions;
  readonly notice: Notice | undefined;
  /** Completion times within RATE_WINDOW_MS, oldest first. */
  readonly completions: readonly number[];
  readonly rateSince: number | undefined;
  /** Exchanges completed per second over the rate window. */
  readonly rate: number;
}

export const initialState: State = {
  socketPath: '',
  connection: { status: 'connecting', attempt: 0 },
  everConnected: false,
  capture: undefined,
  captureBusy: undefined,
  instance: undefined,
  rows: [],
  clearedThrough: 0,
  filter: EMPTY_FILTER,
  filterEditing: false,
  visible: [],
  selectedId: undefined,
  follow: true,
  scrollTop: 0,
  listRows: 10,
  view: 'list',
  detail: undefined,
  helpOpen: false,
  form: undefined,
  startOptions: { ports: [443], ipv6: true },
  notice: undefined,
  completions: [],
  rateSince: undefined,
  rate: 0,
};

export type Action =
  | { readonly type: 'connecting'; readonly attempt: number }
  | { readonly type: 'connected'; readonly now: number }
  | {
      readonly type: 'connectFailed';
      readonly cause: 'unreachable' | 'denied' | 'error';
      readonly message: string;
      readonly hint?: string;
      readonly retryInMs: number;
    }
  | { readonly type: 'disconnected'; readonly message: string; readonly hint?: string }
  | { readonly type: 'statusReceived'; readonly status: CaptureStatus }
  | { readonly type: 'listLoaded'; readonly exchanges: readonly Exchange[]; readonly instance: string | undefined }
  | { readonly type: 'exchangeEvents'; readonly events: readonly { event: ExchangeEvent; exchange: Exchange }[]; readonly now: number }
  | { readonly type: 'tick'; readonly now: number }
  | { readonly type: 'layout'; readonly listRows: number }
  | { readonly type: 'move'; readonly delta: number }
  | { readonly type: 'moveTo'; readonly where: 'first' | 'last' }
  | { readonly type: 'toggleFollow' }
  | { readonly type: 'filterOpen' }
  | { readonly type: 'filterInput'; readonly text: string }
  | { readonly type: 'filterBackspace' }
  | { readonly type: 'filterAccept' }
  | { readonly type: 'filterClear' }
  | { readonly type: 'clearList' }
  /** The helper's buffer was emptied (`exchanges.cleared`): every id up to `throughId` is gone there. */
  | { readonly type: 'helperCleared'; readonly throughId: number }
  | { readonly type: 'openDetail' }
  | { readonly type: 'closeDetail' }
  | { readonly type: 'detailLoaded'; readonly id: number; readonly detail: ExchangeDetail }
  | { readonly type: 'detailFailed'; readonly id: number; readonly message: string }
  | { readonly type: 'detailLayout'; readonly lineCount: number; readonly pageRows: number }
  | { readonly type: 'detailScroll'; readonly delta: number }
  | { readonly type: 'detailScrollTo'; readonly where: 'top' | 'bottom' }
  | { readonly type: 'toggleHelp' }
  | { readonly type: 'formOpen' }
  | { readonly type: 'formInput'; readonly text: string }
  | { readonly type: 'formBackspace' }
  | { readonly type: 'formNextField' }
  | { readonly type: 'formToggleIpv6' }
  | { readonly type: 'formCancel' }
  | { readonly type: 'formFailed'; readonly message: string }
  | { readonly type: 'captureBusy'; readonly op: 'starting' | 'stopping' }
  | { readonly type: 'captureDone'; readonly status: CaptureStatus; readonly options?: StartOptions; readonly now: number }
  | { readonly type: 'captureFailed'; readonly message: string; readonly now: number }
  | { readonly type: 'notice'; readonly text: string; readonly level: 'info' | 'error'; readonly now: number; readonly ttlMs?: number };

const clamp = (n: number, lo: number, hi: number) => Math.min(Math.max(n, lo), Math.max(lo, hi));

/** What the user typed, minus anything that is not printable (a paste can carry escapes). */
// eslint-disable-next-line no-control-regex -- removing control characters is the point
const printable = (text: string) => text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '');

/**
 * Puts selection and scroll back in line after `visible`, `follow` or `listRows` changed: follow
 * selects the newest row; otherwise the selected id (or the next newer one if it went away) stays
 * selected, at the same place on screen when it was selected before, and always visible.
 */
function reconcile(prev: State, s: State): State {
  const n = s.visible.length;
  if (n === 0) return { ...s, selectedId: undefined, scrollTop: 0 };
  const rows = Math.max(1, s.listRows);
  const idx = s.follow || s.selectedId === undefined ? n - 1 : Math.min(lowerBound(s.visible, s.selectedId), n - 1);
  const selectedId = s.visible[idx]!.id;
  let top = s.scrollTop;
  const prevIdx = prev.selectedId === selectedId ? indexOfId(prev.visible, selectedId) : -1;
  if (!s.follow && prevIdx !== -1) top = idx - (prevIdx - prev.scrollTop);
  top = clamp(top, idx - rows + 1, idx);
  top = clamp(top, 0, n - rows);
  return { ...s, selectedId, scrollTop: top };
}

function withRows(state: State, rows: readonly Exchange[], patch: Partial<State> = {}): State {
  const next = { ...state, ...patch, rows };
  const visible = isActive(next.filter) ? rows.filter((ex) => matchesFilter(next.filter, ex)) : rows;
  return reconcile(state, { ...next, visible });
}

function withFilter(state: State, source: string, editing: boolean): State {
  const filter = source === state.filter.source ? state.filter : parseFilter(source);
  return withRows(state, state.rows, { filter, filterEditing: editing });
}

function rateAt(completions: readonly number[], since: number | undefined, now: number): number {
  const span = clamp(now - (since ?? now), 1000, RATE_WINDOW_MS);
  return completions.length / (span / 1000);
}

function prune(completions: readonly number[], now: number): readonly number[] {
  const from = now - RATE_WINDOW_MS;
  let i = 0;
  while (i < completions.length && completions[i]! <= from) i++;
  return i === 0 ? completions : completions.slice(i);
}

function notice(state: State, text: string, level: Notice['level'], now: number, ttlMs = NOTICE_MS): State {
  return { ...state, notice: { text, level, expiresAt: now + ttlMs } };
}

function connectionReducer(state: State, action: Action): State {
  switch (action.type) {
    case 'connecting':
      // The last failure stays on screen while we retry: flashing "connecting" each time helps nobody.
      return { ...state, connection: { ...state.connection, attempt: action.attempt } };
    case 'connected':
      return { ...state, connection: { status: 'connected', attempt: 0 }, everConnected: true, rateSince: state.rateSince ?? action.now };
    case 'connectFailed': {
      const { cause, message, hint, retryInMs } = action;
      const status = cause === 'error' ? 'error' : cause;
      return { ...state, connection: { status, message, ...(hint ? { hint } : {}), attempt: state.connection.attempt, retryInMs }, captureBusy: undefined };
    }
    case 'disconnected':
      return { ...state, connection: { status: 'lost', message: action.message, ...(action.hint ? { hint: action.hint } : {}), attempt: 0 }, captureBusy: undefined };
    default:
      return state;
  }
}

function listReducer(state: State, action: Action): State {
  switch (action.type) {
    case 'listLoaded': {
      if (action.instance === undefined || action.instance !== state.instance) {
        // Another helper process (or an unknown one): its ids are not ours. Start over from its list.
        return withRows(state, mergeRows([], action.exchanges), { instance: action.instance, clearedThrough: 0 });
      }
      return withRows(state, mergeRows(state.rows, action.exchanges, state.clearedThrough));
    }
    case 'exchangeEvents': {
      const rows = mergeRows(state.rows, action.events.map((e) => e.exchange), state.clearedThrough);
      const done = action.events.filter((e) => e.event === 'completed').length;
      const completions = prune(done ? [...state.completions, ...Array<number>(done).fill(action.now)] : state.completions, action.now);
      const rate = rateAt(completions, state.rateSince, action.now);
      return rows === state.rows ? { ...state, completions, rate } : withRows(state, rows, { completions, rate });
    }
    case 'layout':
      return action.listRows === state.listRows ? state : reconcile(state, { ...state, listRows: Math.max(1, action.listRows) });
    case 'move': {
      const n = state.visible.length;
      if (n === 0) return state;
      const cur = state.selectedId === undefined ? n - 1 : Math.min(lowerBound(state.visible, state.selectedId), n - 1);
      const idx = clamp(cur + action.delta, 0, n - 1);
      return reconcile(state, { ...state, follow: false, selectedId: state.visible[idx]!.id });
    }
    case 'moveTo': {
      const first = state.visible[0];
      if (action.where === 'last' || !first) return reconcile(state, { ...state, follow: true });
      return reconcile(state, { ...state, follow: false, selectedId: first.id, scrollTop: 0 });
    }
    case 'toggleFollow':
      return reconcile(state, { ...state, follow: !state.follow });
    case 'filterOpen':
      return { ...state, filterEditing: true };
    case 'filterInput':
      return withFilter(state, state.filter.source + printable(action.text), true);
    case 'filterBackspace':
      return withFilter(state, [...state.filter.source].slice(0, -1).join(''), true);
    case 'filterAccept':
      return { ...state, filterEditing: false };
    case 'filterClear':
      return withFilter(state, '', false);
    case 'clearList': {
      const last = state.rows[state.rows.length - 1];
      return withRows(state, [], { clearedThrough: last ? Math.max(state.clearedThrough, last.id) : state.clearedThrough, follow: true });
    }
    case 'helperCleared':
      return withRows(
        state,
        state.rows.filter((r) => r.id > action.throughId),
        { clearedThrough: Math.max(state.clearedThrough, action.throughId), follow: true },
      );
    default:
      return state;
  }
}

function detailReducer(state: State, action: Action): State {
  const d = state.detail;
  switch (action.type) {
    case 'openDetail':
      if (state.selectedId === undefined) return state;
      return { ...state, view: 'detail', detail: { id: state.selectedId, status: 'loading', scroll: 0, lineCount: 0, pageRows: 1 } };
    case 'closeDetail':
      return { ...state, view: 'list', detail: undefined };
    case 'detailLoaded':
      return d?.id === action.id ? { ...state, detail: { ...d, status: 'loaded', data: action.detail } } : state;
    case 'detailFailed':
      return d?.id === action.id ? { ...state, detail: { ...d, status: 'error', error: action.message } } : state;
    case 'detailLayout': {
      if (!d || (d.lineCount === action.lineCount && d.pageRows === action.pageRows)) return state;
      const scroll = clamp(d.scroll, 0, action.lineCount - action.pageRows);
      return { ...state, detail: { ...d, lineCount: action.lineCount, pageRows: action.pageRows, scroll } };
    }
    case 'detailScroll':
      return d ? { ...state, detail: { ...d, scroll: clamp(d.scroll + action.delta, 0, d.lineCount - d.pageRows) } } : state;
    case 'detailScrollTo':
      return d ? { ...state, detail: { ...d, scroll: action.where === 'top' ? 0 : Math.max(0, d.lineCount - d.pageRows) } } : state;
    default:
      return state;
  }
}

function formReducer(state: State, action: Action): State {
  const f = state.form;
  switch (action.type) {
    case 'formOpen':
      return { ...state, form: { ports: state.startOptions.ports.join(','), ipv6: state.startOptions.ipv6, field: 'ports', submitting: false } };
    case 'formCancel':
      return { ...state, form: undefined };
    case 'formInput':
      if (!f || f.submitting) return state;
      if (f.field === 'ipv6') return action.text === ' ' ? { ...state, form: { ...f, ipv6: !f.ipv6 } } : state;
      return { ...state, form: { ...f, ports: f.ports + action.text.replace(/[^0-9, ]/g, '') } };
    case 'formBackspace':
      return f && f.field === 'ports' && !f.submitting ? { ...state, form: { ...f, ports: f.ports.slice(0, -1) } } : state;
    case 'formNextField':
      return f ? { ...state, form: { ...f, field: f.field === 'ports' ? 'ipv6' : 'ports' } } : state;
    case 'formToggleIpv6':
      return f && !f.submitting ? { ...state, form: { ...f, ipv6: !f.ipv6 } } : state;
    case 'formFailed': {
      if (!f) return state;
      const { error: _e, errorField: _ef, ...rest } = f;
      const errorField = fieldOfError(action.message);
      return { ...state, form: { ...rest, submitting: false, error: action.message, ...(errorField ? { errorField } : {}) } };
    }
    default:
      return state;
  }
}

function captureReducer(state: State, action: Action): State {
  switch (action.type) {
    case 'statusReceived':
      return state.capture && JSON.stringify(state.capture) === JSON.stringify(action.status) ? state : { ...state, capture: action.status };
    case 'captureBusy':
      return {
        ...state,
        captureBusy: action.op,
        ...(state.form && action.op === 'starting' ? { form: { ...state.form, submitting: true } } : {}),
      };
    case 'captureDone': {
      const s = action.status;
      const text = s.running ? `capture started: ports ${s.config?.ports.join(',') ?? '?'}${s.config?.ipv6 === false ? ', IPv4 only' : ''}` : 'capture stopped';
      const next = { ...state, capture: s, captureBusy: undefined, form: undefined, ...(action.options ? { startOptions: action.options } : {}) };
      return notice(next, text, 'info', action.now);
    }
    case 'captureFailed':
      if (state.form) return formReducer({ ...state, captureBusy: undefined }, { type: 'formFailed', message: action.message });
      return notice({ ...state, captureBusy: undefined }, action.message, 'error', action.now);
    default:
      return state;
  }
}

function timeReducer(state: State, action: Action): State {
  switch (action.type) {
    case 'tick': {
      const completions = prune(state.completions, action.now);
      const rate = rateAt(completions, state.rateSince, action.now);
      const expired = state.notice !== undefined && state.notice.expiresAt <= action.now;
      if (completions === state.completions && rate === state.rate && !expired) return state;
      return { ...state, completions, rate, notice: expired ? undefined : state.notice };
    }
    case 'notice':
      return notice(state, action.text, action.level, action.now, action.ttlMs);
    default:
      return state;
  }
}

export function reducer(state: State, action: Action): State {
  switch (action.type) {
    case 'connecting':
    case 'connected':
    case 'connectFailed':
    case 'disconnected':
      return connectionReducer(state, action);
    case 'statusReceived':
    case 'captureBusy':
    case 'captureDone':
    case 'captureFailed':
      return captureReducer(state, action);
    case 'openDetail':
    case 'closeDetail':
    case 'detailLoaded':
    case 'detailFailed':
    case 'detailLayout':
    case 'detailScroll':
    case 'detailScrollTo':
      return detailReducer(state, action);
    case 'formOpen':
    case 'formCancel':
    case 'formInput':
    case 'formBackspace':
    case 'formNextField':
    case 'formToggleIpv6':
    case 'formFailed':
      return formReducer(state, action);
    case 'tick':
    case 'notice':
      return timeReducer(state, action);
    case 'toggleHelp':
      return { ...state, helpOpen: !state.helpOpen };
    default:
      return listReducer(state, action);
  }
}

export { MAX_ROWS };
