// The desired state: the rules and routes symroute wants in the kernel, a pure function of
// (config, mirror) — the same inputs always give the same plan, whatever event caused it to
// be computed. DesiredState keeps it current at the cost of what changed: the mirror's
// journal says which objects moved, those name the interfaces whose plan depends on them
// (interface-plan.ts), only those are planned again, and the result says which tables and
// rules the diff must look at. `plan()` is the same computation from nothing, for start-up,
// reloads, re-dumps and the read-only commands; the tests hold the two equal.
import type { Config } from '../config/config.js';
import { isManagedName } from './interface-names.js';
import type { Family } from '../net/ip.js';
import type { Link, Route, Rule } from './model.js';
import { PrefixOwners, RuleElection, TableClaims } from './claims.js';
import { bump } from './collections.js';
import { routeKey, ruleKey, type RouteKey, type RuleKey } from './keys.js';
import { freeTableBase, freeTableId } from './collisions.js';
import { destinationRules, isPlumbingRoute } from './destinations.js';
import { routeDevices, type MirrorChanges, type MirrorView } from './mirror.js';
import { interfaceObjects, ownedPrefixes, planInterface, tableOf, type InterfacePlan, type OwnedPrefix } from './interface-plan.js';
import { RT_TABLE_MAIN } from './constants.js';
import { RuleSkips } from './rule-skips.js';

export type { FamilyPlan, Gateway, GatewaySource, InterfacePlan } from './interface-plan.js';

/** The desired state whole, at one moment: what `symroute plan` prints and a one-shot diff reads. */
export interface Plan {
  readonly routes: readonly Route[];
  readonly rules: readonly Rule[];
  readonly interfaces: readonly InterfacePlan[];
  /** Tables holding routes symroute does not own: nothing in them, or pointing at them, is touched. */
  readonly protectedTables: ReadonlySet<number>;
  readonly problems: readonly string[];
  /** Interfaces with an IPv4 prefix equal to, inside or around another's: sorted names. */
  readonly sharedSubnets: readonly string[];
}

/** What the diff must look at again after a change: tables, and rules by ruleKey. */
export interface Scope {
  readonly tables: Set<number>;
  readonly ruleKeys: Set<RuleKey>;
}

/** What one update changed, for the converger's bookkeeping. */
export interface Update {
  readonly scope: Scope;
  /** Problems that were not there before, and those no longer there. */
  readonly raised: string[];
  readonly cleared: string[];
  /** Interfaces that appeared, went, or changed name or table (old and new names). */
  readonly interfaces: Set<string>;
  /** Whether the managed interfaces, their names or tables changed (names.ts writes them). */
  readonly tablesChanged: boolean;
  /** Whether the interfaces sharing an IPv4 subnet with another one changed (sysctl.ts checks them). */
  readonly sharedChanged: boolean;
}

/** One managed interface's share of the desired state. */
/** An interface planned: its plan, a refusal, or nothing (not managed). */
type Planned =
  | { readonly kind: 'planned'; readonly plan: InterfacePlan; readonly prefixes: readonly OwnedPrefix[]; readonly problems: readonly string[] }
  /** Its table is another interface's (a lower ifindex wants it too). */
  | { readonly kind: 'refused'; readonly problem: string }
  | { readonly kind: 'unmanaged' };

interface Part {
  readonly plan: InterfacePlan;
  /** Its routes and candidate `from` rules (none when its table collides). */
  readonly routes: readonly Route[];
  readonly rules: readonly Rule[];
  readonly prefixes: readonly OwnedPrefix[];
  /** What is wrong with its plan, and with its rules (overlapping prefixes). */
  readonly planProblems: readonly string[];
  readonly problems: readonly string[];
}

export function plan(config: Config, mirror: MirrorView): Plan {
  const desired = new DesiredState(config);
  desired.rebuild(mirror);
  return desired.toPlan();
}

