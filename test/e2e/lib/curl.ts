/**
 * curl as a test client inside a namespace. It owns the flags every e2e curl must carry: `-q` (no
 * ~/.curlrc), `--noproxy '*'`, `-sS` (errors on stderr, no progress meter) and a `--max-time` just
 * under the harness timeout, so curl reports its own timeout (exit 28) before the harness kills it.
 * The body is hashed as it streams, so multi-GiB downloads never sit in memory; only a bounded
 * copy of stdout is kept. The environment is cleanEnv(): no CURL_CA_BUNDLE or SSL_CERT_FILE, so
 * curl trusts exactly `--cacert` or the (sandboxed) system store.
 */
import { createHash } from 'node:crypto';
import { type RunOptions, type RunResult, runInNs } from './proc.js';

export interface CurlResult extends RunResult {
  /** Hex SHA-256 of everything curl wrote to stdout (the body, unless -o/-w say otherwise). */
  sha256: string;
}

/** Exit codes from curl(1) "EXIT CODES" that tests assert on. */
export const CURL_EXIT = {
  ok: 0,
  couldNotConnect: 7,
  timeout: 28,
  sslConnectError: 35,
  peerFailedVerification: 60,
} as const;

export interface CurlOptions extends RunOptions {
  /**
   * Run curl as this uid (and gid, no supplementary groups) through setpriv, after `ip netns exec`
   * (which needs root) has entered the namespace: an operator's capture covers only its own uid.
   */
  asUid?: number;
}

/** Runs `curl <fixed flags> ...args` in `ns`; resolves with curl's exit status (non-zero is not an error). */
export async function curlInNs(ns: string, args: readonly string[], opts: CurlOptions = {}): Promise<CurlResult> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const maxTimeSec = Math.max(1, Math.floor(timeoutMs / 1000) - 2);
  const hash = createHash('sha256');
  const { asUid, ...runOpts } = opts;
  const prefix = asUid === undefined ? [] : ['setpriv', `--reuid=${asUid}`, `--regid=${asUid}`, '--clear-groups'];
  const result = await runInNs(ns, [...prefix, 'curl', '-q', '--noproxy', '*', '-sS', '--max-time', String(maxTimeSec), ...args], {
    ...runOpts,
    timeoutMs,
    onStdout: (chunk) => {
      hash.update(chunk);
      opts.onStdout?.(chunk);
    },
  });
  return { ...result, sha256: hash.digest('hex') };
}
