/**
 * The capture options form (`o`): destination ports as a comma list and the IPv6 toggle; Enter
 * starts capture with them. The helper validates and names the bad field; that field's label turns
 * red and its message is shown under the form. Presentational.
 */
// @jsxRuntime automatic (for tsx, which compiles with the root tsconfig: it has no "jsx" setting)
import { Box, Text } from 'ink';
import { escapeInline } from '../../shared/escape.js';
import type { FormState } from '../state/reducer.js';

export interface StartFormProps {
  readonly width: number;
  readonly height: number;
  readonly form: FormState;
  readonly running: boolean;
}

export function StartForm({ width, height, form, running }: StartFormProps) {
  const label = (field: FormState['field'], text: string) => (
    <Text color={form.errorField === field ? 'red' : form.field === field ? 'cyan' : undefined} bold={form.field === field}>
      {form.field === field ? '› ' : '  '}
      {text.padEnd(8)}
    </Text>
  );
  return (
    <Box flexDirection="column" width={width} height={height} overflow="hidden">
      <Text bold inverse>
        {` capture options · Enter ${running ? 'restarts' : 'starts'} capture · Tab next field · Esc cancel `.padEnd(width)}
      </Text>
      <Text> </Text>
      <Text wrap="truncate-end">
        {label('ports', 'Ports')}
        <Text underline>{form.ports}</Text>
        {form.field === 'ports' ? <Text inverse> </Text> : null}
        <Text dimColor> destination ports, comma separated</Text>
      </Text>
      <Text wrap="truncate-end">
        {label('ipv6', 'IPv6')}
        {form.ipv6 ? '[x]' : '[ ]'}
        <Text dimColor> intercept IPv6 destinations too{form.field === 'ipv6' ? ' (Space toggles)' : ''}</Text>
      </Text>
      <Text> </Text>
      {form.submitting ? <Text color="yellow">{running ? 'restarting' : 'starting'} capture…</Text> : null}
      {form.error ? (
        <Text color="red" wrap="wrap">
          {escapeInline(form.error)}
        </Text>
      ) : null}
    </Box>
  );
}
