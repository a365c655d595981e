/**
 * What `tproxyctl install` and `tproxyctl uninstall` do to the host, as data: the systemd unit
 * templates in this checkout's systemd/ rendered into files, plus the commands to run, so
 * `--dry-run` prints exactly the plan that a real run executes. Rendering and planning are pure;
 * `executePlan` takes its file and process operations as parameters. The client never imports
 * helper code: the helper is named by path and run as a process.
 */
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

export const SOCKET_UNIT = 'tproxy-helper.socket';
export const SERVICE_UNIT = 'tproxy-helper.service';
export const DEFAULT_UNIT_DIR = '/etc/systemd/system';

/** The checkout this module belongs to (packages/client/{src,dist}/cli/ → four levels up). */
export const CHECKOUT_DIR = fileURLToPath(new URL('../../../../', import.meta.url)).replace(/\/$/, '');

export function templatePaths(checkout = CHECKOUT_DIR): { socket: string; service: string } {
  return { socket: join(checkout, 'systemd', `${SOCKET_UNIT}.in`), service: join(checkout, 'systemd', `${SERVICE_UNIT}.in`) };
}

/** The helper bin of an install prefix (a checkout or an npm install dir). */
export function helperBin(prefix: string): string {
  return join(prefix, 'node_modules', '.bin', 'tproxy-helper');
}

export interface UnitParams {
  /** Absolute path of node (process.execPath): node need not be on systemd's PATH. */
  node: string;
  /** Absolute path of the tproxy-helper bin. */
  helper: string;
  /** SocketUser=: the operator's uid, or undefined for root. Also passed as --allow-uid. */
  uid?: number;
}

export interface RenderedUnits {
  socket: string;
  service: string;
}

/**
 * Characters systemd takes literally in ExecStart= and that need no quoting: anything else
 * (whitespace, quotes, `%` specifiers, `$` variables, `;`, backslashes) is refused, not escaped.
 */
const SAFE_PATH = /^\/[A-Za-z0-9._/+@-]*$/;

/** Paths ProtectHome=yes hides: a checkout or node there needs ProtectHome=read-only instead. */
const HOME_DIRS = ['/home/', '/root/', '/run/user/'];

function checkPath(what: string, path: string): string {
  if (!SAFE_PATH.test(path)) {
    throw new Error(`${what} path ${JSON.stringify(path)} must be absolute and use only letters, digits and ._/+@- to be written into a systemd unit`);
  }
  return path;
}

/**
 * Fills the @NAME@ placeholders of the two templates and drops their `#@` template-only comment
 * lines. Throws on a placeholder it does not know, so a template and this code cannot drift apart.
 */
export function renderUnits(templates: RenderedUnits, params: UnitParams): RenderedUnits {
  const node = checkPath('node', params.node);
  const helper = checkPath('tproxy-helper', params.helper);
  if (params.uid !== undefined && !(Number.isSafeInteger(params.uid) && params.uid >= 0 && params.uid <= 0xfffffffe)) {
    throw new Error(`invalid uid ${params.uid}`);
  }
  const nonRoot = params.uid !== undefined && params.uid !== 0;
  const values: Record<string, string> = {
    NODE: node,
    HELPER: helper,
    HELPER_FLAGS: nonRoot ? ` --allow-uid ${params.uid}` : '',
    SOCKET_USER: nonRoot ? String(params.uid) : 'root',
    PROTECT_HOME: [node, helper].some((p) => HOME_DIRS.some((d) => p.startsWith(d))) ? 'read-only' : 'yes',
  };
  const fill = (name: string, text: string) =>
    text
      .split('\n')
      .filter((line) => !line.startsWith('#@'))
      .join('\n')
      .replace(/@([A-Z_]+)@/g, (whole, key: string) => {
      const value = values[key];
      if (value === undefined) throw new Error(`${name} template: unknown placeholder ${whole}`);
      return value;
    });
  return { socket: fill(SOCKET_UNIT, templates.socket), service: fill(SERVICE_UNIT, templates.service) };
}

/** One host change, in the order it runs; `--dry-run` prints these and nothing else. */
export type Step =
  | { kind: 'write'; path: string; mode: number; content: string }
  | { kind: 'remove'; path: string }
  /** `tolerate`: a failure is reported but does not stop the plan (uninstall's stop/disable). */
  | { kind: 'run'; argv: string[]; tolerate?: boolean };

export function planInstall(unitDir: string, units: RenderedUnits): Step[] {
  return [
    { kind: 'write', path: join(unitDir, SOCKET_UNIT), mode: 0o644, content: units.socket },
    { kind: 'write', path: join(unitDir, SERVICE_UNIT), mode: 0o644, content: units.service },
    { kind: 'run', argv: ['systemctl', 'daemon-reload'] },
    { kind: 'run', argv: ['systemctl', 'enable', '--now', SOCKET_UNIT] },
  ];
}

export function planUninstall(unitDir: string, node: string, helper: string): Step[] {
  return [
    // Stopping the service runs its ExecStopPost cleanup; stopping the socket removes the socket file.
    { kind: 'run', argv: ['systemctl', 'disable', '--now', SOCKET_UNIT, SERVICE_UNIT], tolerate: true },
    { kind: 'remove', path: join(unitDir, SOCKET_UNIT) },
    { kind: 'remove', path: join(unitDir, SERVICE_UNIT) },
    { kind: 'run', argv: ['systemctl', 'daemon-reload'] },
    // Belt and braces: whatever a helper that died without its ExecStopPost left behind.
    { kind: 'run', argv: [node, helper, '--cleanup'] },
  ];
}

/** POSIX-shell quoting, for showing commands. */
export function shellQuote(argv: readonly string[]): string {
  return argv.map((a) => (/^[A-Za-z0-9._/+@=:,-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** The plan as `--dry-run` prints it: every file with its full content and every command, in order. */
export function formatPlan(steps: readonly Step[]): string {
  return steps
    .map((step) => {
      switch (step.kind) {
        case 'write': {
          const lines = step.content.endsWith('\n') ? step.content.slice(0, -1).split('\n') : step.content.split('\n');
          return `would write ${step.path} (mode ${step.mode.toString(8).padStart(4, '0')}):\n${lines.map((l) => `  | ${l}\n`).join('')}`;
        }
        case 'remove':
          return `would remove ${step.path}\n`;
        case 'run':
          return `would run: ${shellQuote(step.argv)}${step.tolerate ? '  (a failure is ignored)' : ''}\n`;
      }
    })
    .join('');
}

export interface PlanOps {
  writeFile(path: string, content: string, mode: number): Promise<void>;
  /** Removes a file; a missing file is not an error. */
  remove(path: string): Promise<void>;
  /** Runs argv with inherited output; resolves with the exit code. */
  run(argv: readonly string[]): Promise<number>;
  /** Progress lines. */
  say(text: string): void;
}

/** Executes the steps in order; throws on the first failure that is not tolerated. */
export async function executePlan(steps: readonly Step[], ops: PlanOps): Promise<void> {
  for (const step of steps) {
    if (step.kind === 'write') {
      await ops.writeFile(step.path, step.content, step.mode);
      ops.say(`wrote ${step.path}\n`);
    } else if (step.kind === 'remove') {
      await ops.remove(step.path);
      ops.say(`removed ${step.path}\n`);
    } else {
      const shown = shellQuote(step.argv);
      ops.say(`running: ${shown}\n`);
      const code = await ops.run(step.argv);
      if (code === 0) continue;
      if (!step.tolerate) throw new Error(`${shown} exited with status ${code}`);
      ops.say(`(ignored: ${shown} exited with status ${code})\n`);
    }
  }
}
