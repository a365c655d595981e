import assert from 'node:assert/strict';
import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ErrorCode, RpcError, type CaptureScope } from '@tproxy/protocol';
import { EMPTY_POLICY, decideScope, describeScope, loadPolicy, policyFromJson, type Policy } from './policy.js';

const GRANTS = policyFromJson({ operators: { '1000': { captureUids: [1001] }, '2000': { captureUids: 'any' } } }, '/etc/tproxy/helper.json');

function decide(policy: Policy, uid: number | null, requested?: CaptureScope): CaptureScope | RpcError {
  try {
    return decideScope(policy, { uid, requested });
  } catch (err) {
    if (err instanceof RpcError) return err;
    throw err;
  }
}

describe('decideScope: who may capture what', () => {
  // [who, policy, uid, requested, expected scope or /error pattern/]
  const table: Array<[string, Policy, number | null, CaptureScope | undefined, CaptureScope | RegExp]> = [
    ['root, nothing asked: every process', EMPTY_POLICY, 0, undefined, {}],
    ['root names any uids', EMPTY_POLICY, 0, { uids: [0, 65534] }, { uids: [0, 65534] }],
    ['root with a cgroup', EMPTY_POLICY, 0, { cgroup: 'system.slice/x.service' }, { cgroup: 'system.slice/x.service' }],
    ['no credentials (socket mode was the gate) acts like root', EMPTY_POLICY, null, { uids: [5] }, { uids: [5] }],
    ['operator, nothing asked: its own uid', EMPTY_POLICY, 65534, undefined, { uids: [65534] }],
    ['operator names itself', EMPTY_POLICY, 65534, { uids: [65534] }, { uids: [65534] }],
    ['operator names root', EMPTY_POLICY, 65534, { uids: [0] }, /uid 65534 may capture only uid 65534, not 0; .*"65534": \{"captureUids": \[65534,0\]\}/],
    ['operator with a cgroup still gets its uid', EMPTY_POLICY, 65534, { cgroup: 'tproxy/run-1' }, { cgroup: 'tproxy/run-1', uids: [65534] }],
    ['granted a list: default is still its own uid', GRANTS, 1000, undefined, { uids: [1000] }],
    ['granted a list: names a granted uid', GRANTS, 1000, { uids: [1000, 1001] }, { uids: [1000, 1001] }],
    ['granted a list: names another', GRANTS, 1000, { uids: [1002] }, /may capture only uids 1000, 1001, not 1002.*\/etc\/tproxy\/helper\.json/],
    ['granted any: default is every process', GRANTS, 2000, undefined, {}],
    ['granted any: names root', GRANTS, 2000, { uids: [0] }, { uids: [0] }],
  ];
  for (const [name, policy, uid, requested, expected] of table) {
    it(name, () => {
      const got = decide(policy, uid, requested);
      if (expected instanceof RegExp) {
        assert.ok(got instanceof RpcError, `expected a refusal, got ${JSON.stringify(got)}`);
        assert.equal(got.code, ErrorCode.ScopeNotAllowed);
        assert.match(got.message, expected);
      } else {
        assert.deepEqual(got, expected);
      }
    });
  }

  it('describes scopes for the log', () => {
    assert.equal(describeScope(undefined), 'every local process');
    assert.equal(describeScope({ uids: [1000] }), 'uid 1000');
    assert.equal(describeScope({ uids: [1, 2], cgroup: 'tproxy/run-1' }), 'uids 1,2 in cgroup tproxy/run-1');
  });
});

describe('loadPolicy: the root-only configuration file', { skip: process.getuid?.() !== 0 ? 'needs root to chown test files' : false }, () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tproxy-policy-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function file(name: string, text: string, mode = 0o644, owner = 0): Promise<string> {
    const path = join(dir, name);
    await writeFile(path, text);
    await chmod(path, mode);
    await chown(path, owner, owner);
    return path;
  }

  it('loads grants from a root-owned file', async () => {
    const path = await file('ok.json', JSON.stringify({ operators: { '1000': { captureUids: 'any' }, '1001': { captureUids: [1001, 1002] }, '1002': {} } }));
    const policy = await loadPolicy(path);
    assert.equal(policy.source, path);
    assert.deepEqual([...policy.grants], [
      [1000, 'any'],
      [1001, [1001, 1002]],
    ]);
  });

  it('refuses a file not owned by root, or group/world-writable, naming the fix', async () => {
    await assert.rejects(loadPolicy(await file('owned.json', '{}', 0o644, 65534)), /owned\.json: refusing to load: the file is owned by uid 65534, not root \(chown root/);
    await assert.rejects(loadPolicy(await file('gw.json', '{}', 0o664)), /gw\.json: refusing to load: the file is group- or world-writable \(mode 664; chmod go-w/);
    await assert.rejects(loadPolicy(await file('ww.json', '{}', 0o646)), /world-writable \(mode 646/);
  });

  it('refuses a file in a directory others may write', async () => {
    const open = join(dir, 'open');
    await mkdir(open);
    await chmod(open, 0o777);
    const path = join(open, 'helper.json');
    await writeFile(path, '{}');
    await assert.rejects(loadPolicy(path), /its directory .*open is group- or world-writable/);
  });

  it('names the file and the field for bad JSON and bad values', async () => {
    await assert.rejects(loadPolicy(await file('bad.json', '{"operators": ')), /bad\.json: not valid JSON/);
    await assert.rejects(loadPolicy(await file('uid.json', '{"operators": {"alice": {"captureUids": "any"}}}')), /uid\.json: operators\.alice: keys must be decimal uids/);
    await assert.rejects(loadPolicy(await file('val.json', '{"operators": {"1000": {"captureUids": "all"}}}')), /val\.json: operators\.1000\.captureUids: must be "any" or an array of uids/);
    await assert.rejects(loadPolicy(await file('extra.json', '{"operatorz": {}}')), /extra\.json: .*operatorz/);
  });

  it('an explicit --config must exist; the default may be absent', async () => {
    await assert.rejects(loadPolicy(join(dir, 'missing.json')), /missing\.json: cannot read the helper configuration/);
  });
});
