// An in-memory copy of the kernel objects symroute reasons about, kept by applying kernel
// events (dump parts and notifications alike, turned into events by the kernel adapter).
// Pure data: no I/O, unit-testable. Indexed the ways the planner and the kernel's own side
// effects look at it, so applying one event costs what that event touches, not what the
// host holds; and journaled, so an incremental planner learns what changed (the kernel's
// silent side effects included) without inferring it from the event.
import { bump, mapDelete, mapSet } from './collections.js';
import type { KernelEvent } from './events.js';
import { networkOf, type Family } from '../net/ip.js';
import { type Address, type Link, type Nexthop, type Route, type Rule } from './model.js';
import { addressKey, ownerKey, routeKey, routeSlot, ruleKey, type AddressKey, type RouteKey, type RouteSlot, type RuleKey } from './keys.js';
import { RT_SCOPE_LINK, RT_TABLE_LOCAL, RT_TABLE_MAIN, RTN_LOCAL, RTN_UNICAST } from './constants.js';

/** Which main-table routes besides the defaults to keep, given the name of the route's device. */
export type MainRouteFilter = (route: Route, linkName: string | undefined) => boolean;

/** The route with these nexthops; a single one is how the kernel shows a plain route. */
function withNexthops(route: Route, nexthops: readonly Nexthop[]): Route {
  const { nexthops: _nexthops, oif: _oif, gateway: _gateway, ...common } = route;
  if (nexthops.length > 1) return { ...common, nexthops };
  const [only] = nexthops;
  return { ...common, oif: only!.ifindex, ...(only!.gateway ? { gateway: only!.gateway } : {}) };
}

/** A device route's metric, protocol and scope in one number (exact: under 2^48). */
const packDeviceRoute = (route: Route): number => route.metric * 65536 + route.protocol * 256 + route.scope;
const metricOf = (packed: number): number => Math.floor(packed / 65536);

/**
 * The packed routes to one prefix through one device: almost always a single one, kept as
 * the bare number (an array costs ~10 times as much, and 100k of them were most of the
 * memory a full table in main cost).
 */
type PackedRoutes = number | readonly number[];
const packedList = (routes: PackedRoutes): readonly number[] => (typeof routes === 'number' ? [routes] : routes);
const packedRoutes = (list: readonly number[]): PackedRoutes | undefined => (list.length > 1 ? list : list[0]);

/** A canonical IPv4 address as a 32-bit integer: a key that costs no object of its own. */
function ipv4Key(address: string): number {
  let value = 0;
  for (const octet of address.split('.')) value = (value << 8) | Number(octet);
  return value;
}

const ipv4Text = (key: number): string => `${key >>> 24}.${(key >>> 16) & 255}.${(key >>> 8) & 255}.${key & 255}`;

/** `key` with the bits past `length` cleared. */
const ipv4Network = (key: number, length: number): number => (length === 0 ? 0 : (key >>> (32 - length)) << (32 - length));

/** The main-table device route to `dst`/`dstLength` through `oif` that `packed` stands for. */
function deviceRoute(oif: number, dst: string, dstLength: number, packed: number): Route {
  const family = dst.includes(':') ? 6 : 4;
  return { family, table: RT_TABLE_MAIN, dst, dstLength, metric: metricOf(packed), protocol: (packed >> 8) & 0xff, scope: packed & 0xff, type: RTN_UNICAST, oif };
}

/**
 * One device's main-table device routes by prefix: IPv4 ones by prefix length, then by
 * network address as a 32-bit integer (no string and no object per route), IPv6 ones by text.
 */
class DevicePrefixes {
  private readonly ipv4 = new Map<number, Map<number, PackedRoutes>>();
  /** By prefix length, then network text. */
  private readonly ipv6 = new Map<number, Map<string, PackedRoutes>>();

  get size(): number {
    let size = 0;
    for (const byAddress of this.ipv4.values()) size += byAddress.size;
    for (const byNetwork of this.ipv6.values()) size += byNetwork.size;
    return size;
  }

  get(dst: string, length: number): PackedRoutes | undefined {
    return dst.includes(':') ? this.ipv6.get(length)?.get(dst) : this.ipv4.get(length)?.get(ipv4Key(dst));
  }

  set(dst: string, length: number, routes: PackedRoutes): void {
    if (dst.includes(':')) return void mapSet(this.ipv6, length, dst, routes);
    mapSet(this.ipv4, length, ipv4Key(dst), routes);
  }

