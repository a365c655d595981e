/**
 * The helper's command line, parsed and validated in one pure function so bad input gets a clear
 * message naming the flag before anything touches the host.
 */
import { parseArgs } from 'node:util';
import { DEFAULT_SOCKET_PATH, DEFAULT_STATE_DIR, FirewallChoiceSchema, type FirewallChoice } from '@tproxy/protocol';

export interface HelperConfig {
  mode: 'run' | 'cleanup' | 'help' | 'version';
  socketPath: string;
  stateDir: string;
  /** Non-root uids allowed to use the RPC socket; the first one owns the socket file. */
  allowUids: number[];
  /** Extra trust anchors (PEM files) for the upstream leg: private CAs, tests. */
  upstreamCaFiles: string[];
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  /**
   * `--idle-exit SECONDS`: exit 0 after this long with no capture and no RPC client; 0 disables.
   * Undefined means the default: DEFAULT_IDLE_EXIT_SECONDS when socket-activated, never otherwise.
   */
  idleExitSeconds?: number;
  /** `--cleanup --keep-socket`: leave the socket file (systemd's tproxy-helper.socket owns it). */
  keepSocket: boolean;
  /**
   * `--firewall`: the backend when capture.start leaves it at `auto`: `auto` (nft when it answers,
   * else iptables), `nft`, `iptables`, `iptables-nft` or `iptables-legacy`. Default `auto`.
   */
  firewall: FirewallChoice;
  /** `--config FILE`: the root-only policy file (policy.ts); undefined reads /etc/tproxy/helper.json if it exists. */
  configPath?: string;
  /** `--run-cgroup-parent PATH`: parent of `tproxyctl run` cgroups, relative to the cgroup2 root. */
  runCgroupParent?: string;
}

/** Idle period of a socket-activated helper when --idle-exit is not given. */
export const DEFAULT_IDLE_EXIT_SECONDS = 60;

/** The idle period in ms for this run, or null when the helper should never exit on its own. */
export function idleExitMs(config: Pick<HelperConfig, 'idleExitSeconds'>, activated: boolean): number | null {
  const seconds = config.idleExitSeconds ?? (activated ? DEFAULT_IDLE_EXIT_SECONDS : 0);
  return seconds > 0 ? seconds * 1000 : null;
}

export const USAGE = `Usage: tproxy-helper [options]

Root daemon of tproxy: steers this machine's outbound HTTPS to itself, decrypts and captures it,
and serves JSON-RPC on a Unix socket for tproxyctl and tproxy-ui.

Options:
  --socket PATH        RPC socket (default ${DEFAULT_SOCKET_PATH}, env TPROXY_SOCKET)
  --state-dir DIR      CA and applied-state record (default ${DEFAULT_STATE_DIR})
  --allow-uid UID      also serve this non-root uid (repeatable); the first owns the socket
  --upstream-ca FILE   also trust this PEM CA for upstream servers (repeatable)
  --log-level LEVEL    debug | info | warn | error (default info)
  --firewall BACKEND   auto | nft | iptables | iptables-nft | iptables-legacy (default auto: nft
                       when it answers, else iptables; iptables needs the ipset package)
  --config FILE        who may capture what (root-owned JSON, not group/world-writable; default
                       /etc/tproxy/helper.json when it exists), e.g.
                       {"operators": {"1000": {"captureUids": "any"}}}
  --run-cgroup-parent PATH
                       cgroup (below the cgroup2 root) under which \`tproxyctl run\` creates its
                       run-<n> cgroups (default tproxy)
  --idle-exit SECONDS  exit 0 after SECONDS with no capture and no client; 0 never (default
                       ${DEFAULT_IDLE_EXIT_SECONDS} when socket-activated, never when started by hand)
  --cleanup            remove every rule, route and CA entry a previous run left, then exit
  --keep-socket        with --cleanup: leave the socket file (the unit's ExecStopPost: systemd's
                       tproxy-helper.socket owns it and keeps listening)
  --version            print the version
  -h, --help           this help
`;

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export function parseHelperArgs(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): HelperConfig {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        socket: { type: 'string' },
        'state-dir': { type: 'string' },
        'allow-uid': { type: 'string', multiple: true },
        'upstream-ca': { type: 'string', multiple: true },
        'log-level': { type: 'string' },
        firewall: { type: 'string' },
        'idle-exit': { type: 'string' },
        config: { type: 'string' },
        'run-cgroup-parent': { type: 'string' },
        cleanup: { type: 'boolean' },
        'keep-socket': { type: 'boolean' },
        version: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const allowUids = (values['allow-uid'] ?? []).map((v) => {
    if (!/^\d+$/.test(v) || Number(v) > 0xfffffffe) throw new UsageError(`--allow-uid must be a numeric uid, got ${JSON.stringify(v)}`);
    return Number(v);
  });
  const logLevel = values['log-level'] ?? env.TPROXY_LOG_LEVEL ?? 'info';
  if (!['debug', 'info', 'warn', 'error'].includes(logLevel)) throw new UsageError(`--log-level must be debug, info, warn or error, got ${JSON.stringify(logLevel)}`);
  const socketPath = values.socket ?? env.TPROXY_SOCKET ?? DEFAULT_SOCKET_PATH;
  if (!socketPath.startsWith('/')) throw new UsageError(`--socket must be an absolute path, got ${JSON.stringify(socketPath)}`);
  const stateDir = values['state-dir'] ?? DEFAULT_STATE_DIR;
  if (!stateDir.startsWith('/')) throw new UsageError(`--state-dir must be an absolute path, got ${JSON.stringify(stateDir)}`);
  const idleText = values['idle-exit'];
  if (idleText !== undefined && !/^\d+(\.\d+)?$/.test(idleText)) throw new UsageError(`--idle-exit must be a number of seconds (0 disables), got ${JSON.stringify(idleText)}`);
  if (values['keep-socket'] && !values.cleanup) throw new UsageError('--keep-socket only applies to --cleanup');
  const firewall = FirewallChoiceSchema.safeParse(values.firewall ?? 'auto');
  if (!firewall.success) throw new UsageError(`--firewall must be auto, nft, iptables, iptables-nft or iptables-legacy, got ${JSON.stringify(values.firewall)}`);
  const configPath = values.config;
  if (configPath !== undefined && !configPath.startsWith('/')) throw new UsageError(`--config must be an absolute path, got ${JSON.stringify(configPath)}`);
  const runCgroupParent = values['run-cgroup-parent'];
  if (runCgroupParent !== undefined && !/^[A-Za-z0-9_.@:-]+(\/[A-Za-z0-9_.@:-]+)*$/.test(runCgroupParent)) {
    throw new UsageError(`--run-cgroup-parent must be a relative cgroup path like tproxy or tproxy/runs, got ${JSON.stringify(runCgroupParent)}`);
  }
  if (runCgroupParent?.split('/').some((seg) => seg === '.' || seg === '..')) throw new UsageError('--run-cgroup-parent must not contain "." or ".." segments');
  return {
    keepSocket: values['keep-socket'] === true,
    firewall: firewall.data,
    ...(configPath !== undefined ? { configPath } : {}),
    ...(runCgroupParent !== undefined ? { runCgroupParent } : {}),
    ...(idleText !== undefined ? { idleExitSeconds: Number(idleText) } : {}),
    mode: values.help ? 'help' : values.version ? 'version' : values.cleanup ? 'cleanup' : 'run',
    socketPath,
    stateDir,
    allowUids,
    upstreamCaFiles: values['upstream-ca'] ?? [],
    logLevel: logLevel as HelperConfig['logLevel'],
  };
}
