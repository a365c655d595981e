/**
 * The screen's one container: reads state and actions from context, measures the terminal, owns
 * the keyboard, and lays out header, main area (list, detail, help or start form) and the two
 * footer lines over exactly the terminal's size. Only the rows that fit are rendered; painting
 * them without flicker is terminal-screen.ts's job.
 */
// @jsxRuntime automatic (for tsx, which compiles with the root tsconfig: it has no "jsx" setting)
import { Box } from 'ink';
import { useEffect, useMemo } from 'react';
import { escapeInline } from '../shared/escape.js';
import { DetailPane } from './DetailPane.js';
import { ExchangeList } from './components/ExchangeList.js';
import { FilterBar } from './components/FilterBar.js';
import { Header } from './components/Header.js';
import { HelpOverlay } from './components/HelpOverlay.js';
import { Notice } from './components/Notice.js';
import { StartForm } from './components/StartForm.js';
import { useDashboardActions, useDashboardState } from './contexts/dashboard.js';
import { columnsFor } from './format.js';
import { useKeymap } from './hooks/use-keymap.js';
import { useWindowSize } from './hooks/use-window-size.js';
import { HELP } from './keymap.js';
import type { State } from './state/reducer.js';

const HEADER_LINES = 2;
const FOOTER_LINES = 2;
const HINTS = 's start/stop · o options · / filter · f follow · Enter open · y curl · e export · c clear · ? help · q quit';

/** What the list says when it has no rows to show, and why. */
export function listPlaceholder(state: State): string[] {
  const c = state.connection;
  if (c.status !== 'connected' && state.rows.length === 0) {
    if (c.status === 'connecting' && !state.everConnected) return [`connecting to tproxy-helper at ${escapeInline(state.socketPath)}…`];
    return [
      escapeInline(c.message ?? 'not connected to tproxy-helper'),
      ...(c.hint ? [`hint: ${escapeInline(c.hint)}`] : []),
      'retrying in the background; q quits',
    ];
  }
  if (state.rows.length > 0) return ['no exchange matches the filter', 'Esc clears it'];
  const cap = state.capture;
  if (cap?.running) return ['capture is running: waiting for exchanges…'];
  if (cap && !cap.available) return [`capture is unavailable: ${escapeInline(cap.reason ?? 'no reason given')}`];
  return ['capture is stopped: press s to start it (o to choose ports and IPv6 first)'];
}

export function Dashboard() {
  const state = useDashboardState();
  const actions = useDashboardActions();
  const { columns: width, rows: screenRows } = useWindowSize();
  useKeymap(actions);

  const height = Math.max(HEADER_LINES + FOOTER_LINES + 2, screenRows);
  const mainHeight = height - HEADER_LINES - FOOTER_LINES;
  const listRows = Math.max(1, mainHeight - 1);
  useEffect(() => {
    actions.dispatch({ type: 'layout', listRows });
  }, [actions, listRows]);
  const columns = useMemo(() => columnsFor(width), [width]);

  let main;
  if (state.helpOpen) main = <HelpOverlay width={width} height={mainHeight} sections={HELP} />;
  else if (state.form) main = <StartForm width={width} height={mainHeight} form={state.form} running={state.capture?.running ?? false} />;
  else if (state.view === 'detail' && state.detail) main = <DetailPane width={width} height={mainHeight} />;
  else {
    main = (
      <ExchangeList
        width={width}
        height={mainHeight}
        columns={columns}
        rows={state.visible.slice(state.scrollTop, state.scrollTop + listRows)}
        selectedId={state.selectedId}
        placeholder={state.visible.length === 0 ? listPlaceholder(state) : []}
      />
    );
  }

  return (
    <Box flexDirection="column" width={width} height={height}>
      <Header
        width={width}
        connection={state.connection}
        everConnected={state.everConnected}
        capture={state.capture}
        captureBusy={state.captureBusy}
        rate={state.rate}
        shown={state.visible.length}
        total={state.rows.length}
        follow={state.follow}
      />
      {main}
      <FilterBar filter={state.filter} editing={state.filterEditing} shown={state.visible.length} total={state.rows.length} hints={HINTS} />
      <Notice notice={state.notice} />
    </Box>
  );
}
