// The desired state: a pure function from (config, mirror) to the rules and routes symroute
// wants in the kernel. No I/O and no memory of earlier runs — the same inputs always give
// the same plan, whatever event caused it to be computed.
import { isManagedName, type Config } from '../config/config.js';
import { canonicalAddress, isIPv6LinkLocal, networkOf, type Family } from './ip.js';
import { describeRoute, groupBy, type Address, type Link, type Route, type Rule } from './model.js';
import { freeTableBase, freeTableId } from './collisions.js';
import { destinationRules } from './destinations.js';
import type { MirrorView } from './mirror.js';
import { FR_ACT_TO_TBL, IFA_F_DADFAILED, IFA_F_DEPRECATED, IFA_F_SECONDARY, IFA_F_TENTATIVE, RT_SCOPE_LINK, RT_SCOPE_SITE, RT_SCOPE_UNIVERSE, RT_TABLE_MAIN, RTN_UNICAST } from './constants.js';

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

export interface Plan {
  readonly routes: readonly Route[];
  readonly rules: readonly Rule[];
  readonly interfaces: readonly InterfacePlan[];
  /** Tables holding routes symroute does not own: nothing in them, or pointing at them, is touched. */
  readonly protectedTables: ReadonlySet<number>;
  readonly problems: readonly string[];
}

const FAMILIES: readonly Family[] = [4, 6];
const fullLength = (family: Family): number => (family === 4 ? 32 : 128);
const unspecified = (family: Family): string => (family === 4 ? '0.0.0.0' : '::');
// The kernel stores IPv6 routes without a metric at 1024; asking for it explicitly keeps
// what we want and what the kernel reports identical.
const routeMetric = (family: Family): number => (family === 4 ? 0 : 1024);

/** The mirror indexed the ways planning looks at it, built once per plan. */
interface Indexed {
  readonly mirror: MirrorView;
  readonly addressesByLink: ReadonlyMap<number, readonly Address[]>;
  readonly mainDefaultRoutes: readonly Route[];
  /** Routes in main without a gateway (connected prefixes, `<gateway> dev <if>`), by device. */
  readonly mainDeviceRoutesByLink: ReadonlyMap<number, readonly Route[]>;
  readonly foreignRoutesByTable: ReadonlyMap<number, readonly Route[]>;
}

function index(config: Config, mirror: MirrorView): Indexed {
  const foreignRoutes = [...mirror.routes.values()].filter((route) => route.protocol !== config.protocol);
  return {
    mirror,
    addressesByLink: groupBy(mirror.addresses.values(), (address) => address.ifindex),
    mainDefaultRoutes: foreignRoutes.filter(
      // A source-specific default (`default from …`) is not the interface's gateway for all.
      (route) => route.table === RT_TABLE_MAIN && route.dstLength === 0 && !route.srcLength && route.type === RTN_UNICAST,
    ),
    mainDeviceRoutesByLink: groupBy(
      foreignRoutes.filter(
        (route) => route.table === RT_TABLE_MAIN && route.type === RTN_UNICAST && !route.gateway && !route.nexthops && route.oif !== undefined,
      ),
      (route) => route.oif!,
    ),
    foreignRoutesByTable: groupBy(foreignRoutes, (route) => route.table),
  };
}

