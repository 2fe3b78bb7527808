// Applies computed changes to the kernel: every phase in one pipelined stretch, every request
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

/** The request for a change; `describe` words it, only if the kernel refuses it. */
function toRequest(change: Change, describe: () => string): Request {
  // Its notification can stand for the change itself (kernel/watcher.ts), but not a
  // multipath route's: the kernel may announce it a nexthop at a time.
  const echo = change.kind === 'route' && change.route.nexthops ? {} : { echo: change };
  return { op: `${change.op}_${change.kind}`, ...onTheWire(change), ...echo, get action() { return `${VERB[change.op]} ${describe()}`; } };
}

function onTheWire(change: Change): Pick<Request, 'type' | 'flags' | 'body'> {
  if (change.kind === 'route') {
    const body = routeToMessage(change.route);
    if (change.op === 'delete') return { type: RTM_DELROUTE, flags: 0, body };
    return { type: RTM_NEWROUTE, flags: NLM_F_CREATE | (change.op === 'add' ? NLM_F_EXCL : NLM_F_REPLACE), body };
  }
  const body = ruleToMessage(change.rule);
  // Without NLM_F_EXCL the kernel would happily add a second identical rule.
  if (change.op === 'add') return { type: RTM_NEWRULE, flags: NLM_F_CREATE | NLM_F_EXCL, body };
  return { type: RTM_DELRULE, flags: 0, body };
}

/**
 * Runs the phases in order, all in one pipelined stretch: the kernel handles each request
 * after those sent before it, so the phases take effect in their order (make before break)
 * without one waiting for the ACKs of the one before. A failed request does not stop the
 * others. Nothing is worded before the last ACK: a change is described when its outcome is
 * read (for the log), or when the kernel refuses it.
 */
export async function applyChanges(
  client: RtnlClient,
  phases: readonly (readonly Change[])[],
  linkName: (ifindex: number) => string,
): Promise<ChangeOutcome[]> {
  const changes = phases.flat();
  const descriptions = new Array<string | undefined>(changes.length);
  const describe = (i: number) => (descriptions[i] ??= describeChange(changes[i]!, linkName));
  const results = await client.execute(changes.map((change, i) => toRequest(change, () => describe(i))));
  return results.map((result, i) => ({
    change: changes[i]!,
    get description() {
      return describe(i);
    },
    ...(result.ok ? {} : { error: result.error }),
  }));
}
