import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { IdleExit, busyReason, type IdleClock, type IdleState } from './idle-exit.js';

/** A manual clock: `advance(ms)` fires due timers in order. */
function fakeClock() {
  let now = 0;
  let nextId = 1;
  const timers = new Map<number, { at: number; fn: () => void }>();
  const clock: IdleClock = {
    setTimeout(fn, ms) {
      const id = nextId++;
      timers.set(id, { at: now + ms, fn });
      return id;
    },
    clearTimeout(handle) {
      timers.delete(handle as number);
    },
  };
  return {
    clock,
    pending: () => timers.size,
    advance(ms: number) {
      const end = now + ms;
      for (;;) {
        const due = [...timers.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
        if (!due) break;
        timers.delete(due[0]);
        now = due[1].at;
        due[1].fn();
      }
      now = end;
    },
  };
}

function setup(idleMs = 1000) {
  const state: IdleState = { captureRunning: false, clients: 0 };
  const fired: string[] = [];
  const c = fakeClock();
  const idle = new IdleExit(idleMs, () => state, (why) => fired.push(why), c.clock);
  return { state, fired, c, idle };
}

describe('IdleExit', () => {
  it('fires once after the idle period when nothing runs, saying why', () => {
    const { fired, c, idle } = setup();
    idle.update();
    c.advance(999);
    assert.deepEqual(fired, []);
    c.advance(1);
    assert.equal(fired.length, 1);
    assert.match(fired[0]!, /idle for 1 s.*no capture running, no RPC client connected/);
    idle.update();
    c.advance(5000);
    assert.equal(fired.length, 1);
  });

  it('does not fire while a client is connected, and restarts the full period after it leaves', () => {
    const { state, fired, c, idle } = setup();
    idle.update();
    c.advance(900);
    state.clients = 1;
    idle.update();
    assert.equal(idle.armed, false);
    c.advance(10_000);
    assert.deepEqual(fired, []);
    state.clients = 0;
    idle.update();
    c.advance(999);
    assert.deepEqual(fired, []);
    c.advance(1);
    assert.equal(fired.length, 1);
  });

  it('does not fire while capture runs, even with no client', () => {
    const { state, fired, c, idle } = setup();
    state.captureRunning = true;
    idle.update();
    c.advance(60_000);
    assert.deepEqual(fired, []);
    state.captureRunning = false;
    idle.update();
    c.advance(1000);
    assert.equal(fired.length, 1);
  });

  it('re-checks the state when the timer expires (a change without update() wins)', () => {
    const { state, fired, c, idle } = setup();
    idle.update();
    state.captureRunning = true;
    c.advance(1000);
    assert.deepEqual(fired, []);
    assert.equal(c.pending(), 0);
    state.captureRunning = false;
    idle.update();
    c.advance(1000);
    assert.equal(fired.length, 1);
  });

  it('repeated updates while idle do not push the deadline back', () => {
    const { fired, c, idle } = setup();
    idle.update();
    c.advance(500);
    idle.update();
    c.advance(500);
    assert.equal(fired.length, 1);
  });

  it('dispose() cancels for good', () => {
    const { fired, c, idle } = setup();
    idle.update();
    idle.dispose();
    idle.update();
    c.advance(5000);
    assert.deepEqual(fired, []);
    assert.equal(c.pending(), 0);
  });

  it('rejects a non-positive period', () => {
    assert.throws(() => new IdleExit(0, () => ({ captureRunning: false, clients: 0 }), () => undefined), RangeError);
  });

  it('busyReason names what keeps the helper up', () => {
    assert.equal(busyReason({ captureRunning: false, clients: 0 }), null);
    assert.equal(busyReason({ captureRunning: true, clients: 2 }), 'capture is running');
    assert.equal(busyReason({ captureRunning: false, clients: 2 }), '2 RPC client(s) connected');
  });
});
