/**
 * systemd socket activation, as sd_listen_fds(3) and go-systemd's activation.Files define it:
 * fds start at 3, LISTEN_PID must be our pid (otherwise the variables were meant for a parent),
 * and the variables are removed so children do not inherit them.
 */
export const SD_LISTEN_FDS_START = 3;

/** The activated fds, or [] when the helper was started by hand. */
export function listenFds(env: NodeJS.ProcessEnv = process.env, pid = process.pid): number[] {
  const count = Number(env.LISTEN_FDS);
  const ok = env.LISTEN_PID !== undefined && Number(env.LISTEN_PID) === pid && Number.isInteger(count) && count > 0;
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  if (!ok) return [];
  return Array.from({ length: count }, (_, i) => SD_LISTEN_FDS_START + i);
}
