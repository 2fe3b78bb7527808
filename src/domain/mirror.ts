// An in-memory copy of the kernel objects symroute reasons about, kept by applying kernel
// events (dump parts and notifications alike, turned into events by the kernel adapter).
// Pure data: no I/O, unit-testable.
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

export interface CountedRule {
  readonly rule: Rule;
  /** The kernel keeps identical rules side by side (a rule added without NLM_F_EXCL). */
  readonly count: number;
}

export interface MirrorView {
  readonly links: ReadonlyMap<number, Link>;
  readonly addresses: ReadonlyMap<string, Address>;
  readonly routes: ReadonlyMap<string, Route>;
  readonly rules: ReadonlyMap<string, CountedRule>;
}

export class Mirror implements MirrorView {
  readonly links = new Map<number, Link>();
  readonly addresses = new Map<string, Address>();
  readonly routes = new Map<string, Route>();
  readonly rules = new Map<string, CountedRule>();

  constructor(private readonly keepMainRoute: MainRouteFilter = () => false) {}

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
        return !before || before.name !== link.name || before.up !== link.up;
      }
      case 'address': {
        const address = event.address;
        const key = addressKey(address);
        if (event.op === 'delete') return this.removeAddress(key, address);
        const before = this.addresses.get(key);
        this.addresses.set(key, address);
        return !before || before.flags !== address.flags || before.scope !== address.scope || before.peer !== address.peer;
      }
      case 'route': {
        const route = event.route;
        if (!this.mirrored(route)) return false;
        const key = routeKey(route);
        if (event.op === 'delete') return this.routes.delete(key) || this.dropIPv6Nexthop(route);
        // A replace announces only the new route: the one it displaced is gone from its slot.
        // An IPv6 nexthop appended to a route announces the whole multipath route.
        if (event.op === 'replace' || (route.family === 6 && route.nexthops)) this.dropSlot(route);
        const existed = this.routes.has(key);
        this.routes.set(key, route);
        return !existed || event.op === 'replace';
      }
      case 'rule': {
        const rule = event.rule;
        const key = ruleKey(rule);
        const count = this.rules.get(key)?.count ?? 0;
        if (event.op === 'delete') {
          if (count === 0) return false;
          if (count === 1) this.rules.delete(key);
          else this.rules.set(key, { rule, count: count - 1 });
        } else {
          if (replaying && count > 0) return false;
          this.rules.set(key, { rule, count: count + 1 });
        }
        return true;
      }
    }
  }

  /**
   * Removing an address has effects the kernel does not announce: the last IPv4 address of
   * a device takes every IPv4 route via it; an IPv6 address is struck from the routes that
   * used it as their source.
   */
  private removeAddress(key: string, address: Address): boolean {
    if (!this.addresses.delete(key)) return false;
    const remaining = [...this.addresses.values()];
    if (address.family === 4) {
      if (!remaining.some((a) => a.family === 4 && a.ifindex === address.ifindex)) this.dropRoutesVia(address.ifindex, 4);
    } else if (!remaining.some((a) => a.address === address.address)) {
      for (const [routeKeyText, route] of this.routes) {
        if (route.family !== 6 || route.prefsrc !== address.address) continue;
        this.routes.delete(routeKeyText);
        const { prefsrc: _prefsrc, ...withoutSource } = route;
        this.insert(withoutSource);
      }
    }
    return true;
  }

  private removeLink(index: number): boolean {
    const existed = this.links.delete(index);
    for (const [key, address] of this.addresses) if (address.ifindex === index) this.addresses.delete(key);
    for (const [key, route] of this.routes) {
      if (route.oif === index) this.routes.delete(key);
      else if (route.nexthops?.some((n) => n.ifindex === index)) {
        // IPv4 drops the whole multipath route, silently; IPv6 drops only the nexthops
        // through the device, announcing each as a plain route (see dropIPv6Nexthop).
        this.routes.delete(key);
        const rest = route.nexthops.filter((n) => n.ifindex !== index);
        if (route.family === 6 && rest.length > 0) this.insert(withNexthops(route, rest));
      }
    }
    return existed;
  }

  /** A device going down takes its IPv4 routes with it; multipath ones lose only when all hops do. */
  private dropRoutesVia(index: number, family: Family): void {
    for (const [key, route] of this.routes) {
      if (route.family !== family) continue;
      const via = route.nexthops ? route.nexthops.every((n) => n.ifindex === index) : route.oif === index;
      if (via) this.routes.delete(key);
    }
  }

  /**
   * The kernel deletes one nexthop of an IPv6 multipath route by announcing it as a plain
   * route (IPv6 multipath routes are siblings inside the kernel): remove it from the route
   * in the same slot that holds it.
   */
  private dropIPv6Nexthop(deleted: Route): boolean {
    if (deleted.family !== 6 || deleted.nexthops || deleted.oif === undefined) return false;
    const slot = routeSlot(deleted);
    for (const [key, route] of this.routes) {
      if (!route.nexthops || routeSlot(route) !== slot) continue;
      const rest = route.nexthops.filter((n) => !(n.ifindex === deleted.oif && n.gateway === deleted.gateway));
      if (rest.length === route.nexthops.length) continue;
      this.routes.delete(key);
      if (rest.length > 0) this.insert(withNexthops(route, rest));
      return true;
    }
    return false;
  }

  private insert(route: Route): void {
    this.routes.set(routeKey(route), route);
  }

  private dropSlot(route: Route): void {
    const slot = routeSlot(route);
    for (const [key, existing] of this.routes) if (routeSlot(existing) === slot) this.routes.delete(key);
  }
}
