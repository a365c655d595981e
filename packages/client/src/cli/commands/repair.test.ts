process.env.TZ = 'UTC';

import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { ErrorCode, RpcError, type HelperRepairResult, type PreviousSession } from '@tproxy/protocol';
import { FakeHelper } from '../../test/fake-helper.js';
import { T0, sampleInfo, stoppedStatus } from '../../test/fixtures.js';
import { main } from '../main.js';

const previous: PreviousSession = {
  pid: 4242,
  startedAt: T0,
  ports: [443, 8443],
  repairedAt: T0 + 60_000,
  removed: ['nft table inet tproxy_helper', 'trust-store entry /usr/local/share/ca-certificates/tproxy-ab.crt'],
  exchangesLost: true,
  note: 'helper pid 4242 stopped without cleaning up',
};

describe('tproxyctl repair and the previous session in status', () => {
  let fake: FakeHelper;
  let repairResult: HelperRepairResult | RpcError;

  async function run(...argv: string[]) {
    const out: string[] = [];
    const err: string[] = [];
    const code = await main([...argv, '--socket', fake.socketPath], {
      stdout: { write: (c) => out.push(String(c)) },
      stderr: { write: (c) => err.push(c) },
      env: {},
    });
    return { code, stdout: out.join(''), stderr: err.join('') };
  }

  beforeEach(async () => {
    fake = await FakeHelper.start();
    repairResult = { removed: [] };
    fake
      .on('helper.repair', () => {
        if (repairResult instanceof RpcError) throw repairResult;
        return repairResult;
      })
      .on('capture.status', () => stoppedStatus())
      .on('helper.info', () => sampleInfo({ previousSession: previous }));
  });
  afterEach(() => fake.close());

  it('says so when there was nothing to repair', async () => {
    const r = await run('repair');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'nothing to repair: no rules, routes or trust-store entries of tproxy were left behind\n');
    assert.deepEqual(fake.received.find((m) => m.method === 'helper.repair')?.params, {});
  });

  it('lists what was removed and the killed session', async () => {
    repairResult = { removed: previous.removed, previous };
    const r = await run('repair');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      [
        'removed 2 leftovers:',
        '  nft table inet tproxy_helper',
        '  trust-store entry /usr/local/share/ca-certificates/tproxy-ab.crt',
        'previous session: helper pid 4242 (capturing ports 443,8443 since 2024-05-06 07:08:09.123) stopped without cleaning up; repaired at 2024-05-06 07:09:09.123',
        '  removed: nft table inet tproxy_helper',
        '  removed: trust-store entry /usr/local/share/ca-certificates/tproxy-ab.crt',
        '  its exchanges are lost (they lived only in its memory); start a new capture',
        '',
      ].join('\n'),
    );
    const json = await run('repair', '--json');
    assert.deepEqual(JSON.parse(json.stdout), repairResult);
  });

  it('escapes what the helper sent', async () => {
    repairResult = { removed: ['evil \x1b[2J name'] };
    const r = await run('repair');
    assert.match(r.stdout, /evil \\x1b\[2J name/);
    assert.ok(!r.stdout.includes('\x1b'), 'no raw escape reaches the terminal');
  });

  it('exits 1 with the helper message while capture runs', async () => {
    repairResult = new RpcError(ErrorCode.CaptureRunning, 'capture is running: stop capture first');
    const r = await run('repair');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /capture is running: stop capture first/);
  });

  it('status shows the previous session the helper reports', async () => {
    const r = await run('status');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^previous session: helper pid 4242 \(capturing ports 443,8443 since 2024-05-06 07:08:09\.123\) stopped without cleaning up/m);
    assert.match(r.stdout, /^ {2}its exchanges are lost/m);
  });
});
