/**
 * The trust-store sandbox from the test process's side. Design: each e2e test file calls
 * `await ensureTrustSandbox()` before registering tests; the first time, the process re-executes
 * itself (same node, same flags, same file) through `scripts/trust-sandbox.sh`, which unshares a
 * private mount namespace and covers the system trust-store directories with tmpfs copies. The
 * outer process only relays its child's exit status and signals. So the test process, the helper
 * and every curl/node client (all started with `ip netns exec`, which copies the caller's mount
 * namespace) share one private view of /usr/local/share/ca-certificates and /etc/ssl/certs, and of
 * /run/netns (namespace names are private to the run).
 *
 * The script and the generic Node side (detection, re-exec and relay) are shared with
 * `tproxy-ui --demo`, so they live in the product: scripts/trust-sandbox.sh and
 * packages/client/src/demo/sandbox.ts, imported here as `@tproxy/client/trust-sandbox` (tests may
 * import product code, never the reverse). This file adds only what tests need: the host view and
 * the state-returning entry point. It never mounts anything and never runs tests in the outer process.
 */
import { fileURLToPath } from 'node:url';
import { enterTrustSandbox, hostViewPid, watchSandboxParent, type SandboxState } from '@tproxy/client/trust-sandbox';

export {
  REQUIRED_TRUST_DIRS,
  SANDBOX_MOUNT_SOURCE,
  SANDBOX_NETNS_SOURCE,
  hostViewPid,
  inTrustSandbox,
  mountsWithSource,
  sandboxedTrustDirs,
  type SandboxState,
} from '@tproxy/client/trust-sandbox';

/** Wrapper script that creates the sandbox and execs its arguments inside it (shared with the demo). */
export const IN_SANDBOX_SCRIPT = fileURLToPath(new URL('../../../scripts/trust-sandbox.sh', import.meta.url));

/** `path` as seen from the host's mount namespace (through hostViewPid()'s /proc root link). */
export function hostViewPath(path: string): string {
  const pid = hostViewPid();
  if (pid === undefined) throw new Error('hostViewPath: not inside the trust sandbox (no TPROXY_SANDBOX_HOST_PID)');
  return `/proc/${pid}/root${path}`;
}

/**
 * Makes sure the calling test file runs inside the trust sandbox. Inside: resolves `{ inside:
 * true }`. Without root or without mount-namespace support: resolves `{ inside: false, reason }`
 * so the file can skip its tests. Otherwise re-executes this process inside the sandbox and never
 * resolves: the outer process exits with the inner one's status (its stdout, including node:test's
 * reporter stream, is inherited unchanged).
 */
export async function ensureTrustSandbox(): Promise<SandboxState> {
  const state = await enterTrustSandbox(IN_SANDBOX_SCRIPT);
  if (state.inside) {
    // If the relay is SIGKILLed (runner timeout), exit so the 'exit' hooks (topology cleanup) run.
    watchSandboxParent((parent) => {
      console.error(`trust sandbox: parent ${parent} is gone; exiting to clean up`);
      process.exit(1);
    });
  }
  return state;
}