  delete(dst: string, length: number): void {
    if (dst.includes(':')) return void mapDelete(this.ipv6, length, dst);
    mapDelete(this.ipv4, length, ipv4Key(dst));
  }

  /** Whether a route to a prefix holding `address` is here: one look per prefix length held. */
  covers(family: Family, address: string): boolean {
    if (family === 4) {
      const key = ipv4Key(address);
      for (const [length, byAddress] of this.ipv4) if (byAddress.has(ipv4Network(key, length))) return true;
      return false;
    }
    for (const [length, byNetwork] of this.ipv6) if (byNetwork.has(networkOf(address, length))) return true;
    return false;
  }

  dropFamily(family: Family): void {
    if (family === 4) this.ipv4.clear();
    else this.ipv6.clear();
  }

  *entries(): Generator<[dst: string, length: number, routes: PackedRoutes]> {
    for (const [length, byAddress] of this.ipv4) for (const [key, routes] of byAddress) yield [ipv4Text(key), length, routes];
    for (const [length, byNetwork] of this.ipv6) for (const [network, routes] of byNetwork) yield [network, length, routes];
  }
}

/** A link's name, or `if<index>` for one the mirror does not hold (gone, or not seen yet). */
export function linkName(mirror: MirrorView, ifindex: number): string {
  return mirror.links.get(ifindex)?.name ?? `if${ifindex}`;
}

/** Every device a route goes through: its own, or each of its nexthops'. */
export function routeDevices(route: Route): number[] {
  if (route.nexthops) return route.nexthops.map((n) => n.ifindex);
  return route.oif === undefined ? [] : [route.oif];
}

export interface CountedRule {
  readonly rule: Rule;
  /** The kernel keeps identical rules side by side (a rule added without NLM_F_EXCL). */
  readonly count: number;
}

/** What changed in the mirror since it was last asked: the objects before or after. */
export interface MirrorChanges {
  readonly links: Set<number>;
  readonly addresses: Address[];
  readonly routes: Route[];
  readonly rules: Rule[];
}

const noChanges = (): MirrorChanges => ({ links: new Set(), addresses: [], routes: [], rules: [] });
const EMPTY: ReadonlyMap<never, never> = new Map<never, never>();

export interface MirrorView {
  readonly links: ReadonlyMap<number, Link>;
  readonly addresses: ReadonlyMap<AddressKey, Address>;
  readonly routes: ReadonlyMap<RouteKey, Route>;
  readonly rules: ReadonlyMap<RuleKey, CountedRule>;
  /** One link's addresses, by addressKey. */
  addressesOf(ifindex: number): ReadonlyMap<AddressKey, Address>;
  /** Whether some link of this host holds the address. */
  holdsAddress(address: string): boolean;
  /**
   * Whether the kernel delivers this link's IPv6 address: while its local route is in, from
   * the end of DAD (which starts again, unannounced, when a link with a kept address comes
   * back up). IPv4 addresses are delivered from the moment they are added; not asked here.
   */
  delivers(ifindex: number, address: string): boolean;
  /** One table's routes, by routeKey. */
  routesIn(table: number): ReadonlyMap<RouteKey, Route>;
  /** Every table that holds a route. */
  tables(): Iterable<number>;
  /** Rules that look up one table, by ruleKey. */
  rulesTo(table: number): ReadonlyMap<RuleKey, CountedRule>;
  /** Main-table default routes through a device (multipath ones under each of theirs). */
  mainDefaultsVia(ifindex: number): ReadonlyMap<RouteKey, Route>;
  /**
   * Whether a main-table route through this device, without a gateway, covers `address`
   * (of link or host scope for IPv4): what makes a gateway outside the device's subnets
   * reachable.
   */
  mainDeviceRouteCovers(ifindex: number, family: Family, address: string): boolean;
  /** How many routes of this protocol and family are mirrored. */
  routeCount(protocol: number, family: Family): number;
  /** How many rules (duplicates each counted) of this protocol and family are mirrored. */
  ruleCount(protocol: number, family: Family): number;
}

