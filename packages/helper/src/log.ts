/**
 * Leveled logger writing plain lines to stderr, which journald captures under the unit. Each line
 * is `level component: message`; no timestamps, journald adds them.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
  child(component: string): Logger;
}

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export function createLogger(component = 'helper', min: LogLevel = (process.env.TPROXY_LOG_LEVEL as LogLevel) || 'info', sink: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Logger {
  const threshold = ORDER[min] ?? ORDER.info;
  const at = (level: LogLevel) => (msg: string) => {
    if (ORDER[level] >= threshold) sink(`${level} ${component}: ${msg}`);
  };
  return {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (sub) => createLogger(`${component}/${sub}`, min, sink),
  };
}

/** A logger that drops everything, for tests. */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => silentLogger };
