/**
 * CLI around upstream-app.ts, run inside the upstream namespace:
 *
 *   node --import tsx test/e2e/lib/upstream-server.ts --cert good.pem --key good-key.pem \
 *     --host 198.18.0.2 --host fd00:198:18::2 [--port 443]
 *
 * Prints one "listening <host:port> ..." line once every listener is up, then one line per request
 * (stdout) so a failing test can show what the origin saw. Exits 0 on SIGTERM/SIGINT after closing
 * its listeners or when orphaned, 2 on bad arguments, 1 if it cannot listen. It owns process
 * lifetime only.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { startUpstreamServer } from './upstream-app.js';
import { serveUntilStopped } from './serve-until-stopped.js';

function usage(message: string): never {
  console.error(`upstream-server: ${message}\nusage: upstream-server --cert FILE --key FILE --host ADDR [--host ADDR ...] [--port N]`);
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
      /** `none` for an origin without ALPN; otherwise a comma-separated list (default http/1.1). */
      alpn: { type: 'string' },
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

try {
  const server = await startUpstreamServer({
    cert: readFileSync(args.cert),
    key: readFileSync(args.key),
    hosts: args.host,
    port,
    log: (line) => console.log(line),
    ...(args.alpn ? { alpn: args.alpn === 'none' ? [] : args.alpn.split(',') } : {}),
  });
  serveUntilStopped(server);
} catch (err) {
  console.error(`upstream-server: ${(err as Error).message}`);
  process.exit(1);
}
