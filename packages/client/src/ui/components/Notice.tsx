/** The second footer line: the latest notice (export path, curl file, helper errors), or blank. */
// @jsxRuntime automatic (for tsx, which compiles with the root tsconfig: it has no "jsx" setting)
import { Text } from 'ink';
import { escapeInline } from '../../shared/escape.js';
import type { Notice as NoticeState } from '../state/reducer.js';

export function Notice({ notice }: { readonly notice: NoticeState | undefined }) {
  if (!notice) return <Text> </Text>;
  return (
    <Text wrap="truncate-end" color={notice.level === 'error' ? 'red' : 'green'}>
      {escapeInline(notice.text)}
    </Text>
  );
}
