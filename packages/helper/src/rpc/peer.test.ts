import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decidePeer } from './peer.js';

describe('decidePeer', () => {
  it('gives root write access', () => {
    assert.deepEqual(decidePeer({ uid: 0, gid: 0, pid: 1 }, []), { permissions: { read: true, write: true }, rule: 'root' });
  });
  it('gives an allowed operator uid write access', () => {
    assert.equal(decidePeer({ uid: 1000, gid: 1000, pid: 2 }, [1000]).rule, 'allowed-uid');
  });
  it('refuses everyone else', () => {
    assert.deepEqual(decidePeer({ uid: 1001, gid: 1001, pid: 3 }, [1000]), { permissions: { read: false, write: false }, rule: 'refused' });
  });
});