export class Mirror implements MirrorView {
  readonly links = new Map<number, Link>();
  readonly addresses = new Map<AddressKey, Address>();
  readonly routes = new Map<RouteKey, Route>();
  readonly rules = new Map<RuleKey, CountedRule>();
  private readonly addressesByLink = new Map<number, Map<AddressKey, Address>>();
  /** How many addresses hold each address text (one may sit on several links). */
  private readonly addressUses = new Map<string, number>();
  /** The IPv6 addresses the local table delivers, by device (see delivers()). */
  private readonly localRoutes = new Map<number, Set<string>>();
  private readonly routesByTable = new Map<number, Map<RouteKey, Route>>();
  /** Routes by slot: almost always one each, so a small array rather than a map. */
  private readonly routesBySlot = new Map<RouteSlot, Route[]>();
  private readonly routesByDevice = new Map<number, Map<RouteKey, Route>>();
  /** IPv6 routes by their source address: the kernel strikes it when the address goes. */
  private readonly routesBySource = new Map<string, Map<RouteKey, Route>>();
  private readonly mainDefaults = new Map<number, Map<RouteKey, Route>>();
  /**
   * Main-table device routes (unicast, no gateway) but those `keepMainRoute` wants whole:
   * per device and prefix, each route's metric, protocol and scope packed in one number. A
   * full table of them (a BGP host) would otherwise cost most of the daemon's memory, and
   * only their prefixes are ever looked at.
   */
  private readonly mainDeviceRoutes = new Map<number, DevicePrefixes>();
  private readonly rulesByTable = new Map<number, Map<RuleKey, CountedRule>>();
  /** By ownerKey. */
  private readonly routeCounts = new Map<number, number>();
  private readonly ruleCounts = new Map<number, number>();
  /** Null while not journaling: a mirror being filled by a dump is planned from as a whole. */
  private journal: MirrorChanges | null;

  constructor(
    private readonly keepMainRoute: MainRouteFilter = () => false,
    journaled = true,
  ) {
    this.journal = journaled ? noChanges() : null;
  }

  /** Starts journaling (a mirror made without): what changes from now on is recorded. */
  startJournal(): void {
    this.journal ??= noChanges();
  }

  holdsAddress(address: string): boolean {
    return this.addressUses.has(address);
  }

  delivers(ifindex: number, address: string): boolean {
    return this.localRoutes.get(ifindex)?.has(address) ?? false;
  }

  addressesOf(ifindex: number): ReadonlyMap<AddressKey, Address> {
    return this.addressesByLink.get(ifindex) ?? EMPTY;
  }

  routesIn(table: number): ReadonlyMap<RouteKey, Route> {
    return this.routesByTable.get(table) ?? EMPTY;
  }

  tables(): Iterable<number> {
    return this.routesByTable.keys();
  }

  rulesTo(table: number): ReadonlyMap<RuleKey, CountedRule> {
    return this.rulesByTable.get(table) ?? EMPTY;
  }

  mainDefaultsVia(ifindex: number): ReadonlyMap<RouteKey, Route> {
    return this.mainDefaults.get(ifindex) ?? EMPTY;
  }

  mainDeviceRouteCovers(ifindex: number, family: Family, address: string): boolean {
    return this.mainDeviceRoutes.get(ifindex)?.covers(family, address) ?? false;
  }

  routeCount(protocol: number, family: Family): number {
    return this.routeCounts.get(ownerKey(protocol, family)) ?? 0;
  }

  ruleCount(protocol: number, family: Family): number {
    return this.ruleCounts.get(ownerKey(protocol, family)) ?? 0;
  }

  /** What changed since the last call (every object added, changed or removed, before or after). */
  takeChanges(): MirrorChanges {
    const changes = this.journal ?? noChanges();
    if (this.journal) this.journal = noChanges();
    return changes;
  }

  /**
   * How a route is kept: from the local table (the kernel's own) only as the IPv6 address it
   * delivers (see delivers()); from the main
   * table whole if it is a default (where gateways are learned) or `keepMainRoute` asks for
   * it (routes into container plumbing, some via a gateway: Flannel, Cilium), as a prefix if
   * it is a device route (which says where a gateway is reachable), else not at all (a full
   * BGP table in main costs nothing); whole from every other table.
   */
  private kept(route: Route): 'whole' | 'prefix' | 'delivery' | false {
    if (route.table === RT_TABLE_LOCAL) return route.family === 6 && route.type === RTN_LOCAL && route.oif !== undefined ? 'delivery' : false;
    if (route.table !== RT_TABLE_MAIN || route.dstLength === 0) return 'whole';
    if (route.oif !== undefined && this.keepMainRoute(route, this.links.get(route.oif)?.name)) return 'whole';
    if (route.gateway || route.nexthops || route.oif === undefined || route.type !== RTN_UNICAST) return false;
    // IPv4 finds a gateway only through a route of link or host scope; IPv6 routes have none.
    return route.family === 6 || route.scope >= RT_SCOPE_LINK ? 'prefix' : false;
  }

