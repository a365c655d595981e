import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { listenFds } from './activation.js';

describe('listenFds', () => {
  it('returns fds from 3 when LISTEN_PID is ours, and unsets the variables', () => {
    const env: NodeJS.ProcessEnv = { LISTEN_PID: '42', LISTEN_FDS: '2', LISTEN_FDNAMES: 'a:b' };
    assert.deepEqual(listenFds(env, 42), [3, 4]);
    assert.deepEqual(env, {});
  });
  it('ignores variables meant for another process', () => {
    assert.deepEqual(listenFds({ LISTEN_PID: '41', LISTEN_FDS: '1' }, 42), []);
  });
  it('ignores garbage and absence', () => {
    assert.deepEqual(listenFds({ LISTEN_PID: '42', LISTEN_FDS: 'x' }, 42), []);
    assert.deepEqual(listenFds({}, 42), []);
  });
});
