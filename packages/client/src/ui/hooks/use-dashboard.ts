/**
 * Wires the store, the helper connection and the effects into the two values the providers hand
 * out: the current state (re-rendering on change) and a stable actions object.
 */
import { useMemo, useState, useSyncExternalStore } from 'react';
import type { DashboardActions } from '../contexts/dashboard.js';
import type { UiDeps } from '../deps.js';
import { createEffects } from '../effects.js';
import { initialState, type State } from '../state/reducer.js';
import { createStore } from '../state/store.js';
import { useHelper } from './use-helper.js';

export function useDashboard(socketPath: string, deps: UiDeps, quit: () => void): { state: State; actions: DashboardActions } {
  const [store] = useState(() => createStore({ ...initialState, socketPath }));
  const state = useSyncExternalStore(store.subscribe, store.getState);
  const getClient = useHelper(socketPath, deps, store.dispatch);
  const actions = useMemo((): DashboardActions => {
    const effects = createEffects({ getState: store.getState, getClient, dispatch: store.dispatch, deps, quit });
    return { dispatch: store.dispatch, getState: store.getState, run: effects.run, fetchDetail: effects.fetchDetail };
    // getClient reads a ref and the rest is fixed for the app's life.
  }, [store]);
  return { state, actions };
}
