/**
 * The demo's traffic generator, started by the demo inside the client namespace as compiled JS
 * (dist/demo/traffic.js) with `--use-openssl-ca` and a clean environment:
 *
 *   node --use-openssl-ca traffic.js --site 198.18.0.2 --down 198.18.0.4 [--port 443]
 *     [--interval-ms 1500] [--parent-pid PID] [--ca FILE] [--iterations N]
 *
 * Each iteration runs the clients of traffic-clients.ts' plan concurrently (each one bounded),
 * logs one line per client to stdout (the demo sends it to DIR/traffic.log), then pauses. It loops
 * until killed (or N iterations, for tests), never exits because a request failed, and exits 0
 * when its parent is gone (orphan.ts). Exit 2 on bad arguments.
 */
import { readFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { exitWhenOrphaned, parsePid } from './orphan.js';
import { planIteration, runClient, type TrafficTarget } from './traffic-clients.js';

/** Per-client deadline: the slowest client (SSE, ~2 s) finishes well within it. */
const CLIENT_TIMEOUT_MS = 10_000;

function usage(message: string): never {
  process.stderr.write(`demo traffic: ${message}\nusage: traffic.js --site ADDR --down ADDR [--port N] [--interval-ms MS] [--parent-pid PID] [--ca FILE] [--iterations N]\n`);
  process.exit(2);
}

function log(line: string): void {
  process.stdout.write(`${new Date().toISOString()} ${line}\n`);
}

let args;
try {
  args = parseArgs({
    options: {
      site: { type: 'string' },
      down: { type: 'string' },
      port: { type: 'string', default: '443' },
      'down-port': { type: 'string' },
      'interval-ms': { type: 'string', default: '1500' },
      'parent-pid': { type: 'string' },
      ca: { type: 'string' },
      iterations: { type: 'string' },
    },
    strict: true,
  }).values;
} catch (err) {
  usage((err as Error).message);
}
if (!args.site || !args.down) usage('--site and --down are required');
const num = (name: string, raw: string | undefined, min: number): number | undefined => {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) usage(`bad --${name} ${raw}`);
  return n;
};
const port = num('port', args.port, 1) ?? 443;
const downPort = num('down-port', args['down-port'], 1);
const intervalMs = num('interval-ms', args['interval-ms'], 0) ?? 1500;
const iterations = num('iterations', args.iterations, 1);
const parentPid = parsePid(args['parent-pid']);
if (args['parent-pid'] !== undefined && parentPid === undefined) usage(`bad --parent-pid ${args['parent-pid']}`);
if (parentPid !== undefined) exitWhenOrphaned(parentPid);

const target: TrafficTarget = {
  siteAddr: args.site,
  downAddr: args.down,
  port,
  timeoutMs: CLIENT_TIMEOUT_MS,
  ...(downPort !== undefined ? { downPort } : {}),
  ...(args.ca ? { ca: { pem: readFileSync(args.ca, 'utf8'), file: args.ca } } : {}),
};

// A bug in one client must not end the demo's traffic: log it and keep looping.
process.on('uncaughtException', (err) => log(`uncaught: ${err.stack ?? err.message}`));
process.on('unhandledRejection', (err) => log(`unhandled rejection: ${(err as Error)?.stack ?? String(err)}`));

log(`traffic: site ${target.siteAddr}, down ${target.downAddr}, port ${port}, every ${intervalMs} ms`);
for (let i = 0; iterations === undefined || i < iterations; i++) {
  const results = await Promise.all(planIteration(i).map((name) => runClient(name, target)));
  for (const r of results) log(`#${i} ${r.ok ? 'ok  ' : 'FAIL'} ${r.summary} [${r.ms} ms]`);
  if (iterations === undefined || i + 1 < iterations) await delay(intervalMs);
}
