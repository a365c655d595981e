/**
 * The environment handed to every child process the demo (and the e2e harness) starts. It owns one
 * decision: which inherited variables would make a child trust, or route through, something other
 * than what the run set up. Many machines and CI images point SSL_CERT_FILE, CURL_CA_BUNDLE,
 * NODE_EXTRA_CA_CERTS and friends at their own bundle, and may set proxies; either would make a curl
 * or Node client in a demo namespace ignore the sandboxed system trust store (where tproxy-helper
 * installs its CA) or try to leave the namespace through a proxy. It must not add anything on its
 * own: callers pass what they need as `extra`. test/e2e/lib/env.ts re-exports it (product code
 * never imports test code; the reverse is fine).
 */

/** Variables known to redirect a TLS client's trust anchors away from the system store. */
export const TRUST_ENV_VARS: readonly string[] = [
  'SSL_CERT_FILE',
  'SSL_CERT_DIR',
  'CURL_CA_BUNDLE',
  'NODE_EXTRA_CA_CERTS',
  'NODE_TLS_REJECT_UNAUTHORIZED',
  'REQUESTS_CA_BUNDLE',
  'GIT_SSL_CAINFO',
  'GIT_SSL_CAPATH',
  'AWS_CA_BUNDLE',
  'PIP_CERT',
  'HTTPLIB2_CA_CERTS',
  'NIX_SSL_CERT_FILE',
  'GRPC_DEFAULT_SSL_ROOTS_FILE_PATH',
  'CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE',
  'NPM_CONFIG_CAFILE',
  'DENO_CERT',
];

/** Proxy settings honoured by curl, Node's undici (when opted in), git, pip, ... in either case. */
export const PROXY_ENV_VARS: readonly string[] = ['http_proxy', 'https_proxy', 'all_proxy', 'no_proxy', 'ftp_proxy'];

/**
 * Also dropped: NODE_OPTIONS can carry --use-openssl-ca / --use-bundled-ca (trust again) or
 * --require hooks; NODE_TEST_CONTEXT is node:test's private marker, and a child Node process that
 * inherits it would talk the runner's serialized protocol instead of printing.
 */
const OTHER_DROPPED = ['NODE_OPTIONS', 'NODE_TEST_CONTEXT'];

/**
 * Names not in the lists above that still look like a trust override (`*_CA_BUNDLE`, `*_CERT_FILE`,
 * `*_SSL_*`, ...). Matching whole `_`-separated words keeps OPENSSL_CONF and unrelated names.
 */
const TRUST_NAME_PATTERN = /(^|_)(SSL|TLS|CA|CERT|CERTS|CAINFO|CAFILE|CAPATH|CACERT|CACERTS)(_|$)/i;

/** True when `name` is removed by cleanEnv(). */
export function isDroppedEnvName(name: string): boolean {
  const upper = name.toUpperCase();
  return (
    TRUST_ENV_VARS.includes(upper) ||
    PROXY_ENV_VARS.includes(name.toLowerCase()) ||
    OTHER_DROPPED.includes(upper) ||
    TRUST_NAME_PATTERN.test(name)
  );
}

/**
 * A copy of `base` (default: this process's environment) without any trust, proxy or test-runner
 * variable, with `extra` applied on top (an `undefined` value deletes). Pure: never mutates `base`.
 */
export function cleanEnv(
  extra: Readonly<Record<string, string | undefined>> = {},
  base: NodeJS.ProcessEnv = process.env,
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(base)) {
    if (value !== undefined && !isDroppedEnvName(name)) env[name] = value;
  }
  for (const [name, value] of Object.entries(extra)) {
    if (value === undefined) delete env[name];
    else env[name] = value;
  }
  return env;
}