  /**
   * Applies one event and returns whether anything changed. `replaying` marks notifications
   * held back during a dump and applied over it: a rule they add may already be in the dump,
   * so it must not be counted twice.
   */
  apply(event: KernelEvent, replaying = false): boolean {
    switch (event.kind) {
      case 'link': {
        const link = event.link;
        if (event.op === 'delete') return this.removeLink(link.index);
        const before = this.links.get(link.index);
        this.links.set(link.index, link);
        // The kernel drops IPv4 routes of a device going down without telling anyone.
        if (!link.up && before?.up !== false) this.dropRoutesVia(link.index, 4);
        if (before && before.name !== link.name) this.rekeepMainRoutes(link.index);
        const changed = !before || before.name !== link.name || before.up !== link.up;
        if (changed) this.journal?.links.add(link.index);
        return changed;
      }
      case 'address': {
        const address = event.address;
        const key = addressKey(address);
        if (event.op === 'delete') return this.removeAddress(key);
        const before = this.addresses.get(key);
        if (!before) bump(this.addressUses, address.address, 1);
        this.addresses.set(key, address);
        mapSet(this.addressesByLink, address.ifindex, key, address);
        const changed = !before || before.flags !== address.flags || before.scope !== address.scope || before.peer !== address.peer;
        if (changed) this.journal?.addresses.push(address);
        return changed;
      }
      case 'route': {
        const route = event.route;
        const kept = this.kept(route);
        if (!kept) return false;
        if (kept === 'prefix') return this.applyDeviceRoute(route, event.op);
        if (kept === 'delivery') return this.applyLocalRoute(route.oif!, route.dst, event.op !== 'delete');
        const key = routeKey(route);
        if (event.op === 'delete') return this.removeRoute(key) || this.dropIPv6Nexthop(route);
        // A replace announces only the new route: the one it displaced is gone from its slot.
        // An IPv6 nexthop appended to a route announces the whole multipath route.
        if (event.op === 'replace' || (route.family === 6 && route.nexthops)) this.dropSlot(route);
        const existed = this.routes.has(key);
        this.putRoute(route, key);
        return !existed || event.op === 'replace';
      }
      case 'rule': {
        const rule = event.rule;
        const key = ruleKey(rule);
        const count = this.rules.get(key)?.count ?? 0;
        if (event.op === 'delete') {
          if (count === 0) return false;
          this.setRuleCount(rule, key, count - 1);
        } else {
          if (replaying && count > 0) return false;
          this.setRuleCount(rule, key, count + 1);
        }
        this.journal?.rules.push(rule);
        return true;
      }
    }
  }

  private setRuleCount(rule: Rule, key: RuleKey, count: number): void {
    const before = this.rules.get(key)?.count ?? 0;
    bump(this.ruleCounts, ownerKey(rule.protocol, rule.family), count - before);
    if (count === 0) {
      this.rules.delete(key);
      mapDelete(this.rulesByTable, rule.table, key);
      return;
    }
    const counted = { rule, count };
    this.rules.set(key, counted);
    mapSet(this.rulesByTable, rule.table, key, counted);
  }

  private putRoute(route: Route, key = routeKey(route)): void {
    const before = this.routes.get(key);
    if (before) this.unindexRoute(before, key);
    this.routes.set(key, route);
    mapSet(this.routesByTable, route.table, key, route);
    const slot = routeSlot(route);
    const inSlot = this.routesBySlot.get(slot);
    if (inSlot) inSlot.push(route);
    else this.routesBySlot.set(slot, [route]);
    for (const device of routeDevices(route)) mapSet(this.routesByDevice, device, key, route);
    if (route.family === 6 && route.prefsrc) mapSet(this.routesBySource, route.prefsrc, key, route);
    if (route.table === RT_TABLE_MAIN && route.dstLength === 0) for (const device of routeDevices(route)) mapSet(this.mainDefaults, device, key, route);
    bump(this.routeCounts, ownerKey(route.protocol, route.family), 1);
    this.journal?.routes.push(route);
  }

  private removeRoute(key: RouteKey): boolean {
    const route = this.routes.get(key);
    if (!route) return false;
    this.routes.delete(key);
    this.unindexRoute(route, key);
    this.journal?.routes.push(route);
    return true;
  }

