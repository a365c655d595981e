#!/usr/bin/env node
/**
 * tproxy-ui's entry point: parse the command line, start the demo helper for `--demo`, switch to
 * the terminal's alternate screen, render the dashboard, and put the terminal back on every way
 * out (q, Ctrl-C, SIGTERM/SIGHUP, a crash). Ctrl-C is handled by the app (exitOnCtrlC: false) so
 * cleanup runs; TerminalScreen's 'exit' hook is the last resort that restores the terminal
 * synchronously.
 */
import { readFileSync } from 'node:fs';
import { inspect } from 'node:util';
import { USAGE, parseUiArgs } from './args.js';
import { TerminalScreen } from './terminal-screen.js';

// React picks its build when first loaded, from NODE_ENV. The development build (the default when
// NODE_ENV is unset) records a performance measure per component per render, which at hundreds of
// exchanges a second costs most of a CPU; so React, Ink and the app are imported only after this
// line (no JSX in this file: its runtime import would be hoisted above it).
process.env.NODE_ENV ??= 'production';

/** Most log lines (demo, console) kept for after the dashboard closes: it owns the terminal while it runs. */
const LOG_KEEP = 50;

function packageVersion(): string {
  try {
    // src/ui/main.tsx and dist/ui/main.js are both two levels below package.json.
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'dev';
  }
}

async function main(): Promise<number> {
  const args = parseUiArgs(process.argv.slice(2), process.env);
  if ('error' in args) {
    process.stderr.write(`tproxy-ui: ${args.error}\nRun 'tproxy-ui --help' for usage.\n`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(USAGE);
    return 0;
  }

  let socketPath = args.socketPath;
  let demo: { stop(): Promise<void> } | undefined;
  let rendering = false;
  const laterLog: string[] = [];
  const keep = (line: string) => {
    if (laterLog.push(line) > LOG_KEEP) laterLog.shift();
  };
  if (args.demo) {
    // Loaded only for --demo: it brings network namespaces and child processes with it.
    const demoModule = await import('../demo/index.js');
    await demoModule.ensureDemoSandbox();
    try {
      const session = await demoModule.startDemo({
        log: (line) => {
          if (rendering) keep(line);
          else process.stderr.write(`${line}\n`);
        },
      });
      demo = session;
      socketPath = session.socketPath;
    } catch (err) {
      process.stderr.write(`tproxy-ui --demo: ${(err as Error).message}\n`);
      return 1;
    }
  }

  // On a terminal we paint the alternate screen ourselves (terminal-screen.ts says why); Ink renders
  // whole frames into it. Anything else (a pipe, a file) gets Ink's plain output.
  const screen = process.stdout.isTTY ? new TerminalScreen(process.stdout) : undefined;
  const restoreConsole = quietConsole(keep);
  let stopping: Promise<void> | undefined;
  const [{ createElement }, { render }, { App }] = await Promise.all([import('react'), import('ink'), import('./App.js')]);
  try {
    screen?.start();
    const props = { socketPath, deps: { version: packageVersion() } };
    const app = render(
      createElement(App, props),
      {
        ...(screen ? { stdout: screen as unknown as NodeJS.WriteStream, debug: true } : {}),
        exitOnCtrlC: false,
        patchConsole: false,
      },
    );
    rendering = true;
    const onSignal = () => app.unmount();
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, onSignal);
    await app.waitUntilExit();
    rendering = false;
  } finally {
    screen?.restore();
    restoreConsole();
    stopping = demo?.stop().catch((err: Error) => {
      process.stderr.write(`tproxy-ui --demo: cleanup: ${err.message}\n`);
    });
  }
  await stopping;
  if (laterLog.length > 0) process.stderr.write(`${laterLog.join('\n')}\n`);
  return 0;
}

/** console.* would scribble over the dashboard: keep the lines for after it closes. */
function quietConsole(keep: (line: string) => void): () => void {
  const saved = { log: console.log, info: console.info, warn: console.warn, error: console.error, debug: console.debug };
  const sink = (...args: unknown[]) => keep(args.map((a) => (typeof a === 'string' ? a : inspect(a))).join(' '));
  Object.assign(console, { log: sink, info: sink, warn: sink, error: sink, debug: sink });
  return () => Object.assign(console, saved);
}

// Exit explicitly: stdin was in raw mode and timers of a half-closed connection must not keep us alive.
process.exit(await main());
