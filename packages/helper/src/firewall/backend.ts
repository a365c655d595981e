/**
 * The seam between the capture service and the firewall: one `SteeringBackend` interface that the
 * nft `Steering` (apply.ts) and `IptablesSteering` (iptables-apply.ts) both satisfy, and the logged
 * choice between them (tailscale's `linuxfw` detector).
 *
 * `auto` prefers nft whenever `nft list tables` answers: one atomic table covers both families.
 * Without a usable nft it takes iptables: the legacy flavour when legacy iptables already holds
 * rules (adding ours to the backend the host uses keeps everything in one place and one order),
 * otherwise iptables-nft, otherwise legacy. The only commands run are read-only probes.
 * It must not render rules (nft.ts, iptables.ts) nor apply them (apply.ts, iptables-apply.ts).
 */
import type { FirewallBackend, FirewallChoice } from '@tproxy/protocol';
import { ExecError } from '../exec.js';
import type { Exec } from '../exec.js';
import type { Logger } from '../log.js';
import { Steering } from './apply.js';
import type { RevertReport, VerifyResult } from './apply.js';
import { FirewallError } from './errors.js';
import { IptablesSteering, IPTABLES_BINARIES } from './iptables-apply.js';
import type { IptablesFlavour } from './iptables-apply.js';
import type { SteeringPlan } from './plan.js';

/** What the capture service needs from a firewall backend; every method takes the same plan. */
export interface SteeringBackend {
  /** All-or-nothing install; throws FirewallError after undoing what this attempt added. */
  apply(plan: SteeringPlan): Promise<void>;
  /** Best-effort, idempotent removal; never throws, reports each step. */
  revert(plan: SteeringPlan): Promise<RevertReport>;
  /** Read-only comparison of the kernel with the plan. */
  verify(plan: SteeringPlan): Promise<VerifyResult>;
  /** Refreshes the fail-open port set; throws FirewallError('heartbeat-failed') when it is gone. */
  heartbeat(plan: SteeringPlan): Promise<void>;
}

export interface BackendChoice {
  readonly backend: FirewallBackend;
  /** One sentence for logs and capture.status: why this backend. */
  readonly reason: string;
}

export const IPTABLES_FLAVOURS: readonly IptablesFlavour[] = ['iptables-nft', 'iptables-legacy'];

function why(err: unknown): string {
  if (err instanceof ExecError) return err.code === 'ENOENT' ? 'not installed' : err.stderr.trim().split('\n')[0] || err.message;
  return err instanceof Error ? err.message : String(err);
}

interface Probe {
  readonly ok: boolean;
  /** `-A` lines in the flavour's ipv4 iptables-save output (rules it already holds). */
  readonly rules: number;
  readonly detail: string;
}

async function probeNft(exec: Exec): Promise<Probe> {
  try {
    await exec.run('nft', ['list', 'tables'], { timeoutMs: 5_000 });
    return { ok: true, rules: 0, detail: 'answers' };
  } catch (err) {
    return { ok: false, rules: 0, detail: why(err) };
  }
}

/**
 * `<flavour>-save` without `-t`: it lists only tables that exist, so probing never creates one
 * (with `-t mangle` it would instantiate that table, and iptables-nft would then warn about
 * "legacy tables present" on a host that never used legacy iptables).
 */
async function probeIptables(exec: Exec, flavour: IptablesFlavour): Promise<Probe> {
  try {
    const { stdout } = await exec.run(IPTABLES_BINARIES[flavour].ipv4.save, [], { timeoutMs: 5_000 });
    const rules = stdout.split('\n').filter((l) => l.startsWith('-A ')).length;
    return { ok: true, rules, detail: `answers, ${rules} rule(s)` };
  } catch (err) {
    return { ok: false, rules: 0, detail: why(err) };
  }
}

async function pickIptables(exec: Exec, nftNote: string): Promise<BackendChoice> {
  const [nftFlavour, legacy] = await Promise.all(IPTABLES_FLAVOURS.map((f) => probeIptables(exec, f)));
  if (!nftFlavour || !legacy) throw new Error('unreachable: two flavours probed');
  if (legacy.ok && legacy.rules > 0) {
    return { backend: 'iptables-legacy', reason: `${nftNote}legacy iptables already holds ${legacy.rules} rule(s), so ours join them there` };
  }
  if (nftFlavour.ok) return { backend: 'iptables-nft', reason: `${nftNote}iptables-nft answers and legacy iptables holds no rules` };
  if (legacy.ok) return { backend: 'iptables-legacy', reason: `${nftNote}iptables-nft is unusable (${nftFlavour.detail}); iptables-legacy answers` };
  throw new FirewallError(
    'apply-failed',
    `no usable firewall: ${nftNote}iptables-nft-save: ${nftFlavour.detail}; iptables-legacy-save: ${legacy.detail}. ` +
      'Install the nftables package, or the iptables and ipset packages (apt-get install nftables)',
  );
}

/**
 * Picks the backend for `choice` and logs the reason. A named flavour is taken as is; `iptables`
 * picks a flavour; `auto` probes nft first. Throws FirewallError when nothing usable is installed.
 */
export async function detectBackend(exec: Exec, choice: FirewallChoice, log: Logger): Promise<BackendChoice> {
  let chosen: BackendChoice;
  if (choice === 'nft' || choice === 'iptables-nft' || choice === 'iptables-legacy') {
    chosen = { backend: choice, reason: `asked for ${choice}` };
  } else if (choice === 'iptables') {
    chosen = await pickIptables(exec, 'asked for iptables; ');
  } else {
    const nft = await probeNft(exec);
    chosen = nft.ok
      ? { backend: 'nft', reason: 'nft answers (nftables is preferred: one atomic table for both families)' }
      : await pickIptables(exec, `nft is unusable (${nft.detail}); `);
  }
  log.info(`firewall backend: ${chosen.backend} (${chosen.reason})`);
  return chosen;
}

/** The backend object for a detected (or named) backend. */
export function createSteering(backend: FirewallBackend, exec: Exec, log: Logger): SteeringBackend {
  return backend === 'nft' ? new Steering(exec, log) : new IptablesSteering(exec, log, backend);
}
