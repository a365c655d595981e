#!/usr/bin/env node
/**
 * tproxy-helper's entry point: parse argv, then run the daemon, or --cleanup, and exit with a code
 * that says what happened. Signals and fatal errors both go through the daemon's shutdown, so
 * interception never outlives the helper.
 */
import { unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { loadNative } from '@tproxy/native';
import { CAPTURE_DEFAULTS } from '@tproxy/protocol';
import { RunManager } from './capture/run.js';
import { CaptureService } from './capture/service.js';
import { ExchangeStore } from './capture/store.js';
import { USAGE, UsageError, parseHelperArgs, type HelperConfig } from './config.js';
import { helperVersion, runDaemon } from './daemon.js';
import { realExec } from './exec.js';
import { createLogger } from './log.js';

async function cleanup(config: HelperConfig): Promise<number> {
  const log = createLogger('helper', config.logLevel);
  const native = loadNative();
  const store = new ExchangeStore();
  const capture = new CaptureService({
    native,
    exec: realExec,
    stateDir: config.stateDir,
    publicDir: dirname(config.socketPath),
    upstreamCaFiles: [],
    store,
    log,
  });
  const removed = await capture.repair();
  // Empty `tproxyctl run` cgroups a killed helper left (one still holding processes is only logged).
  const runs = new RunManager({ capture, store, log: log.child('run'), ...(config.runCgroupParent ? { parent: config.runCgroupParent } : {}) });
  removed.push(...(await runs.adoptLeftovers()).map((path) => `cgroup ${path}`));
  removed.push(...(await capture.removePublicTrust()));
  if (!config.keepSocket) {
    try {
      unlinkSync(config.socketPath);
      removed.push(`socket ${config.socketPath}`);
    } catch {
      // Not there: nothing to remove.
    }
  }
  log.info(removed.length ? `cleanup removed: ${removed.join('; ')}` : `cleanup: nothing of ours was left (table inet tproxy_helper, iptables chains TPROXY_HELPER_*, ipset tproxy_helper_ports, fwmark ${CAPTURE_DEFAULTS.mark})`);
  return 0;
}

async function main(argv: string[]): Promise<number> {
  let config: HelperConfig;
  try {
    config = parseHelperArgs(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`tproxy-helper: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    throw err;
  }
  if (config.mode === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (config.mode === 'version') {
    process.stdout.write(`${helperVersion()}\n`);
    return 0;
  }
  if (config.mode === 'cleanup') return cleanup(config);

  const log = createLogger('helper', config.logLevel);
  let exiting = false;
  const exit = (code: number) => {
    if (exiting) return;
    exiting = true;
    void daemon.shutdown.run().finally(() => process.exit(code));
  };
  const daemon = await runDaemon(config, log, { onIdleExit: () => exit(0) });
  process.on('SIGTERM', () => exit(0));
  process.on('SIGINT', () => exit(0));
  process.on('SIGHUP', () => exit(0));
  process.on('uncaughtException', (err) => {
    log.error(`fatal: ${err.stack ?? err.message}; reverting everything before exit`);
    exit(1);
  });
  process.on('unhandledRejection', (err) => {
    log.error(`fatal: unhandled rejection ${(err as Error)?.stack ?? String(err)}; reverting everything before exit`);
    exit(1);
  });
  return -1; // keep running
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: Error) => {
    process.stderr.write(`tproxy-helper: ${err.message}\n`);
    process.exit(1);
  },
);
