// Reply paths: for each managed address, the lookups that prove a reply leaves through the
// NIC the request came in on, and the verdict on the kernel's answers. Pure: the kernel's
// side (RTM_GETROUTE) is src/kernel/route-lookups.ts.
//
// Per address and family: an egress lookup (a reply from the address to a neighbour in its
// connected prefix: must leave by the NIC) and an ingress lookup
// (a request from that neighbour arriving on the NIC: must be delivered locally — the kernel
// applies rp_filter there). Per NIC and family with a gateway, one egress lookup to an
// off-link destination more, from the prefix's source address: the table's default route.
import type { InterfacePlan } from './interface-plan.js';
import { addressToBytes, bytesToAddress, networkOf, type Family } from '../net/ip.js';
import { describeRule, type Address, type Rule } from './model.js';
import { FR_ACT_GOTO, FR_ACT_NOP, FR_ACT_TO_TBL } from './constants.js';

export type ProbeDirection = 'egress' | 'ingress';

export interface Probe {
  readonly direction: ProbeDirection;
  readonly family: Family;
  readonly ifindex: number;
  readonly ifname: string;
  /** The managed address: the reply's source, the request's destination. */
  readonly address: string;
  /** The other end: a neighbour in the connected prefix, or an off-link destination. */
  readonly peer: string;
  readonly offLink: boolean;
}

/** What the kernel answered one lookup with. */
export type LookupAnswer =
  | { readonly ok: true; readonly table: number; readonly oif?: number; readonly type: number; readonly gateway?: string }
  | { readonly ok: false; readonly errno: string; readonly message: string };

export type FailureReason =
  | 'egress_other_device'
  | 'egress_prohibited'
  | 'no_route'
  | 'ingress_rp_filter'
  | 'ingress_refused'
  | 'table_collision';

export interface PathVerdict {
  readonly probe: Probe;
  /** null: the path holds. */
  readonly failure: null | {
    readonly reason: FailureReason;
    /** In words, naming what took the reply (device, rule, table) or the kernel's refusal. */
    readonly detail: string;
    readonly table?: number;
    readonly dev?: number;
    readonly rule?: Rule;
  };
}

// Route types and errnos as the kernel uses them for lookups.
const RTN_UNICAST = 1;
const RTN_LOCAL = 2;
/** An off-link destination per family, tried in order: the first outside every connected prefix. */
const OFF_LINK_CANDIDATES: Record<Family, readonly string[]> = {
  4: ['203.0.113.254', '198.51.100.254', '192.0.2.254'],
  6: ['2001:db8:ffff:ffff::fe', '2001:db8:fffe::fe', '3fff::fe'],
};

export interface ProbeContext {
  /** The neighbour a prefix's lookups are made with (Neighbours.of). */
  readonly neighbour: (network: string, length: number, family: Family) => string | undefined;
  /** A destination off every link of the host (offLinkDestination), asked only for a NIC with a gateway. */
  readonly offLink: (family: Family) => string | undefined;
}

/** The first candidate of the family outside every connected prefix of the host's `addresses`. */
export function offLinkDestination(family: Family, addresses: Iterable<Address>): string | undefined {
  const connected: Address[] = [];
  for (const address of addresses) if (address.family === family) connected.push(address);
  return OFF_LINK_CANDIDATES[family].find((candidate) => !connected.some((a) => onLinkOf(candidate, a)));
}

/** Whether `destination` is in the prefix `address` connects (its peer's, for a point-to-point one). */
export const onLinkOf = (destination: string, address: Address): boolean =>
  networkOf(destination, address.prefixLength) === networkOf(address.peer ?? address.address, address.prefixLength);

/** The lookups that prove `plan`'s reply paths. */
export function probesOf(plan: InterfacePlan, context: ProbeContext): Probe[] {
  const probes: Probe[] = [];
  const base = { ifindex: plan.link.index, ifname: plan.link.name };
  for (const family of plan.families) {
    for (const prefix of family.prefixes) {
      const peer = context.neighbour(prefix.network, prefix.length, family.family);
      if (peer === undefined) continue;
      for (const member of prefix.members) {
        const path = { ...base, family: family.family, address: member.address, peer, offLink: false };
        probes.push({ ...path, direction: 'egress' }, { ...path, direction: 'ingress' });
      }
    }
    const source = family.prefixes[0]?.source.address ?? family.addresses[0]?.address;
    const offLink = family.gateway ? context.offLink(family.family) : undefined;
    if (source !== undefined && offLink !== undefined) {
      probes.push({ ...base, family: family.family, direction: 'egress', address: source, peer: offLink, offLink: true });
    }
  }
  return probes;
}

