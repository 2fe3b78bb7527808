// Planning one interface: its table, per family its usable addresses, connected prefixes and
// gateway, and the routes and `from` rules that follow. Pure. What it reads besides the
// interface — its addresses, main's routes through it, the routes in its table, and (in
// prefix mode) other interfaces' prefixes — is exactly what makes it need planning again
// (planner.ts keeps that bookkeeping).
import type { Config } from '../config/config.js';
import { addressToBytes, canonicalAddress, isIPv6LinkLocal, networkOf, type Family } from '../net/ip.js';
import { describeRoute, type Address, type Link, type Route, type Rule } from './model.js';
import { ruleSource, type RuleSource } from './keys.js';
import type { MirrorView } from './mirror.js';
import { FR_ACT_TO_TBL, IFA_F_DADFAILED, IFA_F_DEPRECATED, IFA_F_SECONDARY, IFA_F_TENTATIVE, RT_SCOPE_LINK, RT_SCOPE_SITE, RT_SCOPE_UNIVERSE, RTN_UNICAST } from './constants.js';

export type GatewaySource = 'config' | 'main table';

export interface Gateway {
  readonly address: string;
  readonly source: GatewaySource;
  readonly onlink?: true;
}

export interface FamilyPlan {
  readonly family: Family;
  readonly addresses: readonly Address[];
  readonly prefixes: readonly ConnectedPrefix[];
  readonly gateway?: Gateway;
  /** A gateway the kernel would refuse in this table (and why): planned as no gateway. */
  readonly unusableGateway?: Gateway & { readonly reason: string };
}

export interface InterfacePlan {
  readonly link: Link;
  readonly table: number;
  readonly families: readonly FamilyPlan[];
  /** Why this interface's table is left alone, if it is. */
  readonly collision?: string;
}

export interface ConnectedPrefix {
  readonly network: string;
  readonly length: number;
  readonly source: Address; // the preferred address in the prefix: the route's src
  readonly members: Address[];
}

/** A connected prefix with the interface it is on (prefix mode needs them disjoint). */
export interface OwnedPrefix {
  readonly family: Family;
  readonly network: string;
  /** The network's bytes, read once here for the prefix index (claims.ts). */
  readonly bits: Uint8Array;
  readonly length: number;
  readonly owner: string;
}

const FAMILIES: readonly Family[] = [4, 6];
export const fullLength = (family: Family): number => (family === 4 ? 32 : 128);
const unspecified = (family: Family): string => (family === 4 ? '0.0.0.0' : '::');
// The kernel stores IPv6 routes without a metric at 1024; asking for it explicitly keeps
// what we want and what the kernel reports identical.
const routeMetric = (family: Family): number => (family === 4 ? 0 : 1024);

/** The table an interface's routes go to: pinned by name, else table.base + ifindex. */
export function tableOf(config: Config, link: Link): number {
  // Own properties only: an interface may well be called "constructor".
  return Object.hasOwn(config.table.pinned, link.name) ? config.table.pinned[link.name]! : config.table.base + link.index;
}

/**
 * The interface's plan, and what is wrong with it. `alternatives` words a way out of a
 * collision (a free table), asked only when there is one.
 */
export function planInterface(
  config: Config,
  mirror: MirrorView,
  link: Link,
  table: number,
  alternatives: () => string,
): { plan: InterfacePlan; problems: string[] } {
  const problems: string[] = [];
  const families = FAMILIES.map((family) => planFamily(config, mirror, link, family)).filter((f) => f.addresses.length > 0);
  for (const { family, unusableGateway: gateway } of families) {
    if (!gateway) continue;
    problems.push(
      `${link.name}: IPv${family} gateway ${gateway.address} (from ${gateway.source}) is not reachable through ${link.name}: ` +
        `${gateway.reason}; the kernel would refuse it, so table ${table} gets no IPv${family} default route`,
    );
  }
  const collision = findCollision(config, mirror, table, link, alternatives);
  if (collision) problems.push(collision);
  return { plan: { link, table, families, ...(collision ? { collision } : {}) }, problems };
}

/** The interface's connected prefixes, owner named. */
export function ownedPrefixes(plan: InterfacePlan): OwnedPrefix[] {
  return plan.families.flatMap((familyPlan) =>
    familyPlan.prefixes.map((prefix) => ({
      family: familyPlan.family,
      network: prefix.network,
      bits: addressToBytes(prefix.network),
      length: prefix.length,
      owner: plan.link.name,
    })),
  );
}

/**
 * The routes and `from` rules of an interface whose table is its own. `overlapping` names
 * the other interfaces with a prefix equal to, inside or around one of its prefixes.
 */