export class DesiredState {
  private readonly parts = new Map<number, Part>();
  private readonly byName = new Map<string, number>();
  /** Managed interfaces refused a table another one (lower ifindex) has: why. */
  private readonly refused = new Map<number, string>();
  /** The table each managed interface wants: the lowest index wanting one gets it. */
  private readonly tableClaims = new TableClaims();
  private readonly prefixOwners = new PrefixOwners();
  /** Interfaces sharing an IPv4 subnet with another one, by name. */
  private readonly shared = new Map<number, string>();
  /** Per rule source, the interfaces wanting a rule for it: the lowest index wins. */
  private readonly election = new RuleElection();
  /** Every rule wanted, by ruleKey: the winners, the destination rules and the skip rules. */
  readonly rules = new Map<RuleKey, Rule>();
  private destinationKeys: RuleKey[] = [];
  /** Rules that let a packet skip blocks that cannot match it (rule-skips.ts). */
  private readonly skips: RuleSkips;
  private skipKeys: RuleKey[] = [];
  private readonly routesByTable = new Map<number, readonly Route[]>();
  private readonly protectedSet = new Set<number>();
  /** Interfaces whose table holds someone else's routes: planned again on every update. */
  private readonly collided = new Set<number>();
  /** Main-table routes into excluded plumbing, by routeKey: each prefix gets a destination rule. */
  private readonly plumbing = new Map<RouteKey, Route>();
  private routeTotal = 0;
  private readonly unusable = new Map<Family, number>();

  constructor(readonly config: Config) {
    this.skips = new RuleSkips(config);
  }

  /** Tables holding routes symroute does not own: nothing in them, or pointing at them, is touched. */
  get protectedTables(): ReadonlySet<number> {
    return this.protectedSet;
  }

  routesIn(table: number): readonly Route[] {
    return this.routesByTable.get(table) ?? [];
  }

  /** Tables with planned routes. */
  tables(): Iterable<number> {
    return this.routesByTable.keys();
  }

  get interfaceCount(): number {
    return this.parts.size;
  }

  get routeCount(): number {
    return this.routeTotal;
  }

  /** Interfaces whose gateway of this family the kernel would refuse. */
  unusableGateways(family: Family): number {
    return this.unusable.get(family) ?? 0;
  }

  /** The managed interfaces' plans, in ifindex order, or only those in `only`. */
  interfacePlans(only?: ReadonlySet<number>): InterfacePlan[] {
    const ifindexes = only ? [...only].filter((ifindex) => this.parts.has(ifindex)) : [...this.parts.keys()];
    return ifindexes.sort((a, b) => a - b).map((ifindex) => this.parts.get(ifindex)!.plan);
  }

  interfaceNamed(ifname: string): InterfacePlan | undefined {
    const ifindex = this.byName.get(ifname);
    return ifindex === undefined ? undefined : this.parts.get(ifindex)?.plan;
  }

  /** Plans everything from nothing. */
  rebuild(mirror: MirrorView): Update {
    const dirty = new Set([...mirror.links.keys(), ...this.parts.keys(), ...this.refused.keys(), ...this.tableClaims.interfaces()]);
    this.plumbing.clear();
    for (const [key, route] of mirror.routesIn(RT_TABLE_MAIN)) if (this.isPlumbing(mirror, route)) this.plumbing.set(key, route);
    return this.replan(mirror, dirty, emptyScope(), true);
  }

