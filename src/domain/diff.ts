// What must change: the plan against what symroute owns in the mirror, as ordered phases.
// Pure. Only objects carrying symroute's protocol number are ever considered "owned", so
// nothing else can end up in a delete.
import { groupBy, routeKey, routeSlot, ruleKey, type Route, type Rule } from './model.js';
import type { MirrorView } from './mirror.js';
import type { Plan } from './planner.js';

export type Change =
  | { readonly op: 'add'; readonly kind: 'route'; readonly route: Route }
  | { readonly op: 'replace'; readonly kind: 'route'; readonly route: Route; readonly replaced: Route }
  | { readonly op: 'delete'; readonly kind: 'route'; readonly route: Route }
  | { readonly op: 'add' | 'delete'; readonly kind: 'rule'; readonly rule: Rule };

/**
 * Make-before-break order: a table is filled (connected routes first, since the kernel
 * checks a gateway against them) before rules point at it, and rules stop pointing at a
 * table before its routes go. Each phase is sent as one pipelined batch.
 */
export function computeChanges(plan: Plan, mirror: MirrorView, protocol: number): Change[][] {
  const owned = (table: number) => !plan.protectedTables.has(table);
  const ownedRoutes = [...mirror.routes.values()].filter((r) => r.protocol === protocol && owned(r.table));
  const ownedRoutesBySlot = groupBy(ownedRoutes, routeSlot);

  const routeWrites: Change[] = [];
  const kept = new Set<string>();
  for (const route of plan.routes) {
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
  const routeDeletes: Change[] = ownedRoutes
    .filter((route) => !kept.has(routeKey(route)))
    .map((route) => ({ op: 'delete', kind: 'route', route }));

  const desiredRules = new Set(plan.rules.map(ruleKey));
  const ruleAdds: Change[] = [];
  const ruleDeletes: Change[] = [];
  for (const rule of plan.rules) {
    if (!mirror.rules.has(ruleKey(rule))) ruleAdds.push({ op: 'add', kind: 'rule', rule });
  }
  for (const [key, { rule, count }] of mirror.rules) {
    if (rule.protocol !== protocol || !owned(rule.table)) continue;
    // Each RTM_DELRULE removes one copy: drop duplicates down to one, or all if unwanted.
    const extra = desiredRules.has(key) ? count - 1 : count;
    for (let i = 0; i < extra; i++) ruleDeletes.push({ op: 'delete', kind: 'rule', rule });
  }

  const viaGateway = (change: Change) => change.kind === 'route' && change.route.gateway !== undefined;
  return [
    routeWrites.filter((c) => !viaGateway(c)),
    routeWrites.filter(viaGateway),
    ruleAdds,
    ruleDeletes,
    routeDeletes.filter(viaGateway),
    routeDeletes.filter((c) => !viaGateway(c)),
  ].filter((phase) => phase.length > 0);
}