export function interfaceObjects(
  config: Config,
  plan: InterfacePlan,
  overlapping: (prefix: OwnedPrefix) => string[],
): { routes: Route[]; rules: Rule[]; problems: string[] } {
  const routes: Route[] = [];
  const rules: Rule[] = [];
  const problems: string[] = [];
  for (const familyPlan of plan.families) {
    routes.push(...connectedRoutes(config, plan, familyPlan));
    if (familyPlan.gateway) routes.push(gatewayRoute(config, plan, familyPlan.family, familyPlan.gateway));
    rules.push(...sourceRules(config, plan, familyPlan, overlapping, problems));
  }
  return { routes, rules: dedupeRules(rules), problems };
}

/** Rules for the same source are one rule. */
function dedupeRules(rules: readonly Rule[]): Rule[] {
  const seen = new Set<RuleSource>();
  return rules.filter((rule) => {
    const key = ruleSource(rule);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/**
 * An address replies may come from. An IPv6 one only once the kernel delivers it (its local
 * route: DAD done): before, the kernel refuses it as a route's source. Its flags do not say
 * so after a flap: a kept address goes through DAD again without a notification.
 */
function usable(address: Address, mirror: MirrorView): boolean {
  if (address.family === 4) return address.scope === RT_SCOPE_UNIVERSE || address.scope === RT_SCOPE_SITE;
  return (
    address.scope === RT_SCOPE_UNIVERSE &&
    !isIPv6LinkLocal(address.address) &&
    (address.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED | IFA_F_DEPRECATED)) === 0 &&
    mirror.delivers(address.ifindex, address.address)
  );
}

const addressOrder = new Intl.Collator('en', { numeric: true });

/** Addresses in a stable order: primaries before secondaries, then by address text. */
function byPreference(a: Address, b: Address): number {
  const secondary = (a.flags & IFA_F_SECONDARY) - (b.flags & IFA_F_SECONDARY);
  return secondary || addressOrder.compare(a.address, b.address);
}

function planFamily(config: Config, mirror: MirrorView, link: Link, family: Family): FamilyPlan {
  const addresses = [...mirror.addressesOf(link.index).values()].filter((a) => a.family === family && usable(a, mirror)).sort(byPreference);
  const configured = Object.hasOwn(config.gateways, link.name) ? config.gateways[link.name]![family === 4 ? 'ipv4' : 'ipv6'] : undefined;
  const gateway = configured
    ? // Written as the kernel will report it, or the route would never compare equal.
      { address: canonicalAddress(configured), source: 'config' as const }
    : learnedGateway(config, mirror, link.index, family);
  const prefixes = connectedPrefixes(addresses);
  const unreachable = gateway && whyUnreachable(mirror, link, family, prefixes, gateway);
  if (unreachable) return { family, addresses, prefixes, unusableGateway: { ...gateway, reason: unreachable } };
  return { family, addresses, prefixes, ...(gateway ? { gateway } : {}) };
}

/**
 * Why the kernel would refuse `default via <gateway> dev <link>` in the interface's table, if
 * it would (checked on the kernel: IPv4 answers ENETUNREACH, IPv6 EHOSTUNREACH). It accepts
 * a gateway that is on-link, or link-local (IPv6), or reachable without a gateway through
 * this device: in the table — where symroute puts the interface's connected prefixes before
 * any gateway route — or, failing that, by its ordinary lookup, which finds main's device
 * routes: the connected prefixes of every address, and the `<gateway> dev <if>` routes
 * admins add for a gateway outside the subnet. Planning one it refuses would only retry the
 * refusal forever.
 */
function whyUnreachable(
  mirror: MirrorView,
  link: Link,
  family: Family,
  prefixes: readonly ConnectedPrefix[],
  gateway: Gateway,
): string | undefined {
  if (gateway.onlink || (family === 6 && isIPv6LinkLocal(gateway.address))) return undefined;
  const inside = (network: string, length: number) => networkOf(gateway.address, length) === network;
  if (prefixes.some((prefix) => inside(prefix.network, prefix.length))) return undefined;
  if (mirror.mainDeviceRouteCovers(link.index, family, gateway.address)) return undefined;
  const where = prefixes.length > 0 ? `in none of its prefixes (${prefixes.map((p) => `${p.network}/${p.length}`).join(', ')})` : 'not in any prefix of it (it has none)';
  return `${where}, nor behind a device route of it in the main table${family === 6 ? ', not link-local' : ''}, and not onlink`;
}

/** The lowest-metric default route via this interface in the main table (DHCP, RA, static). */
function learnedGateway(config: Config, mirror: MirrorView, ifindex: number, family: Family): FamilyPlan['gateway'] {
  let best: { address: string; metric: number; onlink?: true } | undefined;
  for (const route of mirror.mainDefaultsVia(ifindex).values()) {
    // A source-specific default (`default from …`) is not the interface's gateway for all.
    if (route.family !== family || route.protocol === config.protocol || route.srcLength || route.type !== RTN_UNICAST) continue;
    const gateway = route.oif === ifindex ? route.gateway : route.nexthops?.find((n) => n.ifindex === ifindex)?.gateway;
    // Equal metrics: the lower address, so the choice does not depend on arrival order.
    if (gateway && (!best || route.metric < best.metric || (route.metric === best.metric && addressOrder.compare(gateway, best.address) < 0))) {
      // An on-link gateway (a /32 address behind a router outside it) stays on-link in our table.
      best = { address: gateway, metric: route.metric, ...(route.oif === ifindex && route.onlink ? { onlink: true as const } : {}) };
    }
  }
  return best && { address: best.address, source: 'main table', ...(best.onlink ? { onlink: true as const } : {}) };
}

function findCollision(config: Config, mirror: MirrorView, table: number, link: Link, alternatives: () => string): string | undefined {
  const name = (index: number) => mirror.links.get(index)?.name ?? `#${index}`;
  // Sorted, so the same kernel state always yields the same message (it is logged on change).
  const [foreign] = [...mirror.routesIn(table).values()]
    .filter((route) => route.protocol !== config.protocol)
    .map((route) => `${describeRoute(route, name)} proto ${route.protocol}`)
    .sort();
  if (foreign === undefined) return undefined;
  return (
    `${link.name}: table ${table} holds a route symroute does not own (${foreign}); ` +
    `leaving that table alone (pin a free one with ${alternatives()})`
  );
}

/** The connected prefixes of an interface; host addresses (/32, /128 without a peer) have none. */
function connectedPrefixes(addresses: readonly Address[]): ConnectedPrefix[] {
  const prefixes = new Map<string, ConnectedPrefix>();
  for (const address of addresses) {
    if (!address.peer && address.prefixLength === fullLength(address.family)) continue;
    const network = networkOf(address.peer ?? address.address, address.prefixLength);
    const key = `${network}/${address.prefixLength}`;
    const existing = prefixes.get(key);
    if (existing) existing.members.push(address);
    else prefixes.set(key, { network, length: address.prefixLength, source: address, members: [address] });
  }
  return [...prefixes.values()];
}

function connectedRoutes(config: Config, plan: InterfacePlan, familyPlan: FamilyPlan): Route[] {
  const family = familyPlan.family;
  return familyPlan.prefixes.map((prefix) => ({
    family,
    table: plan.table,
    dst: prefix.network,
    dstLength: prefix.length,
    metric: routeMetric(family),
    protocol: config.protocol,
    // IPv6 routes have no scope of their own: the kernel reports them all as universe.
    scope: family === 4 ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE,
    type: RTN_UNICAST,
    oif: plan.link.index,
    prefsrc: prefix.source.address,
  }));
}

function gatewayRoute(config: Config, plan: InterfacePlan, family: Family, gateway: Gateway): Route {
  return {
    family,
    table: plan.table,
    dst: unspecified(family),
    dstLength: 0,
    metric: routeMetric(family),
    protocol: config.protocol,
    scope: RT_SCOPE_UNIVERSE,
    type: RTN_UNICAST,
    oif: plan.link.index,
    gateway: gateway.address,
    ...(gateway.onlink ? { onlink: true as const } : {}),
  };
}

function sourceRules(
  config: Config,
  plan: InterfacePlan,
  familyPlan: FamilyPlan,
  overlapping: (prefix: OwnedPrefix) => string[],
  problems: string[],
): Rule[] {
  const family = familyPlan.family;
  const rule = (src: string, srcLength: number): Rule => ({
    family,
    priority: config.rule.priority,
    table: plan.table,
    action: FR_ACT_TO_TBL,
    protocol: config.protocol,
    src,
    srcLength,
    dstLength: 0,
    tos: 0,
  });
  const perAddress = (addresses: readonly Address[]) => addresses.map((address) => rule(address.address, fullLength(family)));
  if (config.rule.match === 'address') return perAddress(familyPlan.addresses);

  const rules: Rule[] = [];
  const covered = new Set<Address>();
  // A point-to-point prefix is the peer's side: replies leave from the local address, which
  // that prefix does not contain, so such addresses keep a rule of their own.
  const local = familyPlan.addresses.filter((address) => !address.peer);
  for (const prefix of connectedPrefixes(local)) {
    prefix.members.forEach((member) => covered.add(member));
    const others = overlapping({ family, network: prefix.network, bits: addressToBytes(prefix.network), length: prefix.length, owner: plan.link.name });
    if (others.length > 0) {
      // A prefix rule cannot say which NIC: fall back to one rule per address.
      problems.push(
        `${plan.link.name}: prefix ${prefix.network}/${prefix.length} overlaps a prefix of ${others.join(', ')}; ` +
          'using one rule per address for it',
      );
      rules.push(...perAddress(prefix.members));
    } else {
      rules.push(rule(prefix.network, prefix.length));
    }
  }
  // Host and point-to-point addresses.
  rules.push(...perAddress(familyPlan.addresses.filter((address) => !covered.has(address))));
  return rules;
}