/**
 * A broken path of a NIC whose table holds someone else's routes: symroute leaves that table
 * alone, so it cannot mend the path. Said as such, with what the kernel found. (A path that
 * holds there holds: the kernel, not the collision, decides.)
 */
export function onCollidedTable(verdict: PathVerdict, plan: InterfacePlan): PathVerdict {
  if (!plan.collision || !verdict.failure) return verdict;
  const detail = `${verdict.failure.detail}; ${plan.link.name}'s table ${plan.table} is left alone: ${plan.collision}`;
  return { probe: verdict.probe, failure: { ...verdict.failure, reason: 'table_collision', detail, table: plan.table } };
}

/**
 * The verdict on one lookup's answer; `rules` (the mirror's, asked for only to explain a
 * broken path: a walk over every rule) name the rule that won. For an
 * ingress probe, `reverse` is the answer to the egress lookup between the same two addresses:
 * the very lookup rp_filter makes (reported as EXDEV, or EINVAL by kernels since 6.x).
 */
export function judge(
  probe: Probe,
  answer: LookupAnswer,
  rules: () => readonly Rule[],
  linkName: (ifindex: number) => string,
  reverse?: LookupAnswer,
): PathVerdict {
  const fail = (reason: FailureReason, detail: string, extra: { table?: number; dev?: number; rule?: Rule } = {}): PathVerdict => ({
    probe,
    failure: { reason, detail, ...extra },
  });
  if (probe.direction === 'ingress') {
    if (answer.ok && answer.type === RTN_LOCAL) return { probe, failure: null };
    const reverseElsewhere = reverse !== undefined && !(reverse.ok && reverse.oif === probe.ifindex);
    if (!answer.ok && (answer.errno === 'EXDEV' || (answer.errno === 'EINVAL' && reverseElsewhere))) {
      const back = reverse?.ok && reverse.oif !== undefined ? `leads back through ${linkName(reverse.oif)}` : 'does not lead back through it';
      return fail(
        'ingress_rp_filter',
        `a request from ${probe.peer} arriving on ${probe.ifname} is dropped by rp_filter: the reverse path to ${probe.peer} ${back} (${answer.errno})`,
        reverse?.ok && reverse.oif !== undefined ? { dev: reverse.oif } : {},
      );
    }
    const why = answer.ok ? `the kernel would not deliver it locally (route type ${answer.type})` : `${answer.message} (${answer.errno})`;
    return fail('ingress_refused', `a request from ${probe.peer} arriving on ${probe.ifname} for ${probe.address} is refused: ${why}`);
  }
  const what = `a reply from ${probe.address} to ${probe.peer}`;
  if (!answer.ok) {
    const rule = firstMatchingRule(rules(), probe.address, probe.peer, undefined);
    const by = rule ? ` (rule ${describeRule(rule)})` : '';
    if (answer.errno === 'EACCES' || answer.errno === 'EINVAL' || answer.errno === 'EPERM') {
      return fail('egress_prohibited', `${what} is refused: ${answer.message} (${answer.errno})${by}`, rule ? { rule } : {});
    }
    return fail('no_route', `${what} finds no route: ${answer.message} (${answer.errno})${by}`, rule ? { rule } : {});
  }
  if (answer.type === RTN_UNICAST && answer.oif === probe.ifindex) return { probe, failure: null };
  // Broken: name the rule that took the reply (a search through every rule, so only now).
  const rule = firstMatchingRule(rules(), probe.address, probe.peer, answer.table);
  const by = `${rule ? `rule ${describeRule(rule)}, ` : ''}table ${answer.table}`;
  if (answer.type !== RTN_UNICAST) {
    return fail('egress_prohibited', `${what} meets a route of type ${answer.type} (${by})`, { table: answer.table, ...(rule ? { rule } : {}) });
  }
  const dev = answer.oif !== undefined ? linkName(answer.oif) : 'no device';
  return fail('egress_other_device', `${what} would leave by ${dev}, not ${probe.ifname} (${by})`, {
    table: answer.table,
    ...(answer.oif !== undefined ? { dev: answer.oif } : {}),
    ...(rule ? { rule } : {}),
  });
}