  private unindexRoute(route: Route, key: RouteKey): void {
    mapDelete(this.routesByTable, route.table, key);
    const slot = routeSlot(route);
    const rest = this.routesBySlot.get(slot)?.filter((other) => routeKey(other) !== key) ?? [];
    if (rest.length > 0) this.routesBySlot.set(slot, rest);
    else this.routesBySlot.delete(slot);
    for (const device of routeDevices(route)) mapDelete(this.routesByDevice, device, key);
    if (route.family === 6 && route.prefsrc) mapDelete(this.routesBySource, route.prefsrc, key);
    if (route.table === RT_TABLE_MAIN && route.dstLength === 0) for (const device of routeDevices(route)) mapDelete(this.mainDefaults, device, key);
    bump(this.routeCounts, ownerKey(route.protocol, route.family), -1);
  }

  /**
   * An IPv6 local route (the kernel's, through the address's own device), kept as the
   * address it delivers: journaled as that device's addresses of that text, whose plan
   * depends on it (see delivers()).
   */
  private applyLocalRoute(device: number, address: string, present: boolean): boolean {
    const addresses = this.localRoutes.get(device);
    if (present === (addresses?.has(address) ?? false)) return false;
    if (present) {
      if (addresses) addresses.add(address);
      else this.localRoutes.set(device, new Set([address]));
    } else {
      addresses!.delete(address);
      if (addresses!.size === 0) this.localRoutes.delete(device);
    }
    if (this.journal) for (const held of this.addressesOf(device).values()) if (held.address === address) this.journal.addresses.push(held);
    return true;
  }

  /** A main-table device route kept as its prefix (see mainDeviceRoutes). */
  private applyDeviceRoute(route: Route, op: 'add' | 'replace' | 'delete'): boolean {
    const { dst, dstLength } = route;
    const packed = packDeviceRoute(route);
    const same = (value: number) => value === packed;
    const inSlot = (value: number) => metricOf(value) === route.metric;
    let changed = false;
    if (op === 'replace') {
      // A replace takes over its slot (prefix and metric) whatever device held it; what it
      // displaced is journaled too, since that device's plan may have read it (a gateway it
      // made reachable).
      for (const device of [...this.mainDeviceRoutes.keys()]) {
        if (device === route.oif) continue;
        const held = this.mainDeviceRoutes.get(device)!.get(dst, dstLength);
        for (const value of held === undefined ? [] : packedList(held)) {
          if (inSlot(value)) this.journal?.routes.push(deviceRoute(device, dst, dstLength, value));
        }
        changed = this.dropDeviceRoutes(device, dst, dstLength, inSlot) || changed;
      }
    }
    if (op === 'delete') changed = this.dropDeviceRoutes(route.oif!, dst, dstLength, same) || changed;
    else {
      let prefixes = this.mainDeviceRoutes.get(route.oif!);
      if (!prefixes) this.mainDeviceRoutes.set(route.oif!, (prefixes = new DevicePrefixes()));
      const kept: number[] = [];
      let there = false;
      let displaced = false;
      const before = prefixes.get(dst, dstLength);
      for (const value of before === undefined ? [] : packedList(before)) {
        if (same(value)) there = true;
        else if (op === 'replace' && inSlot(value)) displaced = true;
        else kept.push(value);
      }
      // Unchanged only if the route was there already and nothing else left its slot.
      if (!there || displaced) changed = true;
      kept.push(packed);
      prefixes.set(dst, dstLength, packedRoutes(kept)!);
    }
    if (changed) this.journal?.routes.push(route);
    return changed;
  }

  /** Drops the device routes to `dst`/`dstLength` through `device` that match; true if there were any. */
  private dropDeviceRoutes(device: number, dst: string, dstLength: number, matches: (value: number) => boolean): boolean {
    const prefixes = this.mainDeviceRoutes.get(device);
    const routes = prefixes?.get(dst, dstLength);
    if (routes === undefined) return false;
    const list = packedList(routes);
    const rest = list.filter((value) => !matches(value));
    if (rest.length === list.length) return false;
    const left = packedRoutes(rest);
    if (left !== undefined) prefixes!.set(dst, dstLength, left);
    else prefixes!.delete(dst, dstLength);
    if (prefixes!.size === 0) this.mainDeviceRoutes.delete(device);
    return true;
  }

