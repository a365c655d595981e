/**
 * Resolves a cgroup v2 path (relative to the cgroup2 root, as /proc/PID/cgroup shows it after
 * `0::`) into what the steering plan needs: its depth below the root (nft `socket cgroupv2 level`)
 * and the path nft resolves. nft 1.0.6 looks cgroup paths up relative to /sys/fs/cgroup, so where
 * cgroup2 is mounted decides the nft path:
 *   - pure v2 host, cgroup2 on /sys/fs/cgroup              → `<path>`
 *   - hybrid host, cgroup2 on /sys/fs/cgroup/unified       → `unified/<path>`
 *   - cgroup2 somewhere outside /sys/fs/cgroup, or absent  → ScopeUnavailable (nft cannot name it)
 * The mountinfo parser and the mount choice are pure; `resolveCgroup` reads /proc/self/mountinfo
 * and checks the directory exists, both under an injectable `fsRoot` so tests use a fake tree.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCode, RpcError, type CaptureScope } from '@tproxy/protocol';
import type { SteeringScope } from '../firewall/plan.js';

/** Where nft 1.0.6 resolves `socket cgroupv2` paths (src/datatype.c, cgroupv2_get_path). */
export const NFT_CGROUP_BASE = '/sys/fs/cgroup';

/** One line of /proc/PID/mountinfo (proc(5)), the fields this module uses. */
export interface MountEntry {
  /** Root of the mount within its filesystem: `/` unless a subtree was bind-mounted. */
  readonly root: string;
  /** Where it is mounted, absolute. */
  readonly mountPoint: string;
  readonly fsType: string;
}

/** The kernel escapes space, tab, newline and backslash in mountinfo paths as `\ooo` octal. */
function unescapeOctal(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}

/**
 * Parses /proc/PID/mountinfo: `id parent maj:min root mountpoint options [optional...] - fstype source superopts`.
 * The optional fields vary in number, so the filesystem type is found after the ` - ` separator.
 * Lines that do not have that shape are skipped (the format is the kernel's; a bad line is not ours to fail on).
 */
export function parseMountinfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.trim().split(' ');
    const sep = fields.indexOf('-');
    if (fields.length < 7 || sep < 6 || sep + 1 >= fields.length) continue;
    entries.push({ root: unescapeOctal(fields[3]!), mountPoint: unescapeOctal(fields[4]!), fsType: fields[sep + 1]! });
  }
  return entries;
}

/** The cgroup2 mount nft can use, or why there is none. */
export type Cgroup2Mount =
  | { readonly ok: true; readonly mountPoint: string; readonly root: string; /** Prefix of nft paths: '' or 'unified/'. */ readonly nftPrefix: string }
  | { readonly ok: false; readonly reason: string };

function isUnder(path: string, base: string): boolean {
  return path === base || path.startsWith(`${base}/`);
}

/**
 * Picks the cgroup2 mount nft can name: the one at or below /sys/fs/cgroup (the shallowest, if
 * several). A cgroup2 mounted only elsewhere (e.g. /mnt/cg2) is reported, not guessed at.
 */
