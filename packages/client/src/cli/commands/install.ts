/**
 * `tproxyctl install`: install tproxy-helper as a socket-activated systemd service. Renders the
 * unit templates of this checkout (systemd/*.in) with node's absolute path and the helper bin of
 * --prefix, writes them to /etc/systemd/system, reloads systemd and enables the socket. Unlike the
 * other commands this one does not talk to the helper: it sets up the thing that starts it.
 * `--dry-run` prints every file (with its content) and every command, and changes nothing.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { boolFlag, expectPositionals, stringFlag, type Command } from '../command.js';
import { jsonLine } from '../output.js';
import { hostOps, requireRoot, resolveUid } from '../service-host.js';
import { CHECKOUT_DIR, DEFAULT_UNIT_DIR, SOCKET_UNIT, executePlan, formatPlan, helperBin, planInstall, renderUnits, templatePaths } from '../service-units.js';

export const installCommand: Command = {
  name: 'install',
  summary: 'Install tproxy-helper as a socket-activated systemd service (root)',
  usage: `Usage: tproxyctl install [--user NAME] [--prefix DIR] [--dry-run] [--json]

Write tproxy-helper.socket and tproxy-helper.service to ${DEFAULT_UNIT_DIR}, run
'systemctl daemon-reload' and 'systemctl enable --now ${SOCKET_UNIT}'. systemd then holds the socket
and starts the helper on the first connection; the helper exits after 60 s idle (no capture, no
client) and is started again on the next one. Needs root, except with --dry-run.

  --user NAME    Let this user (name or uid) use the socket without root (SocketUser=, --allow-uid)
  --prefix DIR   Where tproxy is installed: runs DIR/node_modules/.bin/tproxy-helper
                 (default: this checkout, ${CHECKOUT_DIR})
  --dry-run      Print the files (with contents) and commands it would run; change nothing
  --json         Print {"steps": [...]} instead of text`,
  flags: { user: { type: 'string' }, prefix: { type: 'string' }, 'dry-run': { type: 'boolean' }, 'unit-dir': { type: 'string' } },
  async run(ctx, args) {
    expectPositionals(args, 0, 0, '');
    const dryRun = boolFlag(args, 'dry-run');
    if (!dryRun) requireRoot('install');
    const user = stringFlag(args, 'user');
    const uid = user === undefined ? undefined : await resolveUid(user);
    const helper = helperBin(resolve(stringFlag(args, 'prefix') ?? CHECKOUT_DIR));
    const paths = templatePaths();
    const units = renderUnits({ socket: await readFile(paths.socket, 'utf8'), service: await readFile(paths.service, 'utf8') }, {
      node: process.execPath,
      helper,
      ...(uid !== undefined ? { uid } : {}),
    });
    // --unit-dir (hidden, for tests) writes somewhere other than systemd's directory.
    const steps = planInstall(resolve(stringFlag(args, 'unit-dir') ?? DEFAULT_UNIT_DIR), units);
    if (dryRun) {
      ctx.print(ctx.json ? jsonLine({ dryRun: true, steps }) : formatPlan(steps));
      return 0;
    }
    await executePlan(steps, hostOps(ctx));
    ctx.print(
      ctx.json
        ? jsonLine({ dryRun: false, steps })
        : `installed: ${SOCKET_UNIT} is enabled; the helper starts on the first connection${uid !== undefined && uid !== 0 ? ` (uid ${uid} may connect without root)` : ''}\n`,
    );
    return 0;
  },
};
