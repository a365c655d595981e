/**
 * `tproxyctl uninstall`: undo `tproxyctl install`. Stops and disables the socket and the service
 * (the service's ExecStopPost reverts capture), removes the unit files, reloads systemd, then runs
 * `tproxy-helper --cleanup` in case a helper died without its ExecStopPost. When the unit files
 * are not there it says so and changes nothing. `--dry-run` prints the steps and changes nothing.
 */
import { access } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { boolFlag, expectPositionals, stringFlag, type Command } from '../command.js';
import { jsonLine } from '../output.js';
import { hostOps, requireRoot } from '../service-host.js';
import { CHECKOUT_DIR, DEFAULT_UNIT_DIR, SERVICE_UNIT, SOCKET_UNIT, executePlan, formatPlan, helperBin, planUninstall } from '../service-units.js';

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

export const uninstallCommand: Command = {
  name: 'uninstall',
  summary: 'Stop and remove the tproxy-helper systemd service (root)',
  usage: `Usage: tproxyctl uninstall [--dry-run] [--json]

Stop and disable ${SOCKET_UNIT} and ${SERVICE_UNIT}, remove them from ${DEFAULT_UNIT_DIR},
run 'systemctl daemon-reload', then 'tproxy-helper --cleanup' to revert any rule, route or CA
entry left behind. Needs root, except with --dry-run.

  --dry-run   Print the commands and files it would remove; change nothing
  --json      Print {"steps": [...]} instead of text`,
  flags: { 'dry-run': { type: 'boolean' }, 'unit-dir': { type: 'string' }, prefix: { type: 'string' } },
  async run(ctx, args) {
    expectPositionals(args, 0, 0, '');
    const dryRun = boolFlag(args, 'dry-run');
    if (!dryRun) requireRoot('uninstall');
    const unitDir = resolve(stringFlag(args, 'unit-dir') ?? DEFAULT_UNIT_DIR);
    const installed = (await exists(join(unitDir, SOCKET_UNIT))) || (await exists(join(unitDir, SERVICE_UNIT)));
    if (!installed) {
      ctx.print(ctx.json ? jsonLine({ dryRun, installed: false, steps: [] }) : `tproxy-helper is not installed in ${unitDir}; nothing to do\n`);
      return 0;
    }
    const steps = planUninstall(unitDir, process.execPath, helperBin(resolve(stringFlag(args, 'prefix') ?? CHECKOUT_DIR)));
    if (dryRun) {
      ctx.print(ctx.json ? jsonLine({ dryRun: true, installed: true, steps }) : formatPlan(steps));
      return 0;
    }
    await executePlan(steps, hostOps(ctx));
    ctx.print(ctx.json ? jsonLine({ dryRun: false, installed: true, steps }) : 'uninstalled: the units are removed and nothing of tproxy-helper is left running\n');
    return 0;
  },
};