export function plan(config: Config, mirror: MirrorView): Plan {
  const indexed = index(config, mirror);
  const problems: string[] = [];
  const protectedTables = new Set<number>();
  const managed = [...mirror.links.values()]
    .filter((link) => link.up && !link.loopback && isManagedName(config, link.name))
    .sort((a, b) => a.index - b.index);

  const tableOwners = new Map<number, Link>();
  const interfaces: InterfacePlan[] = [];
  for (const link of managed) {
    // Own properties only: an interface may well be called "constructor".
    const table = Object.hasOwn(config.table.pinned, link.name) ? config.table.pinned[link.name]! : config.table.base + link.index;
    const owner = tableOwners.get(table);
    if (owner) {
      problems.push(`${link.name}: table ${table} is already used by ${owner.name}; ${link.name} is not managed`);
      continue;
    }
    tableOwners.set(table, link);
    const families = FAMILIES.map((family) => planFamily(config, indexed, link, family)).filter(
      (f) => f.addresses.length > 0,
    );
    for (const { family, unusableGateway: gateway } of families) {
      if (!gateway) continue;
      problems.push(
        `${link.name}: IPv${family} gateway ${gateway.address} (from ${gateway.source}) is not reachable through ${link.name}: ` +
          `${gateway.reason}; the kernel would refuse it, so table ${table} gets no IPv${family} default route`,
      );
    }
    const collision = findCollision(indexed, table, link, () => {
      const ifindexes = managed.map((l) => l.index);
      const id = freeTableId(config, ifindexes, usedTables(mirror));
      const base = freeTableBase(config, ifindexes, new Set(indexed.foreignRoutesByTable.keys()));
      return `table.pinned.${link.name}: ${id}${base === undefined ? '' : `, or move every table with table.base: ${base}`}`;
    });
    if (collision) {
      problems.push(collision);
      protectedTables.add(table);
    }
    interfaces.push({ link, table, families, ...(collision ? { collision } : {}) });
  }

  const allPrefixes = prefixesByInterface(interfaces);
  const routes: Route[] = [];
  const rules: Rule[] = [];
  for (const plan of interfaces) {
    if (plan.collision) continue;
    for (const familyPlan of plan.families) {
      routes.push(...connectedRoutes(config, plan, familyPlan));
      if (familyPlan.gateway) routes.push(gatewayRoute(config, plan, familyPlan.family, familyPlan.gateway));
      rules.push(...sourceRules(config, plan, familyPlan, allPrefixes, problems));
    }
  }
  const fromRules = dedupeRules(rules);
  const families = new Set(fromRules.map((rule) => rule.family));
  return {
    routes,
    rules: [...fromRules, ...destinationRules(config, mirror, families, allPrefixes)],
    interfaces,
    protectedTables,
    problems,
  };
}

/** Every table a route or a rule uses: what a suggested table id must avoid. */
function usedTables(mirror: MirrorView): Set<number> {
  const used = new Set<number>();
  for (const route of mirror.routes.values()) used.add(route.table);
  for (const { rule } of mirror.rules.values()) used.add(rule.table);
  return used;
}

function usable(address: Address): boolean {
  if (address.family === 4) return address.scope === RT_SCOPE_UNIVERSE || address.scope === RT_SCOPE_SITE;
  return (
    address.scope === RT_SCOPE_UNIVERSE &&
    !isIPv6LinkLocal(address.address) &&
    (address.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED | IFA_F_DEPRECATED)) === 0
  );
}

const addressOrder = new Intl.Collator('en', { numeric: true });

/** Addresses in a stable order: primaries before secondaries, then by address text. */
function byPreference(a: Address, b: Address): number {
  const secondary = (a.flags & IFA_F_SECONDARY) - (b.flags & IFA_F_SECONDARY);
  return secondary || addressOrder.compare(a.address, b.address);
}

function planFamily(config: Config, indexed: Indexed, link: Link, family: Family): FamilyPlan {
  const addresses = (indexed.addressesByLink.get(link.index) ?? [])
    .filter((a) => a.family === family && usable(a))
    .sort(byPreference);
  const configured = Object.hasOwn(config.gateways, link.name)
    ? config.gateways[link.name]![family === 4 ? 'ipv4' : 'ipv6']
    : undefined;
  const gateway = configured
    ? // Written as the kernel will report it, or the route would never compare equal.
      { address: canonicalAddress(configured), source: 'config' as const }
    : learnedGateway(indexed, link.index, family);
  const prefixes = connectedPrefixes(addresses);
  const unreachable = gateway && whyUnreachable(indexed, link, family, prefixes, gateway);
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
  indexed: Indexed,
  link: Link,
  family: Family,
  prefixes: readonly ConnectedPrefix[],
  gateway: Gateway,
): string | undefined {
  if (gateway.onlink || (family === 6 && isIPv6LinkLocal(gateway.address))) return undefined;
  const inside = (network: string, length: number) => networkOf(gateway.address, length) === network;
  if (prefixes.some((prefix) => inside(prefix.network, prefix.length))) return undefined;
  const deviceRoutes = (indexed.mainDeviceRoutesByLink.get(link.index) ?? []).filter(
    // IPv4 looks for a route of link (or host) scope; IPv6 routes have no scope.
    (route) => route.family === family && (family === 6 || route.scope >= RT_SCOPE_LINK),
  );
  if (deviceRoutes.some((route) => inside(networkOf(route.dst, route.dstLength), route.dstLength))) return undefined;
  const where = prefixes.length > 0 ? `in none of its prefixes (${prefixes.map((p) => `${p.network}/${p.length}`).join(', ')})` : 'not in any prefix of it (it has none)';
  return `${where}, nor behind a device route of it in the main table${family === 6 ? ', not link-local' : ''}, and not onlink`;
}

