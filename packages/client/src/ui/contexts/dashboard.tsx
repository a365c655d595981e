/**
 * The dashboard's two contexts, kept apart (gemini-cli's UIStateContext / UIActionsContext): the
 * state, which changes on every batch of exchanges, and the actions, which never change, so a
 * component that only acts does not re-render with the data. Both hooks throw outside the provider
 * rather than hand out a silent default.
 */
// @jsxRuntime automatic (for tsx, which compiles with the root tsconfig: it has no "jsx" setting)
import { createContext, useContext, type ReactNode } from 'react';
import type { Effect } from '../keymap.js';
import type { Action, State } from '../state/reducer.js';

export interface DashboardActions {
  dispatch(action: Action): void;
  /** The store's current state, for handlers that run between renders. */
  getState(): State;
  /** Runs an effect (capture start/stop, export, curl, quit); results come back as actions. */
  run(effect: Effect): void;
  /** Fetches an exchange's bodies for the detail view. */
  fetchDetail(id: number): void;
}

const StateContext = createContext<State | undefined>(undefined);
const ActionsContext = createContext<DashboardActions | undefined>(undefined);

export function DashboardProvider({ state, actions, children }: { readonly state: State; readonly actions: DashboardActions; readonly children: ReactNode }) {
  return (
    <ActionsContext.Provider value={actions}>
      <StateContext.Provider value={state}>{children}</StateContext.Provider>
    </ActionsContext.Provider>
  );
}

export function useDashboardState(): State {
  const state = useContext(StateContext);
  if (state === undefined) throw new Error('useDashboardState() must be used inside <DashboardProvider>');
  return state;
}

export function useDashboardActions(): DashboardActions {
  const actions = useContext(ActionsContext);
  if (actions === undefined) throw new Error('useDashboardActions() must be used inside <DashboardProvider>');
  return actions;
}