  /** Plans again what `changes` (the mirror's journal since the last update) can affect. */
  update(mirror: MirrorView, changes: MirrorChanges): Update {
    const scope = emptyScope();
    const dirty = new Set<number>(changes.links);
    let destinations = false;
    for (const address of changes.addresses) dirty.add(address.ifindex);
    for (const route of changes.routes) {
      if (route.protocol === this.config.protocol) scope.tables.add(route.table);
      else if (route.table === RT_TABLE_MAIN) {
        // Defaults carry the learned gateways; device routes make gateways reachable.
        for (const device of routeDevices(route)) dirty.add(device);
        destinations = this.notePlumbing(mirror, routeKey(route), route) || destinations;
      } else {
        for (const claimant of this.tableClaims.claimantsOf(route.table)) dirty.add(claimant);
      }
    }
    for (const rule of changes.rules) if (rule.protocol === this.config.protocol) scope.ruleKeys.add(ruleKey(rule));
    // A collision's advice (a free table) reads the whole mirror: keep it current.
    for (const ifindex of this.collided) dirty.add(ifindex);
    return this.replan(mirror, dirty, scope, destinations);
  }

  /** The whole desired state, interfaces in index order. */
  toPlan(): Plan {
    const order = [...new Set([...this.parts.keys(), ...this.refused.keys()])].sort((a, b) => a - b);
    const parts = order.map((ifindex) => this.parts.get(ifindex)).filter((part) => part !== undefined);
    const destinations = this.destinationKeys.map((key) => this.rules.get(key)!);
    const skips = this.skipKeys.map((key) => this.rules.get(key)!);
    return {
      routes: parts.flatMap((part) => part.routes),
      rules: [...parts.flatMap((part) => part.rules.filter((rule) => this.election.won(rule)).map((rule) => this.skips.placed(rule))), ...destinations, ...skips],
      interfaces: parts.map((part) => part.plan),
      protectedTables: new Set(this.protectedTables),
      problems: order.flatMap((ifindex) => this.problemsOf(ifindex)),
      sharedSubnets: this.sharedSubnetInterfaces(),
    };
  }

  private problemsOf(ifindex: number): readonly string[] {
    const refusal = this.refused.get(ifindex);
    return refusal !== undefined ? [refusal] : (this.parts.get(ifindex)?.problems ?? []);
  }

  private isPlumbing(mirror: MirrorView, route: Route): boolean {
    return route.oif !== undefined && isPlumbingRoute(this.config, route, mirror.links.get(route.oif)?.name);
  }

  /** Records whether a main route is plumbing now; true if that changed anything. */
  private notePlumbing(mirror: MirrorView, key: RouteKey, route: Route): boolean {
    const was = this.plumbing.delete(key);
    const is = mirror.routes.has(key) && this.isPlumbing(mirror, route);
    if (is) this.plumbing.set(key, route);
    return was || is;
  }

  private replan(mirror: MirrorView, dirty: Set<number>, scope: Scope, destinationsDirty: boolean): Update {
    this.claimTables(mirror, dirty);
    const planned = this.planInterfaces(mirror, dirty);
    const prefixes = this.reindexPrefixes(planned);
    const swapped = this.swapParts(mirror, planned, scope);
    const familiesBefore = [...this.election.winningFamilies()].sort().join();
    const elections = this.election.elect();
    // The winners are wanted where the skips lay them out (updateSkips).
    for (const { lost, won } of elections) {
      if (lost) this.skips.deleteSource(lost);
      if (won) this.skips.addSource(won);
    }
    const familiesChanged = [...this.election.winningFamilies()].sort().join() !== familiesBefore;
    const destinationsChanged = destinationsDirty || familiesChanged || (prefixes.changed && this.wantsDestinations());
    if (destinationsChanged) this.updateDestinations(scope);
    if (destinationsChanged || elections.length > 0) this.updateSkips(scope);
    let sharedChanged = false;
    for (const ifindex of prefixes.sharing) sharedChanged = this.checkShared(ifindex) || sharedChanged;
    return { scope, ...swapped, sharedChanged };
  }

