/** The trust sandbox's pure parts, and that the script and this module agree (no root). */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  SANDBOX_ENV,
  SANDBOX_HOST_PID_ENV,
  SANDBOX_MOUNT_SOURCE,
  SANDBOX_NETNS_SOURCE,
  exitCodeFor,
  findTrustSandboxScript,
  hostViewPid,
  inTrustSandbox,
  mountsWithSource,
  sandboxArgv,
} from './sandbox.js';

const mountinfo = [
  '27 1 254:0 / / rw,relatime - ext4 /dev/vda rw',
  `65 44 0:39 / /usr/local/share/ca-certificates rw,relatime - tmpfs ${SANDBOX_MOUNT_SOURCE} rw,mode=755`,
  `66 44 0:40 / /etc/ssl/certs rw,relatime shared:5 - tmpfs ${SANDBOX_MOUNT_SOURCE} rw,mode=755`,
  `67 44 0:41 / /run/netns rw,relatime - tmpfs ${SANDBOX_NETNS_SOURCE} rw,mode=755`,
  '68 44 0:42 / /my\\040dir rw,relatime - tmpfs other rw',
].join('\n');

test('mountsWithSource finds our tmpfs mounts by source name', () => {
  assert.deepEqual(mountsWithSource(SANDBOX_MOUNT_SOURCE, mountinfo), ['/usr/local/share/ca-certificates', '/etc/ssl/certs']);
  assert.deepEqual(mountsWithSource('other', mountinfo), ['/my dir']);
});

test('inside means the env marker AND every required mount', () => {
  assert.equal(inTrustSandbox({ [SANDBOX_ENV]: '1' }, mountinfo), true);
  assert.equal(inTrustSandbox({}, mountinfo), false, 'mounts without the marker');
  assert.equal(inTrustSandbox({ [SANDBOX_ENV]: '1' }, mountinfo.split('\n').slice(0, 3).join('\n')), false, 'no private /run/netns');
  assert.equal(hostViewPid({ [SANDBOX_HOST_PID_ENV]: '123' }), 123);
  assert.equal(hostViewPid({ [SANDBOX_HOST_PID_ENV]: 'x' }), undefined);
});

test('the shared script is found from this module and uses the same marks and variables', () => {
  const script = findTrustSandboxScript();
  assert.ok(script?.endsWith('/scripts/trust-sandbox.sh'), String(script));
  const text = readFileSync(script as string, 'utf8');
  assert.match(text, new RegExp(`^MARK=${SANDBOX_MOUNT_SOURCE}$`, 'm'));
  assert.match(text, new RegExp(`^NETNS_MARK=${SANDBOX_NETNS_SOURCE}$`, 'm'));
  assert.match(text, new RegExp(`export ${SANDBOX_ENV}=1`));
  assert.match(text, new RegExp(`export ${SANDBOX_HOST_PID_ENV}=`));
  assert.deepEqual(sandboxArgv('/s.sh', ['node', '--import', 'tsx', 'x.ts']), ['/bin/sh', '/s.sh', 'node', '--import', 'tsx', 'x.ts']);
});

test('the relay exits like the shell would', () => {
  assert.equal(exitCodeFor(3, null), 3);
  assert.equal(exitCodeFor(null, 'SIGTERM'), 143);
  assert.equal(exitCodeFor(null, 'SIGKILL'), 137);
});
