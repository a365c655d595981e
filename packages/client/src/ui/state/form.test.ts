import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { fieldOfError, parsePorts } from './form.js';

describe('start form', () => {
  test('parsePorts: commas and spaces separate; only syntax is judged here', () => {
    assert.deepEqual(parsePorts('443, 8443,,9443 '), { ports: [443, 8443, 9443] });
    assert.deepEqual(parsePorts('70000'), { ports: [70000] }, 'ranges are the helper\'s to check');
    assert.deepEqual(parsePorts(''), { error: 'ports: name at least one port' });
    assert.deepEqual(parsePorts('44a'), { error: "ports: '44a' is not a port number" });
  });

  test('fieldOfError reads the field the helper named', () => {
    assert.equal(fieldOfError('ports[0]: ports[] must be between 1 and 65535'), 'ports');
    assert.equal(fieldOfError('ipv6: ipv6 must be true or false'), 'ipv6');
    assert.equal(fieldOfError('listenPort: must not be one of the intercepted ports'), undefined);
  });
});
