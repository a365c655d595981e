/**
 * One list row: every cell fitted to its column, the status cell coloured (2xx green, 3xx cyan,
 * 4xx yellow, 5xx red), failed exchanges red throughout with the error kind as status, exchanges
 * still in flight dimmed, the selected row on a blue background. Presentational.
 */
// @jsxRuntime automatic (for tsx, which compiles with the root tsconfig: it has no "jsx" setting)
import { Text } from 'ink';
import { memo } from 'react';
import type { Exchange } from '@tproxy/protocol';
import { COLUMN_GAP, cellText, fit, statusColor, type Column } from '../format.js';

export interface ExchangeRowProps {
  readonly exchange: Exchange;
  readonly columns: readonly Column[];
  readonly selected: boolean;
}

function Row({ exchange, columns, selected }: ExchangeRowProps) {
  const failed = exchange.state === 'error';
  const gap = ' '.repeat(COLUMN_GAP);
  // Three pieces (before, status, after) rather than one Text per cell: Ink measures and styles
  // every Text node on every frame, and only the status cell has a colour of its own.
  const at = columns.findIndex((c) => c.key === 'status');
  const text = (cols: readonly Column[]) => cols.map((c) => fit(cellText(exchange, c.key, c), c.width, c.align)).join(gap);
  const before = text(columns.slice(0, Math.max(0, at)));
  const after = text(columns.slice(at + 1));
  const status = at === -1 ? '' : fit(cellText(exchange, 'status'), columns[at]!.width);
  return (
    <Text
      wrap="truncate-end"
      {...(selected ? { backgroundColor: 'blue' } : {})}
      {...(failed ? { color: 'red' } : selected ? { color: 'white' } : {})}
      dimColor={exchange.state === 'in-flight' && !selected}
    >
      {before}
      {at > 0 ? gap : ''}
      <Text color={statusColor(exchange)} bold={failed}>
        {status}
      </Text>
      {after ? gap + after : ''}
    </Text>
  );
}

/** Rows are snapshots: an unchanged exchange (same object) with the same selection renders the same. */
export const ExchangeRow = memo(Row);

export function ColumnHeader({ columns }: { readonly columns: readonly Column[] }) {
  const gap = ' '.repeat(COLUMN_GAP);
  return (
    <Text wrap="truncate-end" bold underline>
      {columns.map((c) => fit(c.title, c.width, c.align)).join(gap)}
    </Text>
  );
}
