/**
 * The detail pane: a title bar with the scroll position, then the window of pre-built, escaped
 * lines (detail.ts) that fits. Presentational.
 */
// @jsxRuntime automatic (for tsx, which compiles with the root tsconfig: it has no "jsx" setting)
import { Box, Text } from 'ink';
import type { DetailLine } from '../detail.js';

export interface DetailViewProps {
  readonly width: number;
  /** Lines for the title bar plus content. */
  readonly height: number;
  readonly id: number;
  readonly lines: readonly DetailLine[];
  readonly scroll: number;
}

export function DetailView({ width, height, id, lines, scroll }: DetailViewProps) {
  const rows = Math.max(1, height - 1);
  const shown = lines.slice(scroll, scroll + rows);
  const last = Math.min(lines.length, scroll + rows);
  const position = lines.length > rows ? `lines ${scroll + 1}-${last} of ${lines.length}` : `${lines.length} lines`;
  return (
    <Box flexDirection="column" width={width} height={height} overflow="hidden">
      <Text wrap="truncate-end" inverse>
        {` exchange #${id} · ${position} · ↑↓ PgUp PgDn scroll · y curl · Esc back `.padEnd(width)}
      </Text>
      {shown.map((line, i) => (
        <Text key={scroll + i} wrap="truncate-end">
          {line.length === 0
            ? ' '
            : line.map((seg, j) => (
                <Text key={j} {...(seg.color ? { color: seg.color } : {})} bold={seg.bold ?? false} dimColor={seg.dim ?? false}>
                  {seg.text}
                </Text>
              ))}
        </Text>
      ))}
    </Box>
  );
}
