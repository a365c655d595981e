/**
 * `tproxyctl ca`: the CA that signs the leaf certificates intercepted programs see: subject,
 * SHA-256 fingerprint, expiry and trust-store state, or with `--pem` only the certificate, for
 * piping into another trust store (`tproxyctl ca --pem > tproxy.crt`).
 */
import { methods } from '@tproxy/protocol';
import { UsageError, boolFlag, expectPositionals, type Command } from '../command.js';
import { formatCa, formatPem, jsonLine } from '../output.js';

export const caCommand: Command = {
  name: 'ca',
  summary: 'Show the CA certificate, its fingerprint and trust-store state',
  usage: `Usage: tproxyctl ca [--pem | --json]

Show the CA certificate's subject, SHA-256 fingerprint, expiry, and whether (and where) it is
installed in the OS trust store. The private key never leaves the helper.

  --pem    Print only the certificate, PEM-encoded
  --json   Print the raw ca.get result`,
  flags: { pem: { type: 'boolean' } },
  async run(ctx, args) {
    expectPositionals(args, 0, 0, '');
    const pem = boolFlag(args, 'pem');
    if (pem && ctx.json) throw new UsageError('--pem and --json cannot be combined');
    const client = await ctx.connect();
    const ca = await client.call(methods.caGet, {});
    ctx.print(pem ? formatPem(ca.pem) : ctx.json ? jsonLine(ca) : formatCa(ca));
    return 0;
  },
};