/**
 * The first rule, by priority, whose selectors match a reply from `src` to `dst` and which
 * leads to `table` (any table, or a non-table action, when undefined). A matching `goto`
 * jumps to the first rule of its target priority (none there: no jump), a `nop` passes.
 */
export function firstMatchingRule(rules: readonly Rule[], src: string, dst: string, table: number | undefined): Rule | undefined {
  const contains = (prefix: string | undefined, length: number, address: string) => {
    if (length === 0) return true;
    if (prefix === undefined || prefix.includes(':') !== address.includes(':')) return false;
    // Host prefixes (most `from` rules) compare as text: addresses are canonical.
    return length === (address.includes(':') ? 128 : 32) ? prefix === address : networkOf(address, length) === prefix;
  };
  const sorted = [...rules].sort((a, b) => a.priority - b.priority);
  for (let i = 0; i < sorted.length; i++) {
    const rule = sorted[i]!;
    const matches =
      // Selectors a locally generated reply cannot be judged on here.
      rule.iifname === undefined &&
      rule.oifname === undefined &&
      rule.fwmark === undefined &&
      contains(rule.src, rule.srcLength, src) &&
      contains(rule.dst, rule.dstLength, dst);
    if (!matches || rule.action === FR_ACT_NOP) continue;
    if (rule.action === FR_ACT_GOTO) {
      const target = sorted.findIndex((other) => other.priority === rule.goto);
      if (target > i) i = target - 1;
      continue;
    }
    // No table: the lookup was refused, so the rule that refused it (prohibit, blackhole, unreachable).
    if (table === undefined ? rule.action !== FR_ACT_TO_TBL : rule.action === FR_ACT_TO_TBL && rule.table === table) return rule;
  }
  return undefined;
}

/**
 * Per prefix, the address lookups take for a neighbour there: the first from the bottom that
 * no interface of this host holds (`isLocal`), past the network address (IPv6's subnet-router
 * anycast) and short of IPv4's broadcast. Eight NICs numbered .1 to .8 in one subnet push it
 * to .9: the search goes on as long as the host holds the candidate, at most once per prefix
 * for every NIC that shares it (one verification's worth; make a new one for the next).
 */
export class Neighbours {
  private readonly found = new Map<string, string | undefined>();

  constructor(private readonly isLocal: (address: string) => boolean) {}

  readonly of = (network: string, length: number, family: Family): string | undefined => {
    const key = `${network}/${length}`;
    if (this.found.has(key)) return this.found.get(key);
    const neighbour = this.search(network, length, family);
    this.found.set(key, neighbour);
    return neighbour;
  };

  private search(network: string, length: number, family: Family): string | undefined {
    const bits = family === 4 ? 32 : 128;
    // /31 and /127 have two usable ends; /32 and /128 hold only the address itself.
    if (length >= bits) return undefined;
    const hostBits = bits - length;
    const first = hostBits === 1 ? 0 : 1;
    // Past IPv4's broadcast there is nothing; an IPv6 prefix ends long after any host's addresses.
    const end = family === 4 && hostBits > 1 ? 2 ** hostBits - 1 : 2 ** Math.min(hostBits, 32);
    const bytes = addressToBytes(network);
    for (let offset = first; offset < end; offset++) {
      const candidate = withOffset(bytes, offset);
      if (!this.isLocal(candidate)) return candidate;
    }
    return undefined;
  }
}

function withOffset(network: Uint8Array, offset: number): string {
  const bytes = Uint8Array.from(network);
  let carry = offset;
  for (let i = bytes.length - 1; i >= 0 && carry > 0; i--) {
    const sum = bytes[i]! + carry;
    bytes[i] = sum & 0xff;
    carry = sum >> 8;
  }
  return bytesToAddress(bytes);
}

