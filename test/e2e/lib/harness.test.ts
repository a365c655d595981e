/**
 * Unit tests for the pure parts of the e2e harness (no root, no namespaces): the child
 * environment filter, bounded output, `ss` parsing, mountinfo parsing and the byte pattern.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { cleanEnv, isDroppedEnvName } from './env.js';
import { PATTERN_BLOCK_SIZE, patternBytes, patternChunks, patternSha256 } from './pattern.js';
import { BoundedOutput, parseSsListeners } from './proc.js';
import { mountsWithSource, SANDBOX_MOUNT_SOURCE } from './sandbox.js';

test('cleanEnv drops trust, proxy and test-runner variables and keeps the rest', () => {
  const base = {
    PATH: '/usr/bin',
    HOME: '/root',
    OPENSSL_CONF: '/etc/ssl/openssl.cnf',
    SSL_CERT_FILE: 'x',
    SSL_CERT_DIR: 'x',
    CURL_CA_BUNDLE: 'x',
    NODE_EXTRA_CA_CERTS: 'x',
    REQUESTS_CA_BUNDLE: 'x',
    GIT_SSL_CAINFO: 'x',
    AWS_CA_BUNDLE: 'x',
    CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE: 'x',
    SOME_TOOL_CA_BUNDLE: 'x',
    https_proxy: 'x',
    HTTPS_PROXY: 'x',
    NO_PROXY: 'x',
    NODE_OPTIONS: '--use-openssl-ca',
    NODE_TEST_CONTEXT: 'child-v8',
  };
  const env = cleanEnv({ EXTRA: '1', HOME: undefined }, base);
  assert.deepEqual(env, { PATH: '/usr/bin', OPENSSL_CONF: '/etc/ssl/openssl.cnf', EXTRA: '1' });
  assert.equal(base.SSL_CERT_FILE, 'x', 'base is not mutated');
  assert.equal(isDroppedEnvName('CASCADE'), false, 'whole words only');
});

test('BoundedOutput keeps head and tail and counts what it dropped', () => {
  const out = new BoundedOutput(10);
  out.push(Buffer.from('abc'));
  out.push(Buffer.from('defghijklmnopqrstuvwxyz'));
  assert.equal(out.total, 26);
  assert.equal(out.toString(), 'abcde\n[... 16 bytes dropped ...]\nvwxyz');
  const small = new BoundedOutput(10);
  small.push(Buffer.from('hello'));
  assert.equal(small.toString(), 'hello');
});

test('parseSsListeners reads v4, v6, wildcard and device-bound addresses', () => {
  const text = [
    'LISTEN 0      511       198.18.0.2:443        0.0.0.0:*',
    'LISTEN 0      511 [fd00:198:18::2]:443           [::]:*',
    'LISTEN 0      4096               *:8080              *:*',
    'LISTEN 0      128  198.18.0.1%tpc1:15001    0.0.0.0:*',
    '',
  ].join('\n');
  assert.deepEqual(parseSsListeners(text), [
    { address: '198.18.0.2', port: 443 },
    { address: 'fd00:198:18::2', port: 443 },
    { address: '*', port: 8080 },
    { address: '198.18.0.1', port: 15001 },
  ]);
});

test('mountsWithSource finds the sandbox tmpfs mounts in mountinfo', () => {
  const mountinfo = [
    '27 1 254:0 / / rw,relatime - ext4 /dev/vda rw',
    `65 44 0:39 / /usr/local/share/ca-certificates rw,relatime - tmpfs ${SANDBOX_MOUNT_SOURCE} rw,mode=755`,
    `66 44 0:40 / /etc/ssl/certs rw,relatime shared:5 - tmpfs ${SANDBOX_MOUNT_SOURCE} rw,mode=755`,
    '67 44 0:41 / /tmp rw,relatime - tmpfs tmpfs rw',
  ].join('\n');
  assert.deepEqual(mountsWithSource(SANDBOX_MOUNT_SOURCE, mountinfo), ['/usr/local/share/ca-certificates', '/etc/ssl/certs']);
});

test('pattern: chunks, bytes and digest agree, and prefixes are consistent', () => {
  const n = 3 * PATTERN_BLOCK_SIZE + 12345;
  const bytes = patternBytes(n, 's');
  assert.equal(bytes.length, n);
  assert.equal(createHash('sha256').update(bytes).digest('hex'), patternSha256(n, 's'));
  const sizes = [...patternChunks(n, 's')].map((c) => c.length);
  assert.deepEqual(sizes, [PATTERN_BLOCK_SIZE, PATTERN_BLOCK_SIZE, PATTERN_BLOCK_SIZE, 12345]);
  assert.deepEqual(patternBytes(1000, 's'), bytes.subarray(0, 1000), 'a prefix is the shorter pattern');
  assert.notEqual(patternSha256(n, 's'), patternSha256(n, 't'), 'seed matters');
  assert.equal(patternSha256(0, 's'), createHash('sha256').digest('hex'));
  assert.equal(patternBytes(5, 's').length, 5);
  // Blocks differ (index stamp), so swapping two blocks changes the digest.
  const b0 = bytes.subarray(0, PATTERN_BLOCK_SIZE);
  const b1 = bytes.subarray(PATTERN_BLOCK_SIZE, 2 * PATTERN_BLOCK_SIZE);
  assert.notDeepEqual(b0, b1);
  assert.throws(() => patternSha256(-1), RangeError);
});