/** The lowest-metric default route via this interface in the main table (DHCP, RA, static). */
function learnedGateway(
  indexed: Indexed,
  ifindex: number,
  family: Family,
): FamilyPlan['gateway'] {
  let best: { address: string; metric: number; onlink?: true } | undefined;
  for (const route of indexed.mainDefaultRoutes) {
    if (route.family !== family) continue;
    const gateway =
      route.oif === ifindex ? route.gateway : route.nexthops?.find((n) => n.ifindex === ifindex)?.gateway;
    if (gateway && (!best || route.metric < best.metric)) {
      // An on-link gateway (a /32 address behind a router outside it) stays on-link in our table.
      best = { address: gateway, metric: route.metric, ...(route.oif === ifindex && route.onlink ? { onlink: true as const } : {}) };
    }
  }
  return best && { address: best.address, source: 'main table', ...(best.onlink ? { onlink: true as const } : {}) };
}

function findCollision(indexed: Indexed, table: number, link: Link, alternatives: () => string): string | undefined {
  const name = (index: number) => indexed.mirror.links.get(index)?.name ?? `#${index}`;
  // Sorted, so the same kernel state always yields the same message (it is logged on change).
  const [foreign] = (indexed.foreignRoutesByTable.get(table) ?? [])
    .map((route) => `${describeRoute(route, name)} proto ${route.protocol}`)
    .sort();
  if (foreign === undefined) return undefined;
  return (
    `${link.name}: table ${table} holds a route symroute does not own (${foreign}); ` +
    `leaving that table alone (pin a free one with ${alternatives()})`
  );
}

export interface ConnectedPrefix {
  readonly network: string;
  readonly length: number;
  readonly source: Address; // the preferred address in the prefix: the route's src
  readonly members: Address[];
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

function gatewayRoute(config: Config, plan: InterfacePlan, family: Family, gateway: NonNullable<FamilyPlan['gateway']>): Route {
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

interface OwnedPrefix {
  readonly family: Family;
  readonly network: string;
  readonly length: number;
  readonly owner: string;
}

/** Every connected prefix with the interface it is on (prefix mode needs them disjoint). */
function prefixesByInterface(interfaces: readonly InterfacePlan[]): OwnedPrefix[] {
  return interfaces.flatMap((plan) =>
    plan.families.flatMap((familyPlan) =>
      familyPlan.prefixes.map((prefix) => ({
        family: familyPlan.family,
        network: prefix.network,
        length: prefix.length,
        owner: plan.link.name,
      })),
    ),
  );
}

/** Other interfaces with a prefix equal to, inside, or around this one. */
function overlappingOwners(prefix: ConnectedPrefix, family: Family, self: string, all: readonly OwnedPrefix[]): string[] {
  const owners = all
    .filter((other) => other.owner !== self && other.family === family)
    .filter((other) => {
      const common = Math.min(other.length, prefix.length);
      return networkOf(other.network, common) === networkOf(prefix.network, common);
    })
    .map((other) => other.owner);
  return [...new Set(owners)];
}

function sourceRules(
  config: Config,
  plan: InterfacePlan,
  familyPlan: FamilyPlan,
  allPrefixes: readonly OwnedPrefix[],
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
  const perAddress = (addresses: readonly Address[]) =>
    addresses.map((address) => rule(address.address, fullLength(family)));
  if (config.rule.match === 'address') return perAddress(familyPlan.addresses);

  const rules: Rule[] = [];
  const covered = new Set<Address>();
  // A point-to-point prefix is the peer's side: replies leave from the local address, which
  // that prefix does not contain, so such addresses keep a rule of their own.
  const local = familyPlan.addresses.filter((address) => !address.peer);
  for (const prefix of connectedPrefixes(local)) {
    prefix.members.forEach((member) => covered.add(member));
    const others = overlappingOwners(prefix, family, plan.link.name, allPrefixes);
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

function dedupeRules(rules: readonly Rule[]): Rule[] {
  const seen = new Set<string>();
  return rules.filter((rule) => {
    const key = `${rule.family}|${rule.src}/${rule.srcLength}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
