/** tproxy-ui's command line: `[--socket PATH] [--demo] [--help]`, plus $TPROXY_SOCKET. Pure. */
import { parseArgs } from 'node:util';
import { resolveSocketPath } from '../rpc/client.js';

export interface UiArgs {
  readonly socketPath: string;
  readonly demo: boolean;
  readonly help: boolean;
}

export const USAGE = `tproxy-ui: live terminal dashboard for tproxy-helper

Usage: tproxy-ui [--socket PATH] [--demo]

  --socket PATH   Helper socket (default: $TPROXY_SOCKET, else /run/tproxy/helper.sock)
  --demo          Start a built-in demo helper with generated traffic and connect to it
  -h, --help      Show this help

Keys: s start/stop capture, o capture options, / filter, Enter details, y copy as curl,
e export HAR, c clear, f follow, ? all keys, q quit.
`;

export function parseUiArgs(argv: readonly string[], env: NodeJS.ProcessEnv): UiArgs | { error: string } {
  try {
    const { values } = parseArgs({
      args: [...argv],
      options: { socket: { type: 'string' }, demo: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    });
    return { socketPath: resolveSocketPath(values.socket, env), demo: values.demo === true, help: values.help === true };
  } catch (err) {
    return { error: (err as Error).message.split('\n')[0]! };
  }
}
