/**
 * The demo site's process, started by the demo inside the upstream namespace as compiled JS
 * (dist/demo/site.js; no tsx at runtime):
 *
 *   node site.js --cert site.pem --key site-key.pem --host 198.18.0.2 --host fd00:198:18::2 \
 *     --port 443 --ready-file DIR/site.ready --parent-pid PID
 *
 * It writes the ready file once every listener is up (the demo polls for it), logs one line per
 * request to stdout (the demo sends that to DIR/site.log), and exits 0 on SIGTERM/SIGINT, when its
 * parent is gone (orphan.ts), 2 on bad arguments, 1 if it cannot listen. Lifetime only; the
 * endpoints are in site-app.ts.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { exitWhenOrphaned, parsePid } from './orphan.js';
import { startSite } from './site-app.js';

function usage(message: string): never {
  process.stderr.write(`demo site: ${message}\nusage: site.js --cert FILE --key FILE --host ADDR [--host ADDR ...] [--port N] [--ready-file FILE] [--parent-pid PID]\n`);
  process.exit(2);
}

let args;
try {
  args = parseArgs({
    options: {
      cert: { type: 'string' },
      key: { type: 'string' },
      host: { type: 'string', multiple: true },
      port: { type: 'string', default: '443' },
      'ready-file': { type: 'string' },
      'parent-pid': { type: 'string' },
    },
    strict: true,
  }).values;
} catch (err) {
  usage((err as Error).message);
}
if (!args.cert || !args.key) usage('--cert and --key are required');
if (!args.host || args.host.length === 0) usage('at least one --host is required');
const port = Number(args.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) usage(`bad --port ${args.port}`);
const parentPid = parsePid(args['parent-pid']);
if (args['parent-pid'] !== undefined && parentPid === undefined) usage(`bad --parent-pid ${args['parent-pid']}`);
if (parentPid !== undefined) exitWhenOrphaned(parentPid);

try {
  const site = await startSite({
    cert: readFileSync(args.cert),
    key: readFileSync(args.key),
    hosts: args.host,
    port,
    log: (line) => process.stdout.write(`${line}\n`),
  });
  const shutdown = () => process.exit(0);
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  process.stdout.write(`listening ${site.addresses.map((a) => (a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`)).join(' ')}\n`);
  if (args['ready-file']) writeFileSync(args['ready-file'], `${process.pid}\n`);
} catch (err) {
  process.stderr.write(`demo site: cannot listen: ${(err as Error).message}\n`);
  process.exit(1);
}
