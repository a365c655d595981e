/**
 * CLI around h2-upstream-app.ts, run inside the upstream namespace:
 *
 *   node --import tsx test/e2e/lib/h2-upstream-server.ts --cert good.pem --key good-key.pem \
 *     --host 198.18.0.5 --host fd00:198:18::5 [--port 443] [--grpc-port 50051]
 *
 * Prints one "listening ..." line once every listener (h2 and gRPC) is up, then one line per
 * request. Exits 0 on SIGTERM/SIGINT or when orphaned, 2 on bad arguments, 1 if it cannot listen.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { H2_GRPC_PORT, startH2UpstreamServer } from './h2-upstream-app.js';
import { serveUntilStopped } from './serve-until-stopped.js';

function usage(message: string): never {
  console.error(`h2-upstream-server: ${message}\nusage: h2-upstream-server --cert FILE --key FILE --host ADDR [--host ADDR ...] [--port N] [--grpc-port N]`);
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
      'grpc-port': { type: 'string', default: String(H2_GRPC_PORT) },
    },
    strict: true,
  }).values;
} catch (err) {
  usage((err as Error).message);
}
if (!args.cert || !args.key) usage('--cert and --key are required');
if (!args.host || args.host.length === 0) usage('at least one --host is required');
const port = Number(args.port);
const grpcPort = Number(args['grpc-port']);
for (const [name, p] of [['--port', port], ['--grpc-port', grpcPort]] as const) {
  if (!Number.isInteger(p) || p < 1 || p > 65535) usage(`bad ${name} ${p}`);
}

try {
  const server = await startH2UpstreamServer({
    cert: readFileSync(args.cert),
    key: readFileSync(args.key),
    hosts: args.host,
    port,
    grpcPort,
    log: (line) => console.log(line),
  });
  serveUntilStopped(server);
} catch (err) {
  console.error(`h2-upstream-server: ${(err as Error).message}`);
  process.exit(1);
}
