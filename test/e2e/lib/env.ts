/**
 * The environment handed to every child the harness starts: cleanEnv() drops trust, proxy and
 * test-runner variables. The filter is shared with `tproxy-ui --demo`, so it lives in the client
 * package (packages/client/src/demo/env.ts) and is re-exported here; tests may import product
 * code, never the reverse.
 */
export { PROXY_ENV_VARS, TRUST_ENV_VARS, cleanEnv, isDroppedEnvName } from '@tproxy/client/child-env';
