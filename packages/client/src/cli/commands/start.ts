/**
 * `tproxyctl start`: check that capture is stopped and available, then `capture.start` with only
 * the flags given (the helper fills in defaults and validates ranges, naming the bad field), and
 * print the resulting status. Flags map one-to-one onto CaptureStartParams.
 */
import { CAPTURE_DEFAULTS, FirewallChoiceSchema, methods, type CaptureStartParams } from '@tproxy/protocol';
import { UsageError, boolFlag, expectPositionals, parseInteger, stringFlag, stringsFlag, type Args, type Command } from '../command.js';
import { escapeInline, formatHex, formatStatus, jsonLine } from '../output.js';

/** Flag name → CaptureStartParams field, for the numeric flags. */
const NUMERIC_FLAGS = [
  ['listen-port', 'listenPort'],
  ['mark', 'mark'],
  ['bypass-mark', 'bypassMark'],
  ['mark-mask', 'markMask'],
  ['table', 'routeTable'],
  ['body-limit', 'bodyCaptureLimit'],
] as const;

/** Builds capture.start params from the command line; exported for tests. */
export function startParams(args: Args): CaptureStartParams {
  const params: CaptureStartParams = {};
  const ports = stringsFlag(args, 'port').flatMap((p) => p.split(',').filter((s) => s !== '').map((s) => parseInteger('port', s)));
  if (ports.length) params.ports = ports;
  if (boolFlag(args, 'no-ipv6')) params.ipv6 = false;
  for (const [flag, field] of NUMERIC_FLAGS) {
    const text = stringFlag(args, flag);
    if (text !== undefined) params[field] = parseInteger(flag, text);
  }
  const uids = stringsFlag(args, 'uid').flatMap((u) => u.split(',').filter((s) => s !== '').map((s) => parseInteger('uid', s)));
  const cgroup = stringFlag(args, 'cgroup');
  if (uids.length > 0 || cgroup !== undefined) params.scope = { ...(uids.length > 0 ? { uids } : {}), ...(cgroup !== undefined ? { cgroup } : {}) };
  const firewall = stringFlag(args, 'firewall');
  if (firewall !== undefined) {
    const parsed = FirewallChoiceSchema.safeParse(firewall);
    if (!parsed.success) throw new UsageError(`--firewall must be auto, nft, iptables, iptables-nft or iptables-legacy, got ${JSON.stringify(firewall)}`);
    params.firewall = parsed.data;
  }
  return params;
}

const d = CAPTURE_DEFAULTS;

export const startCommand: Command = {
  name: 'start',
  summary: 'Start capturing: install the CA, apply the rules, open the listeners',
  usage: `Usage: tproxyctl start [options]

Install the CA into the OS trust store, apply the steering rules and routes, and start intercepting
outbound HTTPS. Fails if capture is already running. Prints the resulting status.

  --port N            Destination port to intercept; repeat or comma-separate (default ${d.ports.join(',')})
  --no-ipv6           Do not intercept IPv6 destinations
  --listen-port N     Port of the transparent listeners (default ${d.listenPort})
  --mark N            fwmark of intercepted packets (default ${formatHex(d.mark)})
  --bypass-mark N     SO_MARK of the helper's own upstream sockets (default ${formatHex(d.bypassMark)})
  --mark-mask N       fwmark bits tproxy may use; marks must lie within it (default ${formatHex(d.markMask)})
  --table N           Policy-routing table id (default ${d.routeTable})
  --body-limit BYTES  Bytes of each body kept in the capture (default ${d.bodyCaptureLimit})
  --uid UID           Only connections of this uid; repeat or comma-separate (a non-root operator
                      gets its own uid unless the helper's config grants more)
  --cgroup PATH       Only connections of processes in this cgroup v2 subtree, relative to the
                      cgroup2 root (e.g. system.slice/nginx.service)
  --firewall KIND     auto, nft, iptables, iptables-nft or iptables-legacy (default: the helper's
                      --firewall, auto: nft when it answers, else iptables with ipset)
  --json              Print the resulting capture.status as JSON

Numbers are decimal or 0x-prefixed hex; the helper checks their ranges.`,
  flags: {
    port: { type: 'string', multiple: true },
    'no-ipv6': { type: 'boolean' },
    'listen-port': { type: 'string' },
    mark: { type: 'string' },
    'bypass-mark': { type: 'string' },
    'mark-mask': { type: 'string' },
    table: { type: 'string' },
    'body-limit': { type: 'string' },
    uid: { type: 'string', multiple: true },
    cgroup: { type: 'string' },
    firewall: { type: 'string' },
  },
  async run(ctx, args) {
    expectPositionals(args, 0, 0, '');
    const params = startParams(args);
    const client = await ctx.connect();
    const before = await client.call(methods.captureStatus, {});
    if (before.running) throw new Error('capture already running; stop it first with `tproxyctl stop`');
    if (!before.available) throw new Error(`capture unavailable: ${escapeInline(before.reason ?? 'no reason given')}`);
    const status = await client.call(methods.captureStart, params);
    ctx.print(ctx.json ? jsonLine(status) : `capture started\n${formatStatus(status)}`);
    return 0;
  },
};
