// Owns the shape of the addon's syscall failures on the TypeScript side: the guard callers use to
// recognise them, and a constructor the fake uses to produce identical ones. The native side
// (src/errors.h) is the source of truth for the shape; this file must not invent new codes.
import { constants } from 'node:os';

/**
 * A failed syscall, as thrown (or rejected) by the addon.
 * Unlike Node's own system errors, `errno` is the positive kernel number (ECONNREFUSED → 111,
 * as in `os.constants.errno`), not libuv's negated one. Match on `code`.
 */
export type ErrnoError = Error & {
  /** errno name, e.g. 'EPERM', 'EADDRINUSE', 'ECONNREFUSED', 'ETIMEDOUT'. */
  code: string;
  /** Positive errno value, e.g. 111 for ECONNREFUSED on Linux. */
  errno: number;
  /** The failing call: 'socket', 'setsockopt', 'bind', 'listen', 'connect', 'getsockopt', ... */
  syscall: string;
};

/** Type guard for the errno-named errors thrown by the addon (and by the fake). */
export function isErrnoError(e: unknown): e is ErrnoError {
  if (!(e instanceof Error)) return false;
  const { code, errno, syscall } = e as Partial<ErrnoError>;
  return typeof code === 'string' && typeof errno === 'number' && typeof syscall === 'string';
}

/**
 * Builds an error shaped and worded like the addon's:
 * "<syscall> <context>: <CODE> (<description>)".
 */
export function errnoError(code: string, syscall: string, context: string, description: string): ErrnoError {
  const errno = (constants.errno as Record<string, number | undefined>)[code] ?? 0;
  const where = context ? `${syscall} ${context}` : syscall;
  return Object.assign(new Error(`${where}: ${code} (${description})`), { code, errno, syscall });
}
