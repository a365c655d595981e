/**
 * Test doubles of the services RPC handlers see (context.ts), shared by the RPC and run tests: each
 * test overrides what it exercises, and anything else it reaches fails loudly instead of returning
 * a made-up value.
 */
import type { CaGetResult, CaptureStatus } from '@tproxy/protocol';
import { EMPTY_POLICY } from '../policy.js';
import type { CaptureControl, RunControl, Services } from './context.js';

export const STOPPED_STATUS: CaptureStatus = { running: false, available: true, interceptCount: 0, listeners: [], rules: [], caInstalled: false };

export function sampleCaResult(): CaGetResult {
  return { pem: 'PEM', fingerprintSha256: 'AA', subject: 'CN', notAfter: '2036-01-01T00:00:00.000Z', installed: false, caPath: '/run/tproxy/ca.pem', bundlePath: '/run/tproxy/bundle.pem', env: {} };
}

function unused(what: string): never {
  throw new Error(`${what} is not used by this test`);
}

/** A CaptureControl that is stopped and serves ca.get; the trust-changing methods fail. */
export function captureDouble(overrides: Partial<CaptureControl> = {}): CaptureControl {
  return {
    start: () => unused('capture.start'),
    stop: async () => STOPPED_STATUS,
    status: () => STOPPED_STATUS,
    ca: async () => sampleCaResult(),
    onStatusChange: () => () => undefined,
    caInstall: () => unused('ca.install'),
    caUninstall: () => unused('ca.uninstall'),
    caRotate: () => unused('ca.rotate'),
    ...overrides,
  };
}

/** capture.run's manager, failing: tests of runs use capture/run.ts itself. */
export const RUNS_UNUSED: RunControl = {
  begin: () => unused('capture.run'),
  end: () => unused('capture.runEnd'),
  connectionClosed: () => undefined,
};

/** Services around `capture` and `store` with no policy grants, no runs and an empty repair. */
export function servicesDouble(parts: Pick<Services, 'capture' | 'store'> & Partial<Services>): Services {
  return {
    info: () => ({ name: 'tproxy-helper', version: '0', protocolVersion: 1, pid: 1, uptimeMs: 0, native: { available: true }, stateDir: '/var/lib/tproxy' }),
    repair: async () => ({ removed: [] }),
    policy: EMPTY_POLICY,
    runs: RUNS_UNUSED,
    ...parts,
  };
}
