// Drift is what someone else did to a converged object: an explicit delete of one of its
// rules or routes, or a route replaced in its slot. The kernel's own consequences are not
// (a route of a device going down, a route the kernel drops silently), nor are symroute's
// own writes. The ledger keeps what the kernel last fully matched, the notifications
// symroute's requests will cause, and what drifted since.
import { bump } from '../domain/collections.js';
import { changeKey, type Change } from '../domain/diff.js';
import type { KernelEvent } from '../domain/events.js';
import type { MirrorView } from '../domain/mirror.js';
import { type Route } from '../domain/model.js';
import { routeKey, routeSlot, ruleKey, type ObjectKey, type RouteKey, type RouteSlot, type RuleKey } from '../domain/keys.js';
import type { DesiredState, Scope } from '../domain/planner.js';

type Own = 'write' | 'delete';
/** What the ledger reads of the desired state the kernel matched. */
type Converged = Pick<DesiredState, 'routesIn' | 'tables' | 'rules'>;

export class DriftLedger {
  /**
   * What the kernel fully matched at the last convergence: routes by table (each with its
   * device), route slots, rule keys. Losing one to someone else is drift.
   */
  private convergedRoutes = new Map<number, Map<RouteKey, Route>>();
  private convergedSlots = new Map<RouteSlot, RouteKey>();
  private convergedRules = new Set<RuleKey>();
  /**
   * Notifications symroute's own requests will cause, counted: they are not drift. Entered
   * before the requests go out, since a notification is sent before the ACK and may be read
   * before it.
   */
  private readonly ownWrites = { write: new Map<ObjectKey, number>(), delete: new Map<ObjectKey, number>() };
  /** Converged objects someone else deleted or displaced since: re-adding one is a drift repair. */
  private readonly drifted = new Set<ObjectKey>();
  /** Links seen going down since the last convergence: the kernel deletes their routes itself. */
  private readonly wentDown = new Set<number>();

  /** Notifications read: whichever of them someone else caused to a converged object is drift. */
  observe(events: readonly KernelEvent[], mirror: MirrorView): void {
    for (const event of events) {
      if (event.kind === 'link') {
        if (event.op === 'delete' || !event.link.up) this.wentDown.add(event.link.index);
      } else if (event.kind === 'route') {
        const key = routeKey(event.route);
        if (this.settleOwn(event.op === 'delete' ? 'delete' : 'write', key)) continue;
        if (event.op === 'delete') {
          if (this.convergedRoutes.get(event.route.table)?.has(key) && this.deviceUp(event.route.oif, mirror)) this.drifted.add(key);
        } else if (event.op === 'replace') {
          const displaced = this.convergedSlots.get(routeSlot(event.route));
          if (displaced !== undefined && displaced !== key) this.drifted.add(displaced);
        }
      } else if (event.kind === 'rule') {
        const key = ruleKey(event.rule);
        if (this.settleOwn(event.op === 'delete' ? 'delete' : 'write', key)) continue;
        if (event.op === 'delete' && this.convergedRules.has(key)) this.drifted.add(key);
      }
    }
  }

  /**
   * Notifications were lost and the mirror dumped again: the ledger of our own may never be
   * settled, and what went missing meanwhile is only known from the fresh dump.
   */
  redumped(mirror: MirrorView): void {
    this.ownWrites.write.clear();
    this.ownWrites.delete.clear();
    for (const routes of this.convergedRoutes.values()) {
      for (const [key, route] of routes) if (!mirror.routes.has(key) && this.deviceUp(route.oif, mirror)) this.drifted.add(key);
    }
    for (const key of this.convergedRules) if (!mirror.rules.has(key)) this.drifted.add(key);
  }

  /** A request for this change is about to go out (true), or was refused after all (false). */
  expect(change: Change, sent: boolean): void {
    const writes = this.ownWrites[ownKind(change)];
    const key = changeKey(change);
    // A refusal after a re-dump cleared the ledger has nothing left to take back.
    if (sent || writes.has(key)) bump(writes, key, sent ? 1 : -1);
  }

  /** Whether this change puts back something that drifted (it is no longer counted as drifted). */
  isRepair(change: Change): boolean {
    return change.op !== 'delete' && this.drifted.delete(changeKey(change));
  }

  /** A repair that waits its turn is still drift when the turn comes. */
  stillDrifted(change: Change): void {
    this.drifted.add(changeKey(change));
  }

  /** Whether the object of this change is in place as of the last convergence. */
  holds(change: Change): boolean {
    if (change.kind === 'rule') return this.convergedRules.has(ruleKey(change.rule));
    return this.convergedSlots.get(routeSlot(change.route)) === routeKey(change.route);
  }

  /**
   * The kernel matched the desired state: it becomes what converged, in the tables and rules
   * looked at since the last time (`since`; null: everything). Every notification of our
   * writes was read before the pass that found nothing to do.
   */
  converged(desired: Converged, since: Scope | null): void {
    if (since === null) {
      this.convergedRoutes = new Map();
      this.convergedSlots = new Map();
      this.convergedRules = new Set(desired.rules.keys());
      for (const table of desired.tables()) this.convergeTable(desired, table);
    } else {
      for (const table of since.tables) this.convergeTable(desired, table);
      for (const key of since.ruleKeys) {
        if (desired.rules.has(key)) this.convergedRules.add(key);
        else this.convergedRules.delete(key);
      }
    }
    this.ownWrites.write.clear();
    this.ownWrites.delete.clear();
    this.drifted.clear();
    this.wentDown.clear();
  }

  private convergeTable(desired: Converged, table: number): void {
    for (const route of this.convergedRoutes.get(table)?.values() ?? []) this.convergedSlots.delete(routeSlot(route));
    const routes = desired.routesIn(table);
    if (routes.length === 0) {
      this.convergedRoutes.delete(table);
      return;
    }
    this.convergedRoutes.set(table, new Map(routes.map((route) => [routeKey(route), route])));
    for (const route of routes) this.convergedSlots.set(routeSlot(route), routeKey(route));
  }

  private settleOwn(kind: Own, key: ObjectKey): boolean {
    const writes = this.ownWrites[kind];
    if (!writes.has(key)) return false;
    bump(writes, key, -1);
    return true;
  }

  /** A route of a device that went down or away was removed by the kernel itself. */
  private deviceUp(oif: number | undefined, mirror: MirrorView): boolean {
    return oif === undefined || (!this.wentDown.has(oif) && mirror.links.get(oif)?.up === true);
  }
}

const ownKind = (change: Change): Own => (change.op === 'delete' ? 'delete' : 'write');
