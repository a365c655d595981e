/**
 * Who may capture what. A capture started by root may cover every local user; a capture started by
 * an allowed non-root operator covers only that operator's own processes unless the helper's
 * configuration file, writable by root only, grants that uid more. Without this, any operator of
 * the dashboard could read root's and other users' decrypted traffic.
 *
 * The file (`--config FILE`, default /etc/tproxy/helper.json when it exists):
 *   { "operators": { "1000": { "captureUids": "any" } , "1001": { "captureUids": [1001, 1002] } } }
 * It is refused unless it and its directory are owned by root and not group- or world-writable,
 * because a file an operator could edit would grant that operator everything.
 *
 * `decideScope` is pure (a decision table, unit-tested); `loadPolicy` does the file checks.
 */
import { readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ErrorCode, RpcError, formatZodError, type CaptureScope } from '@tproxy/protocol';
import { z } from 'zod';

/** Read when no --config is given, if it exists. */
export const DEFAULT_POLICY_PATH = '/etc/tproxy/helper.json';

const uid = z.number({ error: 'must be a uid number' }).int('must be an integer uid').min(0, 'must be a uid (0..4294967294)').max(0xfffffffe, 'must be a uid (0..4294967294)');

const OperatorGrantSchema = z
  .object({
    /**
     * Whose traffic this operator may capture: "any" (every user, like root), or a list of uids
     * (its own is always allowed). Absent: its own uid only.
     */
    captureUids: z.union([z.literal('any'), z.array(uid, { error: 'must be "any" or an array of uids' }).max(64, 'may list at most 64 uids')], {
      error: 'must be "any" or an array of uids',
    }),
  })
  .partial()
  .strict();

export const PolicyFileSchema = z
  .object({
    /** Grants per operator uid (the JSON key is the uid in decimal). */
    operators: z
      .record(z.string(), OperatorGrantSchema)
      // Checked here rather than in the key schema: zod reports a bad record key only as "Invalid key".
      .superRefine((ops, ctx) => {
        for (const key of Object.keys(ops)) {
          if (!/^\d+$/.test(key) || Number(key) > 0xfffffffe) ctx.addIssue({ code: 'custom', path: [key], message: 'keys must be decimal uids, e.g. "1000"' });
        }
      })
      .default({}),
  })
  .strict();

export type PolicyFile = z.infer<typeof PolicyFileSchema>;

/** What the helper enforces: the parsed file plus where it came from (named in messages). */
export interface Policy {
  /** The file the grants came from, or null when there is none. */
  readonly source: string | null;
  /** Per operator uid: 'any' or the extra uids it may capture. */
  readonly grants: ReadonlyMap<number, 'any' | readonly number[]>;
}

export const EMPTY_POLICY: Policy = { source: null, grants: new Map() };

export class PolicyError extends Error {
  override readonly name = 'PolicyError';
}

/** Builds a Policy from parsed JSON; throws PolicyError naming the file and the field. */
export function policyFromJson(json: unknown, source: string): Policy {
  const parsed = PolicyFileSchema.safeParse(json);
  if (!parsed.success) throw new PolicyError(`${source}: ${formatZodError(parsed.error)}`);
  const grants = new Map<number, 'any' | readonly number[]>();
  for (const [key, grant] of Object.entries(parsed.data.operators)) {
    if (grant.captureUids !== undefined) grants.set(Number(key), grant.captureUids);
  }
  return { source, grants };
}

/** What a file's owner and mode must be: root's, and writable by root only. */
function checkOwnership(path: string, st: { uid: number; mode: number }, what: string): void {
  if (st.uid !== 0) throw new PolicyError(`${path}: refusing to load: ${what} is owned by uid ${st.uid}, not root (chown root ${path})`);
  if ((st.mode & 0o022) !== 0) {
    throw new PolicyError(`${path}: refusing to load: ${what} is group- or world-writable (mode ${(st.mode & 0o777).toString(8)}; chmod go-w ${path})`);
  }
}

/**
 * Loads the policy file. `explicit` (--config) must exist; without it the default path is read
 * only if present. Throws PolicyError naming the file and what to fix.
 */
export async function loadPolicy(explicit: string | undefined): Promise<Policy> {
  const path = explicit ?? DEFAULT_POLICY_PATH;
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && explicit === undefined) return EMPTY_POLICY;
    throw new PolicyError(`${path}: cannot read the helper configuration: ${(err as Error).message}`);
  }
  if (!st.isFile()) throw new PolicyError(`${path}: the helper configuration must be a regular file`);
  checkOwnership(path, st, 'the file');
  checkOwnership(path, await stat(dirname(path)), `its directory ${dirname(path)}`);
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new PolicyError(`${path}: not valid JSON: ${(err as Error).message}`);
  }
  return policyFromJson(json, path);
}

/** The caller as the policy sees it: null uid means no SO_PEERCRED (the socket mode was the only gate). */
export interface ScopeRequest {
  readonly uid: number | null;
  readonly requested: CaptureScope | undefined;
}

function configHint(policy: Policy, operator: number, uids: readonly number[]): string {
  const file = policy.source ?? DEFAULT_POLICY_PATH;
  return `to allow it, grant it in ${file} (owned by root, not group/world-writable) and restart the helper: {"operators": {"${operator}": {"captureUids": ${JSON.stringify([...new Set([operator, ...uids])])}}}} or "captureUids": "any"`;
}

/**
 * The effective scope of a capture `uid` asks for. Root (or an unidentified peer): what it asked.
 * An operator: uids default to its own (every user when granted "any"); naming a uid it was not
 * granted is ScopeNotAllowed, with the configuration that would allow it. A cgroup is always
 * allowed: it only narrows, and the uid restriction still applies on top of it.
 */
export function decideScope(policy: Policy, req: ScopeRequest): CaptureScope {
  const requested = req.requested ?? {};
  const effective: CaptureScope = { ...(requested.cgroup !== undefined ? { cgroup: requested.cgroup } : {}) };
  if (req.uid === null || req.uid === 0) {
    if (requested.uids) effective.uids = [...requested.uids];
    return effective;
  }
  const operator = req.uid;
  const grant = policy.grants.get(operator);
  if (requested.uids === undefined) {
    if (grant !== 'any') effective.uids = [operator];
    return effective;
  }
  if (grant !== 'any') {
    const allowed = new Set([operator, ...(grant ?? [])]);
    const refused = requested.uids.filter((u) => !allowed.has(u));
    if (refused.length > 0) {
      throw new RpcError(
        ErrorCode.ScopeNotAllowed,
        `uid ${operator} may capture only uid${allowed.size > 1 ? 's' : ''} ${[...allowed].join(', ')}, not ${refused.join(', ')}; ${configHint(policy, operator, requested.uids)}`,
        { allowedUids: [...allowed], refusedUids: refused },
      );
    }
  }
  effective.uids = [...requested.uids];
  return effective;
}

/** One line for the log and status: `uids 1000 in cgroup tproxy/run-1`, `every local process`. */
export function describeScope(scope: CaptureScope | undefined): string {
  const parts: string[] = [];
  if (scope?.uids) parts.push(`uid${scope.uids.length > 1 ? 's' : ''} ${scope.uids.join(',')}`);
  if (scope?.cgroup) parts.push(`cgroup ${scope.cgroup}`);
  return parts.length ? parts.join(' in ') : 'every local process';
}