  /**
   * Who wants which table first: a change of one interface's table can hand a pinned table
   * to, or take it from, another one, which is then planned again too.
   */
  private claimTables(mirror: MirrorView, dirty: Set<number>): void {
    const claimed = [...dirty];
    for (let i = 0; i < claimed.length; i++) {
      const ifindex = claimed[i]!;
      const link = mirror.links.get(ifindex);
      const table = link && this.isManaged(link) ? tableOf(this.config, link) : undefined;
      for (const other of this.tableClaims.claim(ifindex, table)) if (!dirty.has(other)) (dirty.add(other), claimed.push(other));
    }
  }

  /** Each dirty interface's own plan, or why it has none. */
  private planInterfaces(mirror: MirrorView, dirty: Set<number>): Map<number, Planned> {
    const planned = new Map<number, Planned>();
    for (const ifindex of dirty) {
      const table = this.tableClaims.tableOf(ifindex);
      const link = mirror.links.get(ifindex);
      if (table === undefined || !link) {
        planned.set(ifindex, { kind: 'unmanaged' });
        continue;
      }
      const owner = this.tableClaims.owner(table);
      if (owner !== ifindex) {
        const ownerName = mirror.links.get(owner)?.name ?? `#${owner}`;
        planned.set(ifindex, { kind: 'refused', problem: `${link.name}: table ${table} is already used by ${ownerName}; ${link.name} is not managed` });
        continue;
      }
      const { plan, problems } = planInterface(this.config, mirror, link, table, () => this.alternatives(mirror, link));
      planned.set(ifindex, { kind: 'planned', plan, prefixes: ownedPrefixes(plan), problems });
    }
    return planned;
  }

  /**
   * Indexes the planned interfaces' prefixes before any rule is made from them. In prefix
   * mode, whether a prefix rule is possible depends on the others' prefixes: those whose
   * prefixes overlap a changed one are planned again (added to `planned`).
   */
  private reindexPrefixes(planned: Map<number, Planned>): { changed: boolean; sharing: Set<number> } {
    let changed = false;
    const overlapped = new Set<number>();
    const sharing = new Set<number>();
    for (const [ifindex, result] of planned) {
      const before = this.parts.get(ifindex)?.prefixes ?? [];
      const after = result.kind === 'planned' ? result.prefixes : [];
      if (samePrefixes(before, after)) continue;
      changed = true;
      for (const prefix of before) this.prefixOwners.delete(prefix, ifindex);
      for (const prefix of after) this.prefixOwners.add(prefix, ifindex);
      sharing.add(ifindex);
      for (const prefix of [...before, ...after]) {
        const others = this.prefixOwners.overlapping(prefix);
        if (prefix.family === 4) for (const other of others) sharing.add(other);
        if (this.config.rule.match === 'prefix') for (const other of others) overlapped.add(other);
      }
    }
    for (const ifindex of overlapped) {
      if (planned.has(ifindex)) continue;
      const part = this.parts.get(ifindex);
      if (part) planned.set(ifindex, { kind: 'planned', plan: part.plan, prefixes: part.prefixes, problems: part.planProblems });
    }
    return { changed, sharing };
  }

