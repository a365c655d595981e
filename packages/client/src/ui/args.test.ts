import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseUiArgs } from './args.js';

describe('tproxy-ui arguments', () => {
  test('--socket, then $TPROXY_SOCKET, then the default', () => {
    assert.deepEqual(parseUiArgs(['--socket', '/x.sock'], { TPROXY_SOCKET: '/env.sock' }), { socketPath: '/x.sock', demo: false, help: false });
    assert.equal((parseUiArgs([], { TPROXY_SOCKET: '/env.sock' }) as { socketPath: string }).socketPath, '/env.sock');
    assert.equal((parseUiArgs([], {}) as { socketPath: string }).socketPath, '/run/tproxy/helper.sock');
  });

  test('--demo and --help', () => {
    assert.equal((parseUiArgs(['--demo'], {}) as { demo: boolean }).demo, true);
    assert.equal((parseUiArgs(['-h'], {}) as { help: boolean }).help, true);
  });

  test('unknown options and positionals are errors', () => {
    assert.ok('error' in parseUiArgs(['--bogus'], {}));
    assert.ok('error' in parseUiArgs(['extra'], {}));
  });
});
