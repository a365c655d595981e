/**
 * Container for the detail view: fetches the exchange's bodies when it opens (and again when the
 * exchange moves on, e.g. completes while open), builds the display lines for the width, and tells
 * the reducer how many lines there are so scrolling clamps.
 */
// @jsxRuntime automatic (for tsx, which compiles with the root tsconfig: it has no "jsx" setting)
import { useEffect, useMemo } from 'react';
import { useDashboardActions, useDashboardState } from './contexts/dashboard.js';
import { detailLines, type DetailLine } from './detail.js';
import { DetailView } from './components/DetailView.js';
import { indexOfId, progress } from './state/rows.js';

export function DetailPane({ width, height }: { readonly width: number; readonly height: number }) {
  const { detail, rows } = useDashboardState();
  const actions = useDashboardActions();
  const id = detail?.id ?? 0;
  const row = rows[indexOfId(rows, id)];
  const fetched = detail?.data?.exchange;
  const exchange = row && (!fetched || progress(row) > progress(fetched)) ? row : fetched;
  const rowProgress = row ? progress(row) : -1;

  useEffect(() => {
    if (id) actions.fetchDetail(id);
  }, [actions, id, rowProgress]);

  const lines = useMemo((): DetailLine[] => {
    if (!detail) return [];
    if (!exchange) {
      const why = detail.status === 'error' ? `: ${detail.error ?? ''}` : detail.status === 'loading' ? ' (loading…)' : '';
      return [[{ text: `exchange #${id} is no longer in the list${why}`, color: 'yellow' }]];
    }
    return detailLines({ exchange, detail, width, now: Date.now() });
  }, [detail, exchange, id, width]);

  const pageRows = Math.max(1, height - 1);
  useEffect(() => {
    actions.dispatch({ type: 'detailLayout', lineCount: lines.length, pageRows });
  }, [actions, lines.length, pageRows]);

  if (!detail) return null;
  return <DetailView width={width} height={height} id={id} lines={lines} scroll={detail.scroll} />;
}
