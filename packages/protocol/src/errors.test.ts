import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ErrorCode, RpcError, hasErrorCode } from './errors.js';

describe('RpcError', () => {
  it('round-trips through the wire with a stable string code', () => {
    const wire = new RpcError(ErrorCode.CaptureAlreadyRunning, 'already running', { since: 5 }).toWire();
    assert.deepEqual(wire, { code: -32011, message: 'already running', data: { since: 5, code: 'capture-already-running' } });
    const back = RpcError.fromWire(wire);
    assert.equal(back.code, ErrorCode.CaptureAlreadyRunning);
    assert.equal(back.codeName, 'capture-already-running');
    assert.deepEqual(back.detail, { since: 5 });
    assert.ok(hasErrorCode(back, ErrorCode.CaptureAlreadyRunning));
    assert.ok(!hasErrorCode(back, ErrorCode.AccessDenied));
  });

  it('names codes it does not know "unknown"', () => {
    assert.equal(RpcError.fromWire({ code: -1, message: 'x' }).codeName, 'unknown');
  });
});
