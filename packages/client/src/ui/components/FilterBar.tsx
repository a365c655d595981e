/**
 * The first footer line: the filter being typed (with a cursor) or applied, how many rows it lets
 * through and what is wrong with it; without a filter, the main key hints. Presentational.
 */
// @jsxRuntime automatic (for tsx, which compiles with the root tsconfig: it has no "jsx" setting)
import { Text } from 'ink';
import { escapeInline } from '../../shared/escape.js';
import type { Filter } from '../filter.js';

export interface FilterBarProps {
  readonly filter: Filter;
  readonly editing: boolean;
  readonly shown: number;
  readonly total: number;
  readonly hints: string;
}

export function FilterBar({ filter, editing, shown, total, hints }: FilterBarProps) {
  if (!editing && filter.source === '') {
    return (
      <Text wrap="truncate-end" dimColor>
        {hints}
      </Text>
    );
  }
  return (
    <Text wrap="truncate-end">
      <Text color="cyan" bold>
        /
      </Text>
      {escapeInline(filter.source)}
      {editing ? <Text inverse> </Text> : null}
      <Text dimColor>
        {'  '}
        {shown} of {total}
        {editing ? ' · Enter keep · Esc clear' : ' · / edit · Esc clear'}
      </Text>
      {filter.errors.length > 0 ? <Text color="red">{'  '}{escapeInline(filter.errors.join('; '))}</Text> : null}
    </Text>
  );
}
