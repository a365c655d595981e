/** The demo network's names and `ip` command lists, checked without root. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEMO_ADDRS, MAX_IFNAME, demoNames, setupCommands, teardownCommands } from './network.js';

test('names are pid-unique and veth names fit IFNAMSIZ even for the largest pid', () => {
  assert.deepEqual(demoNames('1234'), { clientNs: 'tpd-c-1234', upstreamNs: 'tpd-u-1234', clientVeth: 'tpdc1234', upstreamVeth: 'tpdu1234' });
  assert.equal(demoNames().clientNs, `tpd-c-${process.pid}`);
  // pid_max is at most 2^22 (proc(5)): 7 digits.
  assert.ok(demoNames(String(2 ** 22)).upstreamVeth.length <= MAX_IFNAME);
  assert.throws(() => demoNames('12345678901234'), /exceeds 15 chars/);
  assert.throws(() => demoNames('a b'), /alphanumeric/);
});

test('every setup step names a namespace, so the host namespace is never touched', () => {
  const n = demoNames('42');
  for (const step of setupCommands(n)) {
    const namesNs = step[0] === '-n' ? [n.clientNs, n.upstreamNs].includes(step[1] ?? '') : false;
    const nsAdd = step[0] === 'netns' && step[1] === 'add';
    const vethIntoNs = step[0] === 'link' && step.filter((a) => a === 'netns').length === 2;
    assert.ok(namesNs || nsAdd || vethIntoNs, `step does not name a namespace: ip ${step.join(' ')}`);
  }
});

test('the veth pair is born inside the two namespaces and the addresses match the diagram', () => {
  const n = demoNames('42');
  const steps = setupCommands(n).map((s) => s.join(' '));
  assert.deepEqual(steps.slice(0, 3), [
    'netns add tpd-c-42',
    'netns add tpd-u-42',
    'link add tpdc42 netns tpd-c-42 type veth peer name tpdu42 netns tpd-u-42',
  ]);
  assert.ok(steps.includes(`-n tpd-c-42 addr add ${DEMO_ADDRS.client4}/24 dev tpdc42`));
  assert.ok(steps.includes(`-n tpd-c-42 addr add ${DEMO_ADDRS.client6}/64 dev tpdc42 nodad`));
  assert.ok(steps.includes(`-n tpd-u-42 addr add 198.18.0.2/24 dev tpdu42`));
  assert.ok(steps.includes(`-n tpd-u-42 addr add 198.18.0.4/24 dev tpdu42`), 'the "down" address exists, so connects are refused at once');
  assert.ok(steps.includes(`-n tpd-u-42 addr add fd00:198:18::2/64 dev tpdu42 nodad`));
  assert.ok(steps.includes('-n tpd-c-42 route add default via 198.18.0.2 dev tpdc42'));
  assert.ok(steps.includes('-n tpd-c-42 -6 route add default via fd00:198:18::2 dev tpdc42'));
  // Links come up only after their addresses are set.
  assert.ok(steps.indexOf('-n tpd-c-42 link set tpdc42 up') > steps.indexOf(`-n tpd-c-42 addr add ${DEMO_ADDRS.client6}/64 dev tpdc42 nodad`));
});

test('teardown deletes exactly our two namespaces', () => {
  assert.deepEqual(teardownCommands(demoNames('7')), [
    ['netns', 'del', 'tpd-u-7'],
    ['netns', 'del', 'tpd-c-7'],
  ]);
});
