/** The child environment filter shared by the demo and the e2e harness. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cleanEnv } from './env.js';

test('demo children lose every trust, proxy and Node option override and keep the rest', () => {
  const env = cleanEnv({}, {
    PATH: '/usr/bin',
    SSL_CERT_FILE: '/etc/x.pem',
    SSL_CERT_DIR: '/etc/x',
    NODE_EXTRA_CA_CERTS: '/etc/x.pem',
    CURL_CA_BUNDLE: '/etc/x.pem',
    https_proxy: 'http://proxy:3128',
    NODE_OPTIONS: '--use-bundled-ca',
    TPROXY_TRUST_SANDBOX: '1',
  });
  assert.deepEqual(env, { PATH: '/usr/bin', TPROXY_TRUST_SANDBOX: '1' });
});
