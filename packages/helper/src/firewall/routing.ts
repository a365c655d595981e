/**
 * Renders a SteeringPlan's policy routing to paired `ip` argv: each step's `del` is the exact
 * inverse of its `add` (same family, selector, priority and table), so rollback and revert remove
 * precisely what apply created and nothing that merely looks similar (tailscale's Add/Del pairs).
 * Pure: this module must not run `ip` (apply.ts does) nor decide what to route (plan.ts does).
 */
import { hex } from './plan.js';
import type { IpFamily, RoutingSpec, SteeringPlan } from './plan.js';

export interface RouteStep {
  /** Human label used in logs and error messages, e.g. "ip -4 rule priority 4233 fwmark 0x2333/0x3fff lookup 233". */
  readonly label: string;
  /** The plan item this step installs. */
  readonly spec: RoutingSpec;
  readonly add: readonly string[];
  readonly del: readonly string[];
}

const FAMILY_FLAG: Record<IpFamily, string> = { ipv4: '-4', ipv6: '-6' };
/** `local` route covering every destination of the family; "default" is how `ip route show` prints it. */
const ANY: Record<IpFamily, string> = { ipv4: '0.0.0.0/0', ipv6: '::/0' };

function stepFor(spec: RoutingSpec): RouteStep {
  const flag = FAMILY_FLAG[spec.family];
  if (spec.kind === 'local-route') {
    const object = ['local', ANY[spec.family], 'dev', 'lo', 'table', String(spec.table)];
    return {
      label: `ip ${flag} route ${object.join(' ')}`,
      spec,
      add: ['ip', flag, 'route', 'add', ...object],
      del: ['ip', flag, 'route', 'del', ...object],
    };
  }
  // The mask is part of the selector on both sides: `del` without it would only match a rule with
  // the full mask (iproute2 sends 0xffffffff), and with it never removes someone else's masked rule.
  const selector = ['priority', String(spec.priority), 'fwmark', `${hex(spec.mark)}/${hex(spec.mask)}`, 'lookup', String(spec.table)];
  return {
    label: `ip ${flag} rule ${selector.join(' ')}`,
    spec,
    add: ['ip', flag, 'rule', 'add', ...selector],
    del: ['ip', flag, 'rule', 'del', ...selector],
  };
}

/** Steps in apply order; undo them in reverse. */
export function routeSteps(plan: SteeringPlan): RouteStep[] {
  return plan.routing.map(stepFor);
}
