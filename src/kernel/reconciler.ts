// Applies computed changes to the kernel: one pipelined batch per phase, every request
// carrying the full attribute set of the object it names.
import type { Change } from '../domain/diff.js';
import { describeRoute, describeRule } from '../domain/model.js';
import type { RtnlClient, Request } from '../netlink/client.js';
import {
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  RTM_DELROUTE,
  RTM_DELRULE,
  RTM_NEWROUTE,
  RTM_NEWRULE,
} from '../netlink/constants.js';
import type { NetlinkError } from '../netlink/errors.js';
import { routeToMessage, ruleToMessage } from './objects.js';

export interface ChangeOutcome {
  readonly change: Change;
  readonly description: string; // "rule from 198.18.193.10 lookup 1002 pref 30000"
  readonly error?: NetlinkError;
}

const VERB = { add: 'adding', replace: 'replacing with', delete: 'deleting' } as const;

export function describeChange(change: Change, linkName: (ifindex: number) => string): string {
  return change.kind === 'route' ? `route ${describeRoute(change.route, linkName)}` : `rule ${describeRule(change.rule)}`;
}

function toRequest(change: Change, description: string): Request {
  const action = `${VERB[change.op]} ${description}`;
  const op = `${change.op}_${change.kind}`;
  if (change.kind === 'route') {
    const body = routeToMessage(change.route);
    if (change.op === 'delete') return { op, type: RTM_DELROUTE, flags: 0, body, action };
    return { op, type: RTM_NEWROUTE, flags: NLM_F_CREATE | (change.op === 'add' ? NLM_F_EXCL : NLM_F_REPLACE), body, action };
  }
  const body = ruleToMessage(change.rule);
  // Without NLM_F_EXCL the kernel would happily add a second identical rule.
  if (change.op === 'add') return { op, type: RTM_NEWRULE, flags: NLM_F_CREATE | NLM_F_EXCL, body, action };
  return { op, type: RTM_DELRULE, flags: 0, body, action };
}

/** Runs the phases in order; a failed request does not stop the others. */
export async function applyChanges(
  client: RtnlClient,
  phases: readonly (readonly Change[])[],
  linkName: (ifindex: number) => string,
): Promise<ChangeOutcome[]> {
  const outcomes: ChangeOutcome[] = [];
  for (const phase of phases) {
    const descriptions = phase.map((change) => describeChange(change, linkName));
    const results = await client.execute(phase.map((change, i) => toRequest(change, descriptions[i]!)));
    results.forEach((result, i) =>
      outcomes.push({ change: phase[i]!, description: descriptions[i]!, ...(result.ok ? {} : { error: result.error }) }),
    );
  }
  return outcomes;
}
