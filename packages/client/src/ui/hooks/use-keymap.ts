/**
 * Keyboard → reducer actions and effects, through the pure resolver in keymap.ts. Keys are resolved
 * against the store's current state (not the last rendered one), so two keys arriving before a
 * render still act in order. useInput is attached only when stdin supports raw mode (a pipe does
 * not, and Ink would throw): without a terminal on stdin the dashboard still renders, read-only.
 */
import { useInput, useStdin, type Key } from 'ink';
import { useCallback } from 'react';
import type { DashboardActions } from '../contexts/dashboard.js';
import { resolveKey, splitInput } from '../keymap.js';

export function useKeymap(actions: DashboardActions): void {
  const { isRawModeSupported } = useStdin();
  const handler = useCallback(
    (input: string, key: Key) => {
      const handle = (text: string, k: Partial<Key>) => {
        const command = resolveKey(actions.getState(), text, k);
        if (!command) return;
        if (command.kind === 'dispatch') actions.dispatch(command.action);
        else actions.run(command.effect);
      };
      for (const [text, k] of splitInput(input, key)) handle(text, k);
    },
    [actions],
  );
  useInput(handler, { isActive: isRawModeSupported });
}
