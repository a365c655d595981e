/**
 * Keyboard → reducer actions and effects, through the pure resolver in keymap.ts. Keys are resolved
 * against the store's current state (not the last rendered one), so two keys arriving before a
 * render still act in order. useInput is attached only when stdin supports raw mode (a pipe does
 * not, and Ink would throw): without a terminal on stdin the dashboard still renders, read-only.
 */
import { useInput, useStdin, type Key } from 'ink';
import { useCallback } from 'react';
import type { DashboardActions } from '../contexts/dashboard.js';
import { resolveKey } from '../keymap.js';

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
      // A held key (or a busy terminal) can deliver `jjjj` in one read, which Ink passes on as one
      // input. Outside the text fields that is several key presses, each against the state the
      // previous one left (`o4` opens the form, then types 4).
      // Ink splits escape sequences (arrows, PgDn) but not a run of Backspaces (DEL, 0x7f).
      const state = actions.getState();
      const typing = state.filterEditing || state.form !== undefined;
      if (input.length > 1 && /^[\x7f\b]+$/.test(input)) for (let i = 0; i < input.length; i++) handle('', { backspace: true });
      else if (input.length > 1 && !typing && !key.ctrl && !key.meta) for (const ch of input) handle(ch, {});
      else handle(input, key);
    },
    [actions],
  );
  useInput(handler, { isActive: isRawModeSupported });
}