  /**
   * Every old part goes before any new one comes: two of them may share a table (one
   * refused it, the other got it), in either order.
   */
  private swapParts(mirror: MirrorView, planned: Map<number, Planned>, scope: Scope): Pick<Update, 'raised' | 'cleared' | 'interfaces' | 'tablesChanged'> {
    const swaps: { ifindex: number; old: Part | undefined; part: Part | undefined; oldProblems: readonly string[] }[] = [];
    for (const [ifindex, result] of planned) {
      const old = this.parts.get(ifindex);
      const oldProblems = this.problemsOf(ifindex);
      let part: Part | undefined;
      this.refused.delete(ifindex);
      if (result.kind === 'refused') this.refused.set(ifindex, result.problem);
      else if (result.kind === 'planned') {
        const objects = result.plan.collision
          ? { routes: [], rules: [], problems: [] }
          : interfaceObjects(this.config, result.plan, (prefix) => this.overlappingNames(mirror, prefix, ifindex));
        part = {
          plan: result.plan,
          routes: keepEqual(old?.routes, objects.routes, routeKey),
          rules: keepEqual(old?.rules, objects.rules, ruleKey),
          prefixes: result.prefixes,
          planProblems: result.problems,
          problems: [...result.problems, ...objects.problems],
        };
      }
      if (old) this.removePart(ifindex, old, scope);
      swaps.push({ ifindex, old, part, oldProblems });
    }
    const raised: string[] = [];
    const cleared: string[] = [];
    const interfaces = new Set<string>();
    let tablesChanged = false;
    for (const { ifindex, old, part, oldProblems } of swaps) {
      if (part) this.addPart(ifindex, part, scope);
      const problems = this.problemsOf(ifindex);
      for (const problem of problems) if (!oldProblems.includes(problem)) raised.push(problem);
      for (const problem of oldProblems) if (!problems.includes(problem)) cleared.push(problem);
      if (old?.plan.link.name !== part?.plan.link.name || old?.plan.table !== part?.plan.table) tablesChanged = true;
      if (old && !samePart(old, part)) interfaces.add(old.plan.link.name);
      if (part && !samePart(part, old)) interfaces.add(part.plan.link.name);
    }
    return { raised, cleared, interfaces, tablesChanged };
  }

  /** Whether an interface shares an IPv4 subnet now; true if that (or its name) changed. */
  private checkShared(ifindex: number): boolean {
    const part = this.parts.get(ifindex);
    const sharing = part?.prefixes.some((prefix) => prefix.family === 4 && [...this.prefixOwners.overlapping(prefix)].some((other) => other !== ifindex));
    const before = this.shared.get(ifindex);
    if (!sharing) return this.shared.delete(ifindex);
    this.shared.set(ifindex, part!.plan.link.name);
    return before !== part!.plan.link.name;
  }

  /** Interfaces with an IPv4 prefix equal to, inside or around another's: sorted names. */
  sharedSubnetInterfaces(): string[] {
    return [...this.shared.values()].sort();
  }

  private isManaged(link: Link): boolean {
    return link.up && !link.loopback && isManagedName(this.config, link.name);
  }

  private removePart(ifindex: number, old: Part, scope: Scope): void {
    scope.tables.add(old.plan.table);
    this.routesByTable.delete(old.plan.table);
    this.protectedSet.delete(old.plan.table);
    this.collided.delete(ifindex);
    this.routeTotal -= old.routes.length;
    for (const family of old.plan.families) if (family.unusableGateway) bump(this.unusable, family.family, -1);
    this.election.withdraw(ifindex, old.rules);
    this.parts.delete(ifindex);
    if (this.byName.get(old.plan.link.name) === ifindex) this.byName.delete(old.plan.link.name);
  }

  private addPart(ifindex: number, part: Part, scope: Scope): void {
    const table = part.plan.table;
    scope.tables.add(table);
    if (part.plan.collision) {
      this.protectedSet.add(table);
      this.collided.add(ifindex);
    }
    if (part.routes.length > 0) this.routesByTable.set(table, part.routes);
    this.routeTotal += part.routes.length;
    for (const family of part.plan.families) if (family.unusableGateway) bump(this.unusable, family.family, 1);
    this.election.claim(ifindex, part.rules);
    this.parts.set(ifindex, part);
    this.byName.set(part.plan.link.name, ifindex);
  }

  private want(key: RuleKey, rule: Rule, scope: Scope): void {
    this.rules.set(key, rule);
    scope.ruleKeys.add(key);
  }

  private unwant(key: RuleKey, scope: Scope): void {
    this.rules.delete(key);
    scope.ruleKeys.add(key);
  }

  private wantsDestinations(): boolean {
    return this.config.exceptions.length > 0 || this.plumbing.size > 0 || this.destinationKeys.length > 0;
  }

