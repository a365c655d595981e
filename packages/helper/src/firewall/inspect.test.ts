import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ExecError, FakeExec } from '../exec.js';
import type { Exec } from '../exec.js';
import { describeLeftovers, findLeftovers, isOurRule, parseIpRules, parseNftTables, parseRoutes } from './inspect.js';

const config = { mark: 0x2333, routeTable: 233 };

// Captured from iproute2 6.1 / nft 1.0.6 in a scratch network namespace.
const RULES_V4 =
  '[{"priority":0,"src":"all","table":"255"},{"priority":4233,"src":"all","fwmark":"0x2333","table":"233"},' +
  '{"priority":32766,"src":"all","table":"254"},{"priority":32767,"src":"all","table":"253"}]\n';
const ROUTES_V6 = '[{"type":"local","dst":"default","dev":"lo","metric":1024,"flags":[],"pref":"medium"}]\n';

describe('parsers', () => {
  it('parseNftTables lists "family name"', () => {
    assert.deepEqual(parseNftTables('table inet tproxy_helper\ntable ip nat\n\n'), ['inet tproxy_helper', 'ip nat']);
    assert.deepEqual(parseNftTables(''), []);
  });

  it('parseIpRules keeps priority, fwmark, mask and numeric table', () => {
    const rules = parseIpRules('ipv4', RULES_V4);
    assert.equal(rules.length, 4);
    assert.deepEqual(rules[1], { family: 'ipv4', priority: 4233, fwmark: '0x2333', table: '233', text: '4233: from all fwmark 0x2333 lookup 233' });
    const masked = parseIpRules('ipv6', '[{"priority":9,"src":"all","fwmark":"0x2333","fwmask":"0xffff","table":"7"}]');
    assert.equal(masked[0]?.text, '9: from all fwmark 0x2333/0xffff lookup 7');
  });

  it('parseRoutes reads type, destination and device', () => {
    assert.deepEqual(parseRoutes('ipv6', ROUTES_V6), [{ family: 'ipv6', type: 'local', dst: 'default', dev: 'lo', text: 'local default dev lo' }]);
    assert.deepEqual(parseRoutes('ipv4', ''), []);
  });

  it('isOurRule matches our mark (any mask, any priority) or our table', () => {
    const [local, ours] = parseIpRules('ipv4', RULES_V4);
    assert.ok(ours && isOurRule(ours, config));
    assert.ok(local && !isOurRule(local, config));
    assert.ok(isOurRule({ family: 'ipv4', priority: 1, table: '233', text: '' }, config));
    assert.ok(isOurRule({ family: 'ipv4', priority: 1, fwmark: '0x2333', fwmask: '0xff', table: '9', text: '' }, config));
  });
});

describe('findLeftovers', () => {
  it('reports our table, rules and routes', async () => {
    const exec = new FakeExec();
    exec.respond = (c) =>
      ({
        'nft list tables': 'table inet tproxy_helper\n',
        'ip -N -j -4 rule show': RULES_V4,
        'ip -N -j -6 rule show': '[]',
        'ip -j -6 route show table 233': ROUTES_V6,
      })[c.argv.join(' ')] ?? '';
    const found = await findLeftovers(exec, config);
    assert.equal(found.clean, false);
    assert.deepEqual(describeLeftovers(found), [
      'nft table inet tproxy_helper',
      'ipv4 rule 4233: from all fwmark 0x2333 lookup 233',
      'ipv6 route local default dev lo',
    ]);
  });

  it('is clean on a host without our state; a missing route table is not an error', async () => {
    const exec = new FakeExec();
    exec.respond = (c) => (c.argv.includes('rule') ? RULES_V4.replace(/\{"priority":4233[^}]*\},/, '') : '');
    exec.failWhen = (c) => (c.argv.includes('route') ? 'Error: ipv4: FIB table does not exist.\nDump terminated' : null);
    const found = await findLeftovers(exec, config);
    assert.deepEqual(found, { table: false, rules: [], routes: [], errors: [], clean: true });
  });

  it('never throws: failed queries are listed and the result is not clean', async () => {
    const exec: Exec = {
      async run(file, args) {
        if (file === 'nft') throw new ExecError([file, ...args], null, '', 'ENOENT');
        if (args.includes('-6')) throw new ExecError([file, ...args], 2, 'RTNETLINK answers: Address family not supported by protocol\n');
        return { stdout: '[]', stderr: '' };
      },
    };
    const found = await findLeftovers(exec, config);
    assert.equal(found.clean, false);
    assert.deepEqual(found.errors, [
      'listing nft tables: nft not installed',
      'listing ipv6 ip rules: RTNETLINK answers: Address family not supported by protocol',
      'listing ipv6 routes in table 233: RTNETLINK answers: Address family not supported by protocol',
    ]);
  });
});
