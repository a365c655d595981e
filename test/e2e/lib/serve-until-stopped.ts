/**
 * The tail of every test-origin entry point (upstream-server.ts, h2-upstream-server.ts): announce
 * the listeners, close and exit 0 on SIGTERM/SIGINT, and leave when orphaned.
 */

export interface StoppableServer {
  listening: readonly string[];
  close(): Promise<void>;
}

export function serveUntilStopped(server: StoppableServer): void {
  console.log(`listening ${server.listening.join(' ')}`);
  const stop = (signal: NodeJS.Signals) => {
    console.log(`${signal}: closing`);
    server.close().then(
      () => process.exit(0),
      (err: Error) => {
        console.error(`close failed: ${err.message}`);
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  // Orphaned (the harness was SIGKILLed before it could stop us): nobody will ever stop us, and we
  // would pin the namespace, so leave. There is no PR_SET_PDEATHSIG in Node; poll instead.
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) {
      console.log(`parent ${parent} is gone: exiting`);
      process.exit(0);
    }
  }, 1000).unref();
}
