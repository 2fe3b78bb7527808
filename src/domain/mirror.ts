// An in-memory copy of the kernel objects symroute reasons about, kept by applying kernel
// events (dump parts and notifications alike, turned into events by the kernel adapter).
// Pure data: no I/O, unit-testable. Indexed the ways the planner and the kernel's own side
// effects look at it, so applying one event costs what that event touches, not what the
// host holds; and journaled, so an incremental planner learns what changed (the kernel's
// silent side effects included) without inferring it from the event.
import type { KernelEvent } from './events.js';
import type { Family } from './ip.js';
import { addressKey, routeKey, routeSlot, ruleKey, type Address, type Link, type Nexthop, type Route, type Rule } from './model.js';
import { RT_TABLE_LOCAL, RT_TABLE_MAIN } from './constants.js';

/** Which main-table routes besides the defaults to keep, given the name of the route's device. */
export type MainRouteFilter = (route: Route, linkName: string | undefined) => boolean;

/** The route with these nexthops; a single one is how the kernel shows a plain route. */
function withNexthops(route: Route, nexthops: readonly Nexthop[]): Route {
  const { nexthops: _nexthops, oif: _oif, gateway: _gateway, ...common } = route;
  if (nexthops.length > 1) return { ...common, nexthops };
  const [only] = nexthops;
  return { ...common, oif: only!.ifindex, ...(only!.gateway ? { gateway: only!.gateway } : {}) };
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
const EMPTY: ReadonlyMap<string, never> = new Map<string, never>();

export interface MirrorView {
  readonly links: ReadonlyMap<number, Link>;
  readonly addresses: ReadonlyMap<string, Address>;
  readonly routes: ReadonlyMap<string, Route>;
  readonly rules: ReadonlyMap<string, CountedRule>;
  /** One link's addresses, by addressKey. */
  addressesOf(ifindex: number): ReadonlyMap<string, Address>;
  /** One table's routes, by routeKey. */
  routesIn(table: number): ReadonlyMap<string, Route>;
  /** Every table that holds a route. */
  tables(): Iterable<number>;
  /** Rules that look up one table, by ruleKey. */
  rulesTo(table: number): ReadonlyMap<string, CountedRule>;
  /** Main-table default routes through a device (multipath ones under each of theirs). */
  mainDefaultsVia(ifindex: number): ReadonlyMap<string, Route>;
  /** Main-table routes of a device other than defaults. */
  mainPrefixRoutesOf(ifindex: number): ReadonlyMap<string, Route>;
  /** How many routes of this protocol and family are mirrored. */
  routeCount(protocol: number, family: Family): number;
  /** How many rules (duplicates each counted) of this protocol and family are mirrored. */
  ruleCount(protocol: number, family: Family): number;
}

/** Adds `value` under `key` in the inner map of `outer` at `at`. */
function indexAdd<A, V>(outer: Map<A, Map<string, V>>, at: A, key: string, value: V): void {
  const inner = outer.get(at);
  if (inner) inner.set(key, value);
  else outer.set(at, new Map([[key, value]]));
}

function indexDelete<A, V>(outer: Map<A, Map<string, V>>, at: A, key: string): void {
  const inner = outer.get(at);
  if (!inner) return;
  inner.delete(key);
  if (inner.size === 0) outer.delete(at);
}

function bump(counts: Map<string, number>, key: string, delta: number): void {
  const count = (counts.get(key) ?? 0) + delta;
  if (count === 0) counts.delete(key);
  else counts.set(key, count);
}

export class Mirror implements MirrorView {
  readonly links = new Map<number, Link>();
  readonly addresses = new Map<string, Address>();
  readonly routes = new Map<string, Route>();
  readonly rules = new Map<string, CountedRule>();
  private readonly addressesByLink = new Map<number, Map<string, Address>>();
  /** How many addresses hold each address text (one may sit on several links). */
  private readonly addressUses = new Map<string, number>();
  private readonly routesByTable = new Map<number, Map<string, Route>>();
  private readonly routesBySlot = new Map<string, Map<string, Route>>();
  private readonly routesByDevice = new Map<number, Map<string, Route>>();
  /** IPv6 routes by their source address: the kernel strikes it when the address goes. */
  private readonly routesBySource = new Map<string, Map<string, Route>>();
  private readonly mainDefaults = new Map<number, Map<string, Route>>();
  private readonly mainPrefixRoutes = new Map<number, Map<string, Route>>();
  private readonly rulesByTable = new Map<number, Map<string, CountedRule>>();
  private readonly routeCounts = new Map<string, number>();
  private readonly ruleCounts = new Map<string, number>();
  private journal: MirrorChanges = noChanges();

  constructor(private readonly keepMainRoute: MainRouteFilter = () => false) {}

  addressesOf(ifindex: number): ReadonlyMap<string, Address> {
    return this.addressesByLink.get(ifindex) ?? EMPTY;
  }

  routesIn(table: number): ReadonlyMap<string, Route> {
    return this.routesByTable.get(table) ?? EMPTY;
  }

  tables(): Iterable<number> {
    return this.routesByTable.keys();
  }

  rulesTo(table: number): ReadonlyMap<string, CountedRule> {
    return this.rulesByTable.get(table) ?? EMPTY;
  }

  mainDefaultsVia(ifindex: number): ReadonlyMap<string, Route> {
    return this.mainDefaults.get(ifindex) ?? EMPTY;
  }

  mainPrefixRoutesOf(ifindex: number): ReadonlyMap<string, Route> {
    return this.mainPrefixRoutes.get(ifindex) ?? EMPTY;
  }

  routeCount(protocol: number, family: Family): number {
    return this.routeCounts.get(`${protocol}|${family}`) ?? 0;
  }

  ruleCount(protocol: number, family: Family): number {
    return this.ruleCounts.get(`${protocol}|${family}`) ?? 0;
  }

  /** What changed since the last call (every object added, changed or removed, before or after). */
  takeChanges(): MirrorChanges {
    const changes = this.journal;
    this.journal = noChanges();
    return changes;
  }

  /**
   * Routes worth keeping: not the local table (the kernel's own), and from the main table
   * default routes (where gateways are learned), routes without a gateway (which say where a
   * gateway is reachable) and what `keepMainRoute` asks for (routes into container plumbing,
   * some via a gateway: Flannel, Cilium); a full BGP table in main costs nothing.
   */
  private mirrored(route: Route): boolean {
    if (route.table === RT_TABLE_LOCAL) return false;
    if (route.table !== RT_TABLE_MAIN || route.dstLength === 0 || (!route.gateway && !route.nexthops)) return true;
    return route.oif !== undefined && this.keepMainRoute(route, this.links.get(route.oif)?.name);
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
        const changed = !before || before.name !== link.name || before.up !== link.up;
        if (changed) this.journal.links.add(link.index);
        return changed;
      }
      case 'address': {
        const address = event.address;
        const key = addressKey(address);
        if (event.op === 'delete') return this.removeAddress(key);
        const before = this.addresses.get(key);
        if (before && before.flags === address.flags && before.scope === address.scope && before.peer === address.peer) {
          this.addresses.set(key, address);
          indexAdd(this.addressesByLink, address.ifindex, key, address);
          return false;
        }
        if (!before) bump(this.addressUses, address.address, 1);
        this.addresses.set(key, address);
        indexAdd(this.addressesByLink, address.ifindex, key, address);
        this.journal.addresses.push(address);
        return true;
      }
      case 'route': {
        const route = event.route;
        if (!this.mirrored(route)) return false;
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
        this.journal.rules.push(rule);
        return true;
      }
    }
  }

  private setRuleCount(rule: Rule, key: string, count: number): void {
    const before = this.rules.get(key)?.count ?? 0;
    bump(this.ruleCounts, `${rule.protocol}|${rule.family}`, count - before);
    if (count === 0) {
      this.rules.delete(key);
      indexDelete(this.rulesByTable, rule.table, key);
      return;
    }
    const counted = { rule, count };
    this.rules.set(key, counted);
    indexAdd(this.rulesByTable, rule.table, key, counted);
  }

  private putRoute(route: Route, key = routeKey(route)): void {
    const before = this.routes.get(key);
    if (before) this.unindexRoute(before, key);
    this.routes.set(key, route);
    indexAdd(this.routesByTable, route.table, key, route);
    indexAdd(this.routesBySlot, routeSlot(route), key, route);
    for (const device of routeDevices(route)) indexAdd(this.routesByDevice, device, key, route);
    if (route.family === 6 && route.prefsrc) indexAdd(this.routesBySource, route.prefsrc, key, route);
    if (route.table === RT_TABLE_MAIN) {
      if (route.dstLength === 0) for (const device of routeDevices(route)) indexAdd(this.mainDefaults, device, key, route);
      else if (route.oif !== undefined) indexAdd(this.mainPrefixRoutes, route.oif, key, route);
    }
    bump(this.routeCounts, `${route.protocol}|${route.family}`, 1);
    this.journal.routes.push(route);
  }

  private removeRoute(key: string): boolean {
    const route = this.routes.get(key);
    if (!route) return false;
    this.routes.delete(key);
    this.unindexRoute(route, key);
    this.journal.routes.push(route);
    return true;
  }

  private unindexRoute(route: Route, key: string): void {
    indexDelete(this.routesByTable, route.table, key);
    indexDelete(this.routesBySlot, routeSlot(route), key);
    for (const device of routeDevices(route)) indexDelete(this.routesByDevice, device, key);
    if (route.family === 6 && route.prefsrc) indexDelete(this.routesBySource, route.prefsrc, key);
    if (route.table === RT_TABLE_MAIN) {
      for (const device of routeDevices(route)) indexDelete(this.mainDefaults, device, key);
      if (route.oif !== undefined) indexDelete(this.mainPrefixRoutes, route.oif, key);
    }
    bump(this.routeCounts, `${route.protocol}|${route.family}`, -1);
  }

  /**
   * Removing an address has effects the kernel does not announce: the last IPv4 address of
   * a device takes every IPv4 route via it; an IPv6 address is struck from the routes that
   * used it as their source.
   */
  private removeAddress(key: string): boolean {
    const address = this.addresses.get(key);
    if (!address) return false;
    this.addresses.delete(key);
    indexDelete(this.addressesByLink, address.ifindex, key);
    bump(this.addressUses, address.address, -1);
    this.journal.addresses.push(address);
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
    if (existed) this.journal.links.add(index);
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
    for (const [key, route] of [...(this.routesBySlot.get(routeSlot(deleted)) ?? EMPTY)]) {
      if (!route.nexthops) continue;
      const rest = route.nexthops.filter((n) => !(n.ifindex === deleted.oif && n.gateway === deleted.gateway));
      if (rest.length === route.nexthops.length) continue;
      this.removeRoute(key);
      if (rest.length > 0) this.putRoute(withNexthops(route, rest));
      return true;
    }
    return false;
  }

  private dropSlot(route: Route): void {
    for (const key of [...(this.routesBySlot.get(routeSlot(route))?.keys() ?? [])]) this.removeRoute(key);
  }
}
