// What must change: the desired state against what symroute owns in the mirror, as ordered
// phases. Pure. Only objects carrying symroute's protocol number are ever considered
// "owned", so nothing else can end up in a delete. The diff looks at a scope — some tables
// and some rules — so that after a small change it costs what the change touched; with
// every table and rule in scope it is the whole diff.
import { groupBy } from './collections.js';
import type { Route, Rule } from './model.js';
import { routeKey, routeSlot, ruleKey, type ObjectKey, type RouteKey } from './keys.js';
import type { MirrorView } from './mirror.js';
import { kernelIdentity, skipsEverything } from './rule-skips.js';
import { FR_ACT_GOTO } from './constants.js';
import type { DesiredState, Plan, Scope } from './planner.js';

export type Change =
  | { readonly op: 'add'; readonly kind: 'route'; readonly route: Route }
  | { readonly op: 'replace'; readonly kind: 'route'; readonly route: Route; readonly replaced: Route }
  | { readonly op: 'delete'; readonly kind: 'route'; readonly route: Route }
  | { readonly op: 'add' | 'delete'; readonly kind: 'rule'; readonly rule: Rule };

type RuleChange = Extract<Change, { kind: 'rule' }>;

/** The key of what a change is about. */
export const changeKey = (change: Change): ObjectKey => (change.kind === 'route' ? routeKey(change.route) : ruleKey(change.rule));

/** What the diff reads of the desired state. */
type Wanted = Pick<DesiredState, 'routesIn' | 'tables' | 'rules' | 'protectedTables'>;

/** A whole plan, read as the desired state. */
export function desiredOf(plan: Plan): Wanted {
  const routesByTable = groupBy(plan.routes, (route) => route.table);
  return {
    routesIn: (table) => routesByTable.get(table) ?? [],
    tables: () => routesByTable.keys(),
    rules: new Map(plan.rules.map((rule) => [ruleKey(rule), rule])),
    protectedTables: plan.protectedTables,
  };
}

/** Everything: every table planned or holding a route, every rule planned or owned. */
export function wholeScope(desired: Wanted, mirror: MirrorView, protocol: number): Scope {
  const ruleKeys = new Set(desired.rules.keys());
  for (const [key, { rule }] of mirror.rules) if (rule.protocol === protocol) ruleKeys.add(key);
  return { tables: new Set([...desired.tables(), ...mirror.tables()]), ruleKeys };
}

/** The whole diff of a plan (start-up, reloads, the read-only commands). */
export function computeChanges(plan: Plan, mirror: MirrorView, protocol: number): Change[][] {
  const desired = desiredOf(plan);
  return changesWithin(desired, mirror, protocol, wholeScope(desired, mirror, protocol));
}

/**
 * Make-before-break order: a table is filled (connected routes first, since the kernel
 * checks a gateway against them) before rules point at it, and rules stop pointing at a
 * table before its routes go. Each phase is sent as one pipelined batch.
 */
export function changesWithin(desired: Wanted, mirror: MirrorView, protocol: number, scope: Scope): Change[][] {
  const owned = (table: number) => !desired.protectedTables.has(table);
  const routeWrites: Change[] = [];
  const routeDeletes: Change[] = [];
  const ruleKeys = new Set(scope.ruleKeys);
  for (const table of scope.tables) {
    // Rules pointing at a table in scope are in scope: the table may have stopped being
    // protected, or being anyone's.
    for (const [key, { rule }] of mirror.rulesTo(table)) if (rule.protocol === protocol) ruleKeys.add(key);
    if (!owned(table)) continue;
    const ownedRoutes = [...mirror.routesIn(table).values()].filter((r) => r.protocol === protocol);
    const ownedRoutesBySlot = groupBy(ownedRoutes, routeSlot);
    const kept = new Set<RouteKey>();
    for (const route of desired.routesIn(table)) {
      const inSlot = ownedRoutesBySlot.get(routeSlot(route)) ?? [];
      const same = inSlot.find((existing) => routeKey(existing) === routeKey(route));
      if (same) {
        kept.add(routeKey(same));
      } else if (inSlot.length > 0) {
        routeWrites.push({ op: 'replace', kind: 'route', route, replaced: inSlot[0]! });
        kept.add(routeKey(inSlot[0]!));
      } else {
        routeWrites.push({ op: 'add', kind: 'route', route });
      }
    }
    for (const route of ownedRoutes) if (!kept.has(routeKey(route))) routeDeletes.push({ op: 'delete', kind: 'route', route });
  }

  const ruleAdds: RuleChange[] = [];
  const ruleDeletes: RuleChange[] = [];
  for (const key of ruleKeys) {
    const wanted = desired.rules.get(key);
    const counted = mirror.rules.get(key);
    if (wanted && !counted) ruleAdds.push({ op: 'add', kind: 'rule', rule: wanted });
    if (!counted || counted.rule.protocol !== protocol || !owned(counted.rule.table)) continue;
    // Each RTM_DELRULE removes one copy: drop duplicates down to one, or all if unwanted.
    const extra = wanted ? counted.count - 1 : counted.count;
    for (let i = 0; i < extra; i++) ruleDeletes.push({ op: 'delete', kind: 'rule', rule: counted.rule });
  }

  const viaGateway = (change: Change) => change.kind === 'route' && change.route.gateway !== undefined;
  // A catch-all skip sends every packet past a block: in only after the covers that let the
  // block's packets in (and the block itself), out before them.
  const skipsAll = (change: RuleChange) => skipsEverything(change.rule);
  // A goto that only changes its target (a tree's cover sent to another slot) is the same
  // rule to the kernel, which refuses the new one while the old one is there: old out first.
  const isGoto = (change: RuleChange) => change.rule.action === FR_ACT_GOTO;
  const added = new Set(ruleAdds.filter(isGoto).map((c) => kernelIdentity(c.rule)));
  const retargeted = ruleDeletes.filter((c) => isGoto(c) && added.has(kernelIdentity(c.rule)));
  const deletes = retargeted.length === 0 ? ruleDeletes : ruleDeletes.filter((c) => !retargeted.includes(c));
  return [
    routeWrites.filter((c) => !viaGateway(c)),
    routeWrites.filter(viaGateway),
    retargeted,
    [...ruleAdds.filter((c) => !skipsAll(c)), ...ruleAdds.filter(skipsAll)],
    [...deletes.filter(skipsAll), ...deletes.filter((c) => !skipsAll(c))],
    routeDeletes.filter(viaGateway),
    routeDeletes.filter((c) => !viaGateway(c)),
  ].filter((phase) => phase.length > 0);
}
