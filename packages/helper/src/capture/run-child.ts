/**
 * `capture.run` moves a process into a cgroup the helper owns, so it must be sure the caller may
 * name that process: it has to be a direct child of the very process on the other end of the RPC
 * socket (SO_PEERCRED pid, from the kernel) and, for a non-root caller, run entirely as the
 * caller's uid. Otherwise an operator could pull someone else's process into a captured cgroup.
 * The /proc/PID/status parser is pure; the check reads under an injectable procRoot for tests.
 */
import { readFile } from 'node:fs/promises';
import { ErrorCode, RpcError } from '@tproxy/protocol';

/** The fields of /proc/PID/status (proc(5)) the check needs. */
export interface ProcStatus {
  readonly pid: number;
  readonly ppid: number;
  /** Real, effective, saved set and filesystem uid. */
  readonly uids: readonly [number, number, number, number];
}

/** Parses /proc/PID/status; null when a needed field is missing or malformed. */
export function parseProcStatus(text: string): ProcStatus | null {
  const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(text)?.[1]?.trim();
  const pid = Number(field('Pid'));
  const ppid = Number(field('PPid'));
  const uids = (field('Uid') ?? '').split(/\s+/).map(Number);
  if (!Number.isInteger(pid) || !Number.isInteger(ppid) || uids.length !== 4 || uids.some((u) => !Number.isInteger(u))) return null;
  return { pid, ppid, uids: uids as unknown as ProcStatus['uids'] };
}

/** The caller, from SO_PEERCRED. */
export interface Caller {
  readonly pid: number;
  readonly uid: number;
}

/** Pure decision: null when `status` may be moved on behalf of `caller`, else the reason. */
export function runChildProblem(status: ProcStatus, caller: Caller): string | null {
  if (status.ppid !== caller.pid) {
    return `process ${status.pid} is not a child of the calling process ${caller.pid} (its parent is ${status.ppid}); capture.run scopes only a process its caller started`;
  }
  if (caller.uid !== 0 && status.uids.some((u) => u !== caller.uid)) {
    return `process ${status.pid} does not run as uid ${caller.uid} (uids ${status.uids.join(' ')}); capture.run scopes only the caller's own processes`;
  }
  return null;
}

/** Reads /proc/PID/status and throws ScopeNotAllowed unless `pid` is the caller's own child. */
export async function checkRunChild(pid: number, caller: Caller, procRoot = '/proc'): Promise<ProcStatus> {
  let text: string;
  try {
    text = await readFile(`${procRoot}/${pid}/status`, 'utf8');
  } catch {
    throw new RpcError(ErrorCode.ScopeNotAllowed, `process ${pid} does not exist (or is not visible to the helper: the caller and the helper must share a pid namespace)`);
  }
  const status = parseProcStatus(text);
  if (!status) throw new RpcError(ErrorCode.ScopeNotAllowed, `cannot parse ${procRoot}/${pid}/status`);
  const problem = runChildProblem(status, caller);
  if (problem) throw new RpcError(ErrorCode.ScopeNotAllowed, problem);
  return status;
}

/** The cgroup v2 path of `pid` (the `0::` line of /proc/PID/cgroup), without the leading slash; null if none. */
export function parseProcCgroup(text: string): string | null {
  const line = text.split('\n').find((l) => l.startsWith('0::'));
  return line === undefined ? null : line.slice(3).trim().replace(/^\//, '');
}
