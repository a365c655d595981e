/**
 * `tproxyctl env`: the environment that makes runtimes with their own CA stores (Node, Python
 * requests, curl and git built against another bundle, anything reading SSL_CERT_FILE) trust the
 * helper's CA, as shell exports for `eval "$(tproxyctl env)"`, or with `--json` the bare object.
 * The helper names the files (ca.get `env`); this command only prints them, quoted for the shell.
 */
import { methods } from '@tproxy/protocol';
import { expectPositionals, type Command } from '../command.js';
import { formatEnvExports, jsonLine } from '../output.js';

export const envCommand: Command = {
  name: 'env',
  summary: 'Print shell exports that make Node, Python, curl and git trust the CA',
  usage: `Usage: tproxyctl env [--json]

Print export lines naming the helper's world-readable CA files, for runtimes that keep their own
trust store instead of the OS one:

  SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, GIT_SSL_CAINFO
      the system roots plus the tproxy CA (these variables replace a runtime's roots)
  NODE_EXTRA_CA_CERTS
      the tproxy CA alone (Node adds it to its built-in roots)

Use it as:  eval "$(tproxyctl env)"

  --json   Print the variables as one JSON object`,
  flags: {},
  async run(ctx, args) {
    expectPositionals(args, 0, 0, '');
    const client = await ctx.connect();
    const ca = await client.call(methods.caGet, {});
    ctx.print(ctx.json ? jsonLine(ca.env) : formatEnvExports(ca.env));
    return 0;
  },
};