  /** A renamed device may have become plumbing, or stopped being it: its main routes are kept anew. */
  private rekeepMainRoutes(index: number): void {
    const whole = [...(this.routesByDevice.get(index)?.values() ?? [])].filter((route) => route.table === RT_TABLE_MAIN && route.dstLength > 0);
    const prefixes = [...(this.mainDeviceRoutes.get(index)?.entries() ?? [])].flatMap(([dst, length, routes]) =>
      packedList(routes).map((value) => deviceRoute(index, dst, length, value)),
    );
    for (const route of whole) this.removeRoute(routeKey(route));
    this.mainDeviceRoutes.delete(index);
    for (const route of [...whole, ...prefixes]) this.apply({ kind: 'route', op: 'add', route });
  }

  /**
   * Removing an address has effects the kernel does not announce: the last IPv4 address of
   * a device takes every IPv4 route via it; an IPv6 address is struck from the routes that
   * used it as their source.
   */
  private removeAddress(key: AddressKey): boolean {
    const address = this.addresses.get(key);
    if (!address) return false;
    this.addresses.delete(key);
    mapDelete(this.addressesByLink, address.ifindex, key);
    bump(this.addressUses, address.address, -1);
    this.journal?.addresses.push(address);
    if (address.family === 4) {
      const remaining = this.addressesOf(address.ifindex).values();
      if (![...remaining].some((a) => a.family === 4)) this.dropRoutesVia(address.ifindex, 4);
    } else if (!this.addressUses.has(address.address)) {
      for (const [routeKeyText, route] of [...(this.routesBySource.get(address.address) ?? EMPTY)]) {
        this.removeRoute(routeKeyText);
        const { prefsrc: _prefsrc, ...withoutSource } = route;
        this.putRoute(withoutSource);
      }
    }
    return true;
  }

  private removeLink(index: number): boolean {
    const existed = this.links.delete(index);
    if (existed) this.journal?.links.add(index);
    this.mainDeviceRoutes.delete(index);
    // A device unregistered with net.ipv6.route.skip_notify_on_dev_down takes them silently.
    for (const address of [...(this.localRoutes.get(index) ?? [])]) this.applyLocalRoute(index, address, false);
    for (const key of [...this.addressesOf(index).keys()]) this.removeAddress(key);
    for (const [key, route] of [...(this.routesByDevice.get(index) ?? EMPTY)]) {
      this.removeRoute(key);
      // IPv4 drops the whole multipath route, silently; IPv6 drops only the nexthops
      // through the device, announcing each as a plain route (see dropIPv6Nexthop).
      const rest = route.nexthops?.filter((n) => n.ifindex !== index) ?? [];
      if (route.family === 6 && rest.length > 0) this.putRoute(withNexthops(route, rest));
    }
    return existed;
  }

  /** A device going down takes its IPv4 routes with it; multipath ones lose only when all hops do. */
  private dropRoutesVia(index: number, family: Family): void {
    const prefixes = this.mainDeviceRoutes.get(index);
    prefixes?.dropFamily(family);
    if (prefixes?.size === 0) this.mainDeviceRoutes.delete(index);
    for (const [key, route] of [...(this.routesByDevice.get(index) ?? EMPTY)]) {
      if (route.family !== family) continue;
      const via = route.nexthops ? route.nexthops.every((n) => n.ifindex === index) : route.oif === index;
      if (via) this.removeRoute(key);
    }
  }

  /**
   * The kernel deletes one nexthop of an IPv6 multipath route by announcing it as a plain
   * route (IPv6 multipath routes are siblings inside the kernel): remove it from the route
   * in the same slot that holds it.
   */
  private dropIPv6Nexthop(deleted: Route): boolean {
    if (deleted.family !== 6 || deleted.nexthops || deleted.oif === undefined) return false;
    for (const route of [...(this.routesBySlot.get(routeSlot(deleted)) ?? [])]) {
      if (!route.nexthops) continue;
      const key = routeKey(route);
      const rest = route.nexthops.filter((n) => !(n.ifindex === deleted.oif && n.gateway === deleted.gateway));
      if (rest.length === route.nexthops.length) continue;
      this.removeRoute(key);
      if (rest.length > 0) this.putRoute(withNexthops(route, rest));
      return true;
    }
    return false;
  }

  private dropSlot(route: Route): void {
    for (const existing of [...(this.routesBySlot.get(routeSlot(route)) ?? [])]) this.removeRoute(routeKey(existing));
  }
}
