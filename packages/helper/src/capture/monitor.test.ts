/**
 * SteeringMonitor with a real Steering over a FakeExec and a manual clock: the heartbeat script
 * and its cadence, verify results turned into problems, logging once per change, and stop()
 * leaving no timer behind.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CaptureStartParamsSchema } from '@tproxy/protocol';
import { FakeExec } from '../exec.js';
import type { ExecCall } from '../exec.js';
import { Steering } from '../firewall/apply.js';
import { renderNftHeartbeat } from '../firewall/nft.js';
import { HEARTBEAT_INTERVAL_MS, planSteering, RULE_PRIORITY } from '../firewall/plan.js';
import { createLogger } from '../log.js';
import { SteeringMonitor, VERIFY_INTERVAL_MS } from './monitor.js';
import type { MonitorTimers } from './monitor.js';

/** A manual clock: `advance(ms)` fires due timers in time order and lets their async work finish. */
class ManualTimers implements MonitorTimers {
  now = 1_000_000;
  private nextId = 1;
  readonly pending = new Map<number, { at: number; fn: () => void; ms: number }>();
  readonly delays: number[] = [];

  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.pending.set(id, { at: this.now + ms, fn, ms });
    this.delays.push(ms);
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.pending.delete(handle as number);
  }

  async advance(ms: number): Promise<void> {
    const end = this.now + ms;
    for (;;) {
      const due = [...this.pending.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      const [id, t] = due;
      this.pending.delete(id);
      this.now = t.at;
      t.fn();
      await settle();
    }
    this.now = end;
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((r) => setImmediate(r));
}

const plan = planSteering(CaptureStartParamsSchema.parse({ ipv6: false }));
const HEARTBEAT = renderNftHeartbeat(plan);

const LISTING = [
  'table inet tproxy_helper {',
  '\tset ports {',
  '\t\ttype inet_service',
  '\t\tflags timeout',
  '\t\telements = { 443 timeout 8s expires 7s }',
  '\t}',
  '\tchain output {',
  '\t\ttype route hook output priority mangle; policy accept;',
  '\t\tmeta mark & 0x00003fff == 0x00000539 return',
  '\t\tmeta nfproto ipv4 tcp dport @ports ct state new ct mark set ct mark & 0xffffe333 | 0x00002333',
  '\t\tmeta nfproto ipv4 ct mark & 0x00003fff == 0x00002333 meta mark set meta mark & 0xffffe333 | 0x00002333',
  '\t}',
  '\tchain prerouting {',
  '\t\tiifname "lo" tcp dport @ports meta mark & 0x00003fff == 0x00002333 meta nfproto ipv4 tproxy ip to 127.0.0.1:8443 accept',
  '\t}',
  '}',
].join('\n');

/** A kernel holding our whole steering until `tableGone` is set. */
function setup() {
  const exec = new FakeExec();
  const kernel = { tableGone: false };
  exec.respond = (c: ExecCall) => {
    const key = c.argv.join(' ');
    if (key === 'nft list tables') return kernel.tableGone ? '' : 'table inet tproxy_helper\n';
    if (key === 'nft list table inet tproxy_helper') return LISTING;
    if (key === 'ip -N -j -4 rule show') return JSON.stringify([{ priority: RULE_PRIORITY, src: 'all', fwmark: '0x2333', fwmask: '0x3fff', table: '233' }]);
    if (key === 'ip -j -4 route show table 233') return JSON.stringify([{ type: 'local', dst: 'default', dev: 'lo' }]);
    return '[]';
  };
  exec.failWhen = (c) => (kernel.tableGone && c.input === HEARTBEAT ? 'Error: No such file or directory' : null);
  const lines: string[] = [];
  const log = createLogger('test', 'info', (l) => lines.push(l));
  const timers = new ManualTimers();
  const changes: boolean[] = [];
  const monitor = new SteeringMonitor({ steering: new Steering(exec, log), plan, log, timers, now: () => timers.now, onChange: (h) => changes.push(h.ok) });
  const heartbeats = () => exec.calls.filter((c) => c.input === HEARTBEAT).length;
  const verifies = () => exec.calls.filter((c) => c.argv.join(' ') === 'nft list tables').length;
  return { exec, kernel, lines, timers, monitor, heartbeats, verifies, changes };
}

describe('SteeringMonitor', () => {
  it('calls onChange when the problems change (lost, a new symptom, restored), never on an unchanged check', async () => {
    const { kernel, timers, monitor, changes } = setup();
    monitor.start();
    await timers.advance(10_000);
    assert.deepEqual(changes, [], 'nothing changed while everything is in place');
    kernel.tableGone = true;
    await timers.advance(10_000);
    // The failed heartbeat and the missing table are noticed by different loops: up to two reports.
    assert.ok(changes.length >= 1 && changes.length <= 2 && changes.every((ok) => !ok), JSON.stringify(changes));
    const lost = changes.length;
    await timers.advance(10_000);
    assert.equal(changes.length, lost, 'the same problems again are not news');
    kernel.tableGone = false;
    await timers.advance(10_000);
    assert.equal(changes.at(-1), true);
    const restored = changes.length;
    await timers.advance(10_000);
    assert.equal(changes.length, restored);
    await monitor.stop();
  });

  it('refreshes the port set every 2 s and verifies every 5 s, never before one interval', async () => {
    const { exec, timers, monitor, heartbeats, verifies } = setup();
    monitor.start();
    await settle();
    assert.equal(exec.calls.length, 0, 'apply just succeeded: nothing runs at once');
    assert.deepEqual(timers.delays.sort(), [HEARTBEAT_INTERVAL_MS, VERIFY_INTERVAL_MS].sort());
    await timers.advance(1_999);
    assert.equal(heartbeats(), 0);
    await timers.advance(1);
    assert.equal(heartbeats(), 1);
    assert.deepEqual(exec.calls[0], { argv: ['nft', '-f', '-'], input: 'flush set inet tproxy_helper ports\nadd element inet tproxy_helper ports { 443 timeout 8s }\n' });
    await timers.advance(8_000);
    assert.equal(heartbeats(), 5, 'at 2, 4, 6, 8 and 10 s');
    assert.equal(verifies(), 2, 'at 5 and 10 s');
    const h = monitor.health();
    assert.deepEqual(h, { ok: true, problems: [], checkedAt: timers.now, heartbeatAt: timers.now });
    await monitor.stop();
  });

  it('reports a deleted table once, keeps running, and reports the recovery', async () => {
    const { kernel, lines, timers, monitor, heartbeats } = setup();
    monitor.start();
    await timers.advance(2_000);
    const okAt = timers.now;
    kernel.tableGone = true;
    await timers.advance(2_000);
    let h = monitor.health();
    assert.equal(h.ok, false);
    assert.deepEqual(h.problems, ['fail-open heartbeat failed (interception stops 8 s after the last success): refreshing nft set inet tproxy_helper ports: Error: No such file or directory']);
    assert.equal(h.heartbeatAt, okAt, 'heartbeatAt stays at the last success');
    await timers.advance(1_000);
    h = monitor.health();
    assert.deepEqual(h.problems, [
      'missing: nft table inet tproxy_helper',
      'fail-open heartbeat failed (interception stops 8 s after the last success): refreshing nft set inet tproxy_helper ports: Error: No such file or directory',
    ]);
    assert.equal(h.checkedAt, timers.now);
    await timers.advance(20_000);
    assert.equal(heartbeats(), 12, 'every 2 s up to 24 s: failures never stop the heartbeat');
    const lost = lines.filter((l) => l.includes('interception lost'));
    assert.equal(lost.length, 2, `logged once per change of the problem list:\n${lines.join('\n')}`);
    assert.ok(lost.every((l) => l.startsWith('error test: ')));

    kernel.tableGone = false;
    await timers.advance(5_000);
    assert.deepEqual(monitor.health().problems, []);
    assert.equal(lines.filter((l) => l.includes('interception restored')).length, 1);
    await monitor.stop();
  });

  it('stop() clears its timers and waits for a heartbeat in flight', async () => {
    const { exec, timers, monitor } = setup();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const run = exec.run.bind(exec);
    exec.run = async (file, args, options) => {
      await gate;
      return run(file, args, options);
    };
    monitor.start();
    await timers.advance(2_000);
    let stopped = false;
    const stopping = monitor.stop().then(() => (stopped = true));
    await settle();
    assert.equal(stopped, false, 'waits for the running heartbeat');
    release();
    await stopping;
    assert.equal(timers.pending.size, 0, 'no timer left, none rescheduled');
    const before = exec.calls.length;
    await timers.advance(60_000);
    assert.equal(exec.calls.length, before);
  });
});
