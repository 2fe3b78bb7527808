// The kernel's own verdict on reply paths: one RTM_GETROUTE per probe (src/domain/
// reply-paths.ts), as `ip route get <peer> from <address>` (egress) and `ip route get
// <address> from <peer> iif <nic>` (ingress, where the kernel applies rp_filter). Requests
// are pipelined: a batch of them per sendmsg, each answered as the kernel sends it.
import type { InterfacePlan } from '../domain/interface-plan.js';
import type { Family } from '../net/ip.js';
import type { Address, Rule } from '../domain/model.js';
import type { MirrorView } from '../domain/mirror.js';
import { judge, Neighbours, onCollidedTable, onLinkOf, offLinkDestination, probesOf, type LookupAnswer, type PathVerdict, type Probe, type ProbeContext } from '../domain/reply-paths.js';
import type { RtnlClient } from '../netlink/client.js';
import { AF_INET, AF_INET6, RTM_F_LOOKUP_TABLE, RTM_GETROUTE } from '../netlink/constants.js';
import { NetlinkError } from '../netlink/errors.js';
import type { RouteMessage } from '../netlink/messages.js';
import { routeFromMessage } from './objects.js';

/** The kernel's answer to each probe, in the probes' order. A failed lookup is an answer too. */
export async function lookUp(client: RtnlClient, probes: readonly Probe[]): Promise<LookupAnswer[]> {
  const replies = await client.getAll(RTM_GETROUTE, probes.map((probe) => ({ body: lookupRequest(probe), action: lookupAction(probe) })));
  return replies.map((reply, i) => {
    if (reply instanceof NetlinkError) {
      const action = lookupAction(probes[i]!);
      return { ok: false, errno: reply.code, message: reply.extackMessage ?? reply.message.replace(`${action}: `, '').replace(/ \([A-Z0-9]+\)$/, '') };
    }
    const route = reply.kind === 'route' ? routeFromMessage(reply) : undefined;
    if (!route) return { ok: false, errno: 'EIO', message: 'the kernel answered with something else than a route' };
    return { ok: true, table: route.table, type: route.type, ...(route.oif !== undefined ? { oif: route.oif } : {}), ...(route.gateway ? { gateway: route.gateway } : {}) };
  });
}

/** `ip route get <peer> from <address>` (egress), or `… <address> from <peer> iif <nic>` (ingress). */
function lookupRequest(probe: Probe): RouteMessage {
  return probe.direction === 'ingress'
    ? routeLookupRequest(probe.family, probe.address, probe.peer, probe.ifindex)
    : routeLookupRequest(probe.family, probe.peer, probe.address);
}

/** `ip route get <dst> from <src> [iif <ifindex>]`, as an RTM_GETROUTE body. */
export function routeLookupRequest(family: Family, dst: string, src: string, iif?: number): RouteMessage {
  const full = family === 4 ? 32 : 128;
  return {
    kind: 'route',
    header: {
      family: family === 4 ? AF_INET : AF_INET6,
      dstLen: full,
      srcLen: full,
      tos: 0,
      table: 0,
      protocol: 0,
      scope: 0,
      type: 0,
      // IPv6 always reports the table it used, and its strict check rejects the flag.
      flags: family === 4 ? RTM_F_LOOKUP_TABLE : 0,
    },
    attributes: iif === undefined ? { dst, src } : { dst, src, iif },
  };
}

function lookupAction(probe: Probe): string {
  return probe.direction === 'ingress'
    ? `looking up a request from ${probe.peer} to ${probe.address} arriving on ${probe.ifname}`
    : `looking up the route of a reply from ${probe.address} to ${probe.peer}`;
}

/**
 * The host's off-link destination per family (offLinkDestination), worked out when first
 * asked: it scans every address of the host. A daemon keeps one while it stays off every
 * link, so verifying one NIC's paths does not cost the host's size: an address that comes
 * within reach of it has it worked out again; one that goes leaves it off-link (any
 * destination off every link will do).
 */
export class OffLinkDestinations {
  private readonly known = new Map<Family, string | undefined>();

  constructor(private readonly mirror: MirrorView) {}

  readonly get = (family: Family): string | undefined => {
    if (!this.known.has(family)) this.known.set(family, offLinkDestination(family, this.mirror.addresses.values()));
    return this.known.get(family);
  };

  /** An address came, changed or went (`delete`). */
  addressChanged(op: 'set' | 'delete', address: Address): void {
    if (!this.known.has(address.family)) return;
    const destination = this.known.get(address.family);
    // None was off every link: one may be now that an address went.
    if (destination === undefined) {
      if (op === 'delete') this.known.delete(address.family);
      return;
    }
    if (op === 'set' && onLinkOf(destination, address)) this.known.delete(address.family);
  }
}

/**
 * Lookups sent in one turn of the event loop at most. The kernel answers each inside sendmsg()
 * and walks the policy rules for it (~0.1 ms each among 2000 rules), so a turn's share must
 * stay short enough for a pass waiting behind it.
 */
export const LOOKUPS_PER_TURN = 64;

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Every reply path of `interfaces` (or of those in `only`, by ifindex), judged by the kernel:
 * one verdict per probe. `between` runs between two turns' lookups: the daemon's waits there
 * while a pass is due or running.
 */
export async function verifyReplyPaths(
  client: RtnlClient,
  mirror: MirrorView,
  interfaces: readonly InterfacePlan[],
  only?: ReadonlySet<number>,
  offLink: (family: Family) => string | undefined = new OffLinkDestinations(mirror).get,
  between: () => Promise<void> = nextTurn,
): Promise<PathVerdict[]> {
  const context: ProbeContext = { neighbour: new Neighbours((address) => mirror.holdsAddress(address)).of, offLink };
  const chosen = only ? interfaces.filter((planned) => only.has(planned.link.index)) : interfaces;
  const planOf = new Map(chosen.map((planned) => [planned.link.index, planned]));
  const probes = chosen.flatMap((planned) => probesOf(planned, context));
  const answers: LookupAnswer[] = [];
  for (let start = 0; start < probes.length; start += LOOKUPS_PER_TURN) {
    if (start > 0) await between();
    answers.push(...(await lookUp(client, probes.slice(start, start + LOOKUPS_PER_TURN))));
  }
  let rules: Rule[] | undefined;
  const allRules = () => (rules ??= [...mirror.rules.values()].map((counted) => counted.rule));
  const linkName = (ifindex: number) => mirror.links.get(ifindex)?.name ?? `if${ifindex}`;
  // The egress answer between the same two addresses: what rp_filter looks up for an ingress probe.
  const egress = new Map<string, LookupAnswer>();
  const pair = (probe: Probe) => `${probe.ifindex}|${probe.address}|${probe.peer}`;
  probes.forEach((probe, i) => probe.direction === 'egress' && egress.set(pair(probe), answers[i]!));
  return probes.map((probe, i) =>
    onCollidedTable(judge(probe, answers[i]!, allRules, linkName, probe.direction === 'ingress' ? egress.get(pair(probe)) : undefined), planOf.get(probe.ifindex)!),
  );
}