  private updateDestinations(scope: Scope): void {
    const prefixes = [...this.parts.values()].flatMap((part) => part.prefixes);
    const wanted = destinationRules(this.config, this.plumbing.values(), this.election.winningFamilies(), prefixes);
    const keys = wanted.map(ruleKey);
    for (const key of this.destinationKeys) {
      this.rules.delete(key);
      scope.ruleKeys.add(key);
    }
    wanted.forEach((rule, i) => {
      this.rules.set(keys[i]!, rule);
      scope.ruleKeys.add(keys[i]!);
    });
    this.destinationKeys = keys;
    this.skips.setDestinations(wanted);
  }

  /** The elected `from` rules where the skips lay them out now, and the skip rules: what changed. */
  private updateSkips(scope: Scope): void {
    const layout = this.skips.layout();
    for (const rule of layout.removed) this.unwant(ruleKey(rule), scope);
    for (const rule of layout.added) this.want(ruleKey(rule), rule, scope);
    const keys = layout.skips.map(ruleKey);
    const wanted = new Set(keys);
    for (const key of this.skipKeys) if (!wanted.has(key)) this.unwant(key, scope);
    const before = new Set(this.skipKeys);
    layout.skips.forEach((rule, i) => {
      if (!before.has(keys[i]!)) this.want(keys[i]!, rule, scope);
    });
    this.skipKeys = keys;
  }

  private overlappingNames(mirror: MirrorView, prefix: OwnedPrefix, self: number): string[] {
    const owners = [...this.prefixOwners.overlapping(prefix)].filter((ifindex) => ifindex !== self);
    return [...new Set(owners.map((ifindex) => mirror.links.get(ifindex)?.name ?? `#${ifindex}`))].sort();
  }

  /** `table.pinned.<name>: <free id>, or move every table with table.base: <free base>`. */
  private alternatives(mirror: MirrorView, link: Link): string {
    const ifindexes = [...this.tableClaims.interfaces()];
    const used = new Set<number>(mirror.tables());
    for (const { rule } of mirror.rules.values()) used.add(rule.table);
    const foreign = new Set([...mirror.tables()].filter((table) => [...mirror.routesIn(table).values()].some((r) => r.protocol !== this.config.protocol)));
    const id = freeTableId(this.config, ifindexes, used);
    const base = freeTableBase(this.config, ifindexes, foreign);
    return `table.pinned.${link.name}: ${id}${base === undefined ? '' : `, or move every table with table.base: ${base}`}`;
  }
}

export const emptyScope = (): Scope => ({ tables: new Set(), ruleKeys: new Set() });

/** Adds `scope` to `into`. */
export function addScope(into: Scope, scope: Scope): Scope {
  for (const table of scope.tables) into.tables.add(table);
  for (const key of scope.ruleKeys) into.ruleKeys.add(key);
  return into;
}
/**
 * `fresh`, each object equal (by key) to one of `old` replaced by that one: what an
 * interface still wants keeps its identity when the interface is planned again, and with it
 * its election (a rule elected again would move the tree of `from` rules) and its key.
 */
function keepEqual<T extends object>(old: readonly T[] | undefined, fresh: readonly T[], key: (object: T) => string): readonly T[] {
  if (!old || old.length === 0) return fresh;
  const byKey = new Map(old.map((object) => [key(object), object]));
  return fresh.map((object) => byKey.get(key(object)) ?? object);
}

/** Owners included: messages about overlapping prefixes name the other interface. */
function samePrefixes(a: readonly OwnedPrefix[], b: readonly OwnedPrefix[]): boolean {
  return a.length === b.length && a.every((p, i) => p.owner === b[i]!.owner && p.family === b[i]!.family && p.network === b[i]!.network && p.length === b[i]!.length);
}

/** Whether a part is the same interface under the same name with the same table. */
function samePart(a: Part, b: Part | undefined): boolean {
  return b !== undefined && a.plan.link.name === b.plan.link.name && a.plan.table === b.plan.table;
}
