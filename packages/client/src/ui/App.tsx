/**
 * tproxy-ui's root: builds the dependencies (real ones, or the test's), runs the dashboard hook
 * (store + helper connection + effects) and hands state and actions to their providers.
 */
// @jsxRuntime automatic (for tsx, which compiles with the root tsconfig: it has no "jsx" setting)
import { useApp } from 'ink';
import { useState } from 'react';
import { Dashboard } from './Dashboard.js';
import { DashboardProvider } from './contexts/dashboard.js';
import { defaultDeps, osc52, type UiDeps } from './deps.js';
import { useDashboard } from './hooks/use-dashboard.js';

export interface AppProps {
  readonly socketPath: string;
  /** Replaces parts of the real world (tests: clock, files, clipboard, retry timing). */
  readonly deps?: Partial<UiDeps>;
}

export function App({ socketPath, deps }: AppProps) {
  const { exit } = useApp();
  // OSC 52 goes to the real terminal: Ink's stdout may be the screen painter or a test double.
  const [allDeps] = useState((): UiDeps => ({ ...defaultDeps((text) => process.stdout.write(osc52(text))), ...deps }));
  const { state, actions } = useDashboard(socketPath, allDeps, () => exit());
  return (
    <DashboardProvider state={state} actions={actions}>
      <Dashboard />
    </DashboardProvider>
  );
}
