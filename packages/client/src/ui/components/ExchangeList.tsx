/**
 * The list area: column titles, then only the rows that fit (the caller passes the window), or a
 * placeholder saying why there is nothing to show. Its height is fixed so the footer never moves.
 */
// @jsxRuntime automatic (for tsx, which compiles with the root tsconfig: it has no "jsx" setting)
import { Box, Text } from 'ink';
import type { Exchange } from '@tproxy/protocol';
import type { Column } from '../format.js';
import { ColumnHeader, ExchangeRow } from './ExchangeRow.js';

export interface ExchangeListProps {
  readonly width: number;
  /** Lines for titles plus rows. */
  readonly height: number;
  readonly columns: readonly Column[];
  /** The visible window of rows, oldest first. */
  readonly rows: readonly Exchange[];
  readonly selectedId: number | undefined;
  /** Lines shown instead of rows when `rows` is empty (already escaped). */
  readonly placeholder: readonly string[];
}

export function ExchangeList({ width, height, columns, rows, selectedId, placeholder }: ExchangeListProps) {
  return (
    <Box flexDirection="column" width={width} height={height} overflow="hidden">
      <ColumnHeader columns={columns} />
      {rows.length === 0
        ? placeholder.map((line, i) => (
            <Text key={i} wrap="wrap" dimColor={i > 0}>
              {line}
            </Text>
          ))
        : rows.map((ex) => <ExchangeRow key={ex.id} exchange={ex} columns={columns} selected={ex.id === selectedId} />)}
    </Box>
  );
}
