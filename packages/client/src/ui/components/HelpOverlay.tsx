/** The `?` screen: every key by mode, from the same table the keymap resolves with. */
// @jsxRuntime automatic (for tsx, which compiles with the root tsconfig: it has no "jsx" setting)
import { Box, Text } from 'ink';
import type { HelpSection } from '../keymap.js';

export interface HelpOverlayProps {
  readonly width: number;
  readonly height: number;
  readonly sections: readonly HelpSection[];
}

const KEY_COLUMN = 22;

export function HelpOverlay({ width, height, sections }: HelpOverlayProps) {
  return (
    <Box flexDirection="column" width={width} height={height} overflow="hidden">
      <Text bold inverse>
        {' keys · ? or Esc closes '.padEnd(width)}
      </Text>
      {sections.map((s) => (
        <Box key={s.title} flexDirection="column">
          <Text bold color="blue">
            {s.title}
          </Text>
          {s.keys.map(([keys, does]) => (
            <Text key={keys} wrap="truncate-end">
              <Text color="cyan">{`  ${keys}`.padEnd(KEY_COLUMN)}</Text>
              {does}
            </Text>
          ))}
        </Box>
      ))}
    </Box>
  );
}