export function chooseCgroup2Mount(entries: readonly MountEntry[]): Cgroup2Mount {
  const v2 = entries.filter((e) => e.fsType === 'cgroup2');
  if (v2.length === 0) {
    return { ok: false, reason: 'no cgroup2 filesystem is mounted (this host uses cgroup v1 only); cgroup scopes and `tproxyctl run` need the unified hierarchy (boot with systemd.unified_cgroup_hierarchy=1, or mount cgroup2 on /sys/fs/cgroup/unified)' };
  }
  const usable = v2.filter((e) => isUnder(e.mountPoint, NFT_CGROUP_BASE)).sort((a, b) => a.mountPoint.length - b.mountPoint.length);
  const best = usable[0];
  if (!best) {
    return {
      ok: false,
      reason: `cgroup2 is mounted at ${v2.map((e) => e.mountPoint).join(', ')}, but nft resolves cgroup paths under ${NFT_CGROUP_BASE} only; mount cgroup2 at ${NFT_CGROUP_BASE} (pure v2) or ${NFT_CGROUP_BASE}/unified (hybrid)`,
    };
  }
  const rel = best.mountPoint.slice(NFT_CGROUP_BASE.length).replace(/^\//, '');
  return { ok: true, mountPoint: best.mountPoint, root: best.root, nftPrefix: rel === '' ? '' : `${rel}/` };
}

/** A cgroup path resolved for planSteering's SteeringScope.cgroup, plus where it lives on disk. */
export interface ResolvedCgroup {
  /** Relative to the cgroup2 root, no leading slash. */
  readonly path: string;
  /** Depth below the cgroup2 hierarchy's root (kernel levels are absolute, so a bind-mounted subtree's root counts). */
  readonly level: number;
  /** As nft resolves it (relative to /sys/fs/cgroup). */
  readonly nftPath: string;
  /** Absolute directory of the cgroup on this host (without any test fsRoot). */
  readonly dir: string;
  /** The cgroup2 mount point. */
  readonly mountPoint: string;
}

function depth(path: string): number {
  return path.split('/').filter((s) => s !== '').length;
}

/** Pure: the level and nft path of `path` on `mount`. */
export function cgroupCoordinates(mount: Extract<Cgroup2Mount, { ok: true }>, path: string): ResolvedCgroup {
  const clean = path.replace(/^\/+/, '').replace(/\/+$/, '');
  return {
    path: clean,
    level: depth(mount.root) + depth(clean),
    nftPath: `${mount.nftPrefix}${clean}`,
    dir: join(mount.mountPoint, clean),
    mountPoint: mount.mountPoint,
  };
}

export interface CgroupFsOptions {
  /** Prefix for every path read (tests point it at a fake tree); default '' (the real host). */
  readonly fsRoot?: string;
}

/** The cgroup2 mount of this host (read from /proc/self/mountinfo); throws ScopeUnavailable. */
export async function findCgroup2Mount(opts: CgroupFsOptions = {}): Promise<Extract<Cgroup2Mount, { ok: true }>> {
  const file = `${opts.fsRoot ?? ''}/proc/self/mountinfo`;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new RpcError(ErrorCode.ScopeUnavailable, `cannot read ${file} to find the cgroup2 mount: ${(err as Error).message}`);
  }
  const mount = chooseCgroup2Mount(parseMountinfo(text));
  if (!mount.ok) throw new RpcError(ErrorCode.ScopeUnavailable, `cgroup scopes are unavailable: ${mount.reason}`);
  return mount;
}

/**
 * Resolves `path` (already validated by the protocol: relative, no `..`) on this host and checks
 * that the cgroup exists, because nft resolves it to an id once, when the rule is loaded.
 */
export async function resolveCgroup(path: string, opts: CgroupFsOptions = {}): Promise<ResolvedCgroup> {
  const mount = await findCgroup2Mount(opts);
  const resolved = cgroupCoordinates(mount, path);
  let isDir = false;
  try {
    isDir = (await stat(`${opts.fsRoot ?? ''}${resolved.dir}`)).isDirectory();
  } catch {
    // Missing: reported below.
  }
  if (!isDir) {
    throw new RpcError(
      ErrorCode.ScopeUnavailable,
      `cgroup ${path} does not exist (no directory ${resolved.dir}); name an existing cgroup as /proc/PID/cgroup shows it after "0::", e.g. system.slice/nginx.service`,
    );
  }
  return resolved;
}

/** The capture's effective scope as planSteering takes it: uids as given, the cgroup resolved. */
export async function resolveSteeringScope(scope: CaptureScope | undefined, opts: CgroupFsOptions = {}): Promise<SteeringScope> {
  const cgroup = scope?.cgroup === undefined ? undefined : await resolveCgroup(scope.cgroup, opts);
  return {
    ...(scope?.uids ? { uids: [...scope.uids] } : {}),
    ...(cgroup ? { cgroup: { path: cgroup.path, level: cgroup.level, nftPath: cgroup.nftPath } } : {}),
  };
}
