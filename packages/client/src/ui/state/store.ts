/**
 * A minimal store around the pure reducer: synchronous `getState()` for key handlers and effects
 * (they must see the state as of now, not as of the last render), `subscribe` for React's
 * useSyncExternalStore. Listeners run only when an action actually changed the state.
 */
import { reducer, type Action, type State } from './reducer.js';

export interface Store {
  getState(): State;
  dispatch(action: Action): void;
  subscribe(listener: () => void): () => void;
}

export function createStore(initial: State): Store {
  let state = initial;
  const listeners = new Set<() => void>();
  return {
    getState: () => state,
    dispatch(action) {
      const next = reducer(state, action);
      if (next === state) return;
      state = next;
      for (const listener of [...listeners]) listener();
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}
