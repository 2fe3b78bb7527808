import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/config.js';
import { computeChanges, type Change } from '../../src/domain/diff.js';
import type { MirrorView } from '../../src/domain/mirror.js';
import { type Route, type Rule } from '../../src/domain/model.js';
import { routeKey, routeSlot, ruleKey } from '../../src/domain/keys.js';
import { NLM_F_CREATE, NLM_F_REPLACE } from '../../src/netlink/constants.js';
import { RT_SCOPE_LINK, RT_SCOPE_UNIVERSE, RTN_UNICAST } from '../../src/domain/constants.js';
import { plan, type Plan } from '../../src/domain/planner.js';
import { MirrorBuilder, PROTO, PROTO_BOOT, PROTO_DHCP, PROTO_STATIC, route, rule } from '../support/builders.js';

const planOf = (parts: Partial<Plan>): Plan => ({
  routes: [],
  rules: [],
  interfaces: [],
  protectedTables: new Set(),
  sharedSubnets: [],
  problems: [],
  ...parts,
});
const connectedRoute = (table: number, dst: string, oif: number, prefsrc: string): Route =>
  route({ dst, table, oif, prefsrc, protocol: PROTO, scope: dst.includes(':') ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK });
const gatewayRoute = (table: number, gateway: string, oif: number): Route => route({ gateway, table, oif, protocol: PROTO });

/** `add route 198.18.1.0/24@1002 dev 2 via -`, compact enough to compare whole phase lists. */
function show(change: Change): string {
  if (change.kind === 'rule') return `${change.op} rule ${change.rule.src ?? 'all'}/${change.rule.srcLength}->${change.rule.table} proto ${change.rule.protocol}`;
  const r = change.route;
  const text = `${r.dst}/${r.dstLength}@${r.table} via ${r.gateway ?? '-'}`;
  return change.op === 'replace' ? `replace route ${change.replaced.dst}/${change.replaced.dstLength}@${change.replaced.table} via ${change.replaced.gateway ?? '-'} => ${text}` : `${change.op} route ${text}`;
}
const shown = (phases: Change[][]) => phases.map((phase) => phase.map(show));

/** Feeds changes back into the mirror as the kernel would announce them. */
function applyToMirror(b: MirrorBuilder, phases: Change[][]): void {
  for (const change of phases.flat()) {
    if (change.kind === 'rule') {
      if (change.op === 'add') b.rule(change.rule);
      else b.delRule(change.rule);
    } else if (change.op === 'add') b.route(change.route, NLM_F_CREATE);
    else if (change.op === 'replace') b.route(change.route, NLM_F_REPLACE | NLM_F_CREATE);
    else b.delRoute(change.route);
  }
}

/** Which of the six phases a change belongs in. */
function phaseOf(change: Change): number {
  if (change.kind === 'rule') return change.op === 'add' ? 2 : 3;
  const viaGateway = change.route.gateway !== undefined;
  if (change.op === 'delete') return viaGateway ? 4 : 5;
  return viaGateway ? 1 : 0;
}

/**
 * Applies the changes to a model of what symroute owns (its protocol, unprotected tables),
 * checking each change is possible there and names only owned objects; returns the result.
 */
function applyToOwnedModel(mirror: MirrorView, p: Plan, phases: Change[][], protocol = PROTO) {
  const owned = (o: { protocol: number; table: number }) => o.protocol === protocol && !p.protectedTables.has(o.table);
  const routes = new Map([...mirror.routes.values()].filter(owned).map((r) => [routeKey(r), r]));
  const rules = new Map([...mirror.rules.values()].filter((c) => owned(c.rule)).map((c) => [ruleKey(c.rule), c.count]));
  let last = -1;
  for (const phase of phases) {
    expect(phase.length).toBeGreaterThan(0);
    const index = phaseOf(phase[0]!);
    expect(index).toBeGreaterThan(last);
    last = index;
    for (const change of phase) {
      expect(phaseOf(change)).toBe(index);
      if (change.kind === 'rule') {
        expect(owned(change.rule)).toBe(true);
        const key = ruleKey(change.rule);
        const count = rules.get(key) ?? 0;
        if (change.op === 'add') rules.set(key, count + 1);
        else {
          expect(count).toBeGreaterThan(0);
          if (count === 1) rules.delete(key);
          else rules.set(key, count - 1);
        }
        continue;
      }
      expect(owned(change.route)).toBe(true);
      const key = routeKey(change.route);
      if (change.op === 'add') {
        expect(routes.has(key)).toBe(false);
        routes.set(key, change.route);
      } else if (change.op === 'replace') {
        expect(owned(change.replaced)).toBe(true);
        expect(routeSlot(change.replaced)).toBe(routeSlot(change.route));
        expect(routes.delete(routeKey(change.replaced))).toBe(true);
        routes.set(key, change.route);
      } else {
        expect(routes.delete(key)).toBe(true);
      }
    }
  }
  return { routes, rules };
}

function expectConverges(mirror: MirrorView, p: Plan, phases: Change[][]): void {
  const after = applyToOwnedModel(mirror, p, phases);
  expect(new Set(after.routes.keys())).toEqual(new Set(p.routes.map(routeKey)));
  expect(Object.fromEntries(after.rules)).toEqual(Object.fromEntries(p.rules.map((r) => [ruleKey(r), 1])));
}

// A managed eth0 (ifindex 2, table 1002) with both families and learned gateways.
function eth0(): MirrorBuilder {
  const b = new MirrorBuilder().nic(2, 'eth0', '198.18.1.2/24', '2001:db8:1::2/64');
  b.route(route({ gateway: '198.18.1.1', oif: 2, metric: 100, protocol: PROTO_DHCP }));
  b.route(route({ gateway: 'fe80::1', oif: 2, metric: 1024, protocol: 9 }));
  return b;
}

describe('computeChanges', () => {
  it('adds everything to an empty table, connected routes, then gateway routes, then rules', () => {
    const b = eth0();
    const p = plan(defaultConfig(), b.mirror);
    const phases = computeChanges(p, b.mirror, PROTO);
    expect(shown(phases)).toEqual([
      ['add route 198.18.1.0/24@1002 via -', 'add route 2001:db8:1::/64@1002 via -'],
      ['add route 0.0.0.0/0@1002 via 198.18.1.1', 'add route ::/0@1002 via fe80::1'],
      ['add rule 198.18.1.2/32->1002 proto 83', 'add rule 2001:db8:1::2/128->1002 proto 83'],
    ]);
    expect(phases[0]![0]).toEqual({ op: 'add', kind: 'route', route: p.routes[0] });
    expect(phases[2]![0]).toEqual({ op: 'add', kind: 'rule', rule: p.rules[0] });
    expectConverges(b.mirror, p, phases);
  });

  it('changes nothing once the kernel holds the plan (and the plan does not move when it does)', () => {
    const b = eth0();
    const first = plan(defaultConfig(), b.mirror);
    applyToMirror(b, computeChanges(first, b.mirror, PROTO));
    const second = plan(defaultConfig(), b.mirror);
    expect(second).toEqual(first);
    expect(computeChanges(second, b.mirror, PROTO)).toEqual([]);
  });

  it('replaces a route whose slot holds a different owned route (a new gateway)', () => {
    const b = eth0();
    applyToMirror(b, computeChanges(plan(defaultConfig(), b.mirror), b.mirror, PROTO));
    const old = gatewayRoute(1002, '198.18.1.1', 2);
    b.delRoute(route({ gateway: '198.18.1.1', oif: 2, metric: 100, protocol: PROTO_DHCP }));
    b.route(route({ gateway: '198.18.1.254', oif: 2, metric: 100, protocol: PROTO_DHCP }));
    const p = plan(defaultConfig(), b.mirror);
    const phases = computeChanges(p, b.mirror, PROTO);
    expect(phases).toEqual([[{ op: 'replace', kind: 'route', route: gatewayRoute(1002, '198.18.1.254', 2), replaced: old }]]);
    applyToMirror(b, phases);
    expect(computeChanges(p, b.mirror, PROTO)).toEqual([]);
  });

  it('replaces a connected route whose source changed, in the connected-route phase', () => {
    const b = new MirrorBuilder();
    const old = connectedRoute(1002, '198.18.1.0/24', 2, '198.18.1.9');
    b.route(old);
    const wanted = connectedRoute(1002, '198.18.1.0/24', 2, '198.18.1.2');
    const phases = computeChanges(planOf({ routes: [wanted] }), b.mirror, PROTO);
    expect(phases).toEqual([[{ op: 'replace', kind: 'route', route: wanted, replaced: old }]]);
  });

  it('deletes owned routes and rules nobody wants: rules first, then gateway routes, then connected routes', () => {
    const b = new MirrorBuilder();
    b.route(connectedRoute(1009, '198.18.9.0/24', 9, '198.18.9.2'));
    b.route(gatewayRoute(1009, '198.18.9.1', 9));
    b.route(route({ gateway: '198.18.9.1', oif: 9, protocol: PROTO, metric: 77 })); // even in main
    b.rule(rule({ from: '198.18.9.2', table: 1009 }));
    expect(shown(computeChanges(planOf({}), b.mirror, PROTO))).toEqual([
      ['delete rule 198.18.9.2/32->1009 proto 83'],
      ['delete route 0.0.0.0/0@1009 via 198.18.9.1', 'delete route 0.0.0.0/0@254 via 198.18.9.1'],
      ['delete route 198.18.9.0/24@1009 via -'],
    ]);
  });

  it('never names a foreign route or rule, even a look-alike of a planned one', () => {
    const b = new MirrorBuilder();
    const wantedRoute = gatewayRoute(1002, '198.18.1.1', 2);
    const wantedRule = rule({ from: '198.18.1.2', table: 1002 });
    b.route({ ...wantedRoute, protocol: PROTO_STATIC, metric: 5 });
    b.route(route({ gateway: '198.18.1.1', oif: 2, protocol: PROTO_DHCP }));
    b.route(route({ dst: '198.18.1.0/24', oif: 2, table: 1099, protocol: PROTO_BOOT }));
    b.rule({ ...wantedRule, protocol: PROTO_STATIC });
    b.rule(rule({ from: '198.18.7.0/24', table: 200, protocol: PROTO_BOOT }));
    b.rule(rule({ from: '198.18.7.0/24', table: 200, protocol: PROTO_BOOT }));
    const p = planOf({ routes: [wantedRoute], rules: [wantedRule] });
    const phases = computeChanges(p, b.mirror, PROTO);
    expect(shown(phases)).toEqual([['add route 0.0.0.0/0@1002 via 198.18.1.1'], ['add rule 198.18.1.2/32->1002 proto 83']]);
    for (const change of phases.flat()) expect((change.kind === 'rule' ? change.rule : change.route).protocol).toBe(PROTO);
  });

  it('uses the protocol it is given', () => {
    const b = new MirrorBuilder();
    b.route(gatewayRoute(1002, '198.18.1.1', 2)); // proto 83: foreign when symroute runs as 99
    b.rule(rule({ from: '198.18.1.2', table: 1002, protocol: 99 }));
    expect(shown(computeChanges(planOf({}), b.mirror, 99))).toEqual([['delete rule 198.18.1.2/32->1002 proto 99']]);
  });

  it('leaves protected tables alone: nothing in them or pointing at them is touched', () => {
    const b = eth0();
    b.route(route({ dst: '203.0.113.0/24', gateway: '198.18.1.254', oif: 2, table: 1002, protocol: PROTO_STATIC }));
    b.route(gatewayRoute(1002, '198.18.1.77', 2)); // ours, but the table is no longer ours to change
    b.rule(rule({ from: '198.18.1.2', table: 1002 }));
    b.rule(rule({ from: '198.18.1.99', table: 1002 }));
    b.rule(rule({ from: '198.18.1.99', table: 1002 }));
    const p = plan(defaultConfig(), b.mirror);
    expect([...p.protectedTables]).toEqual([1002]);
    expect(computeChanges(p, b.mirror, PROTO)).toEqual([]);
  });

  it('reduces duplicate rules to one, one RTM_DELRULE per copy', () => {
    const b = new MirrorBuilder();
    const wanted = rule({ from: '198.18.1.2', table: 1002 });
    const unwanted = rule({ from: '198.18.1.3', table: 1002 });
    for (let i = 0; i < 3; i++) b.rule(wanted);
    for (let i = 0; i < 2; i++) b.rule(unwanted);
    const phases = computeChanges(planOf({ rules: [wanted] }), b.mirror, PROTO);
    expect(phases).toEqual([
      [
        { op: 'delete', kind: 'rule', rule: wanted },
        { op: 'delete', kind: 'rule', rule: wanted },
        { op: 'delete', kind: 'rule', rule: unwanted },
        { op: 'delete', kind: 'rule', rule: unwanted },
      ],
    ]);
    applyToMirror(b, phases);
    expect([...b.mirror.rules.values()]).toEqual([{ rule: wanted, count: 1 }]);
  });

  it('keeps the make-before-break order with all six phases, and leaves out empty ones', () => {
    // eth0 moved from 198.18.9.0/24 (gateway .1) to 198.18.1.0/24 (gateway .1).
    const b = new MirrorBuilder();
    b.route(connectedRoute(1002, '198.18.9.0/24', 2, '198.18.9.2'));
    b.route(route({ dst: '203.0.113.0/24', gateway: '198.18.9.1', oif: 2, table: 1002, protocol: PROTO }));
    b.rule(rule({ from: '198.18.9.2', table: 1002 }));
    const p = planOf({
      routes: [connectedRoute(1002, '198.18.1.0/24', 2, '198.18.1.2'), gatewayRoute(1002, '198.18.1.1', 2)],
      rules: [rule({ from: '198.18.1.2', table: 1002 })],
    });
    const phases = computeChanges(p, b.mirror, PROTO);
    expect(shown(phases)).toEqual([
      ['add route 198.18.1.0/24@1002 via -'],
      ['add route 0.0.0.0/0@1002 via 198.18.1.1'],
      ['add rule 198.18.1.2/32->1002 proto 83'],
      ['delete rule 198.18.9.2/32->1002 proto 83'],
      ['delete route 203.0.113.0/24@1002 via 198.18.9.1'],
      ['delete route 198.18.9.0/24@1002 via -'],
    ]);
    expect(phases.map((phase) => phaseOf(phase[0]!))).toEqual([0, 1, 2, 3, 4, 5]);

    // Only deletions: two phases, no empty ones in front.
    expect(computeChanges(planOf({}), b.mirror, PROTO).map((phase) => phaseOf(phase[0]!))).toEqual([3, 4, 5]);
    expect(computeChanges(planOf({}), new MirrorBuilder().mirror, PROTO)).toEqual([]);
  });
});

// ------------------------------------------------------------------ properties

const TABLES = [1002, 1003, 1004, 200];
const routeArb = (protocol: fc.Arbitrary<number>, tables: readonly number[]): fc.Arbitrary<Route> =>
  fc
    .record({
      v6: fc.boolean(),
      table: fc.constantFrom(...tables),
      dst: fc.integer({ min: 0, max: 2 }),
      metric: fc.constantFrom(0, 100),
      protocol,
      via: fc.integer({ min: 0, max: 2 }),
      oif: fc.constantFrom(2, 3),
      src: fc.boolean(),
    })
    .map(({ v6, table, dst, metric, protocol, via, oif, src }) => {
      const prefix = v6 ? `2001:db8:${dst}::/64` : `198.18.${dst}.0/24`;
      const host = v6 ? `2001:db8:${dst}::2` : `198.18.${dst}.2`;
      return route({
        family: v6 ? 6 : 4,
        table,
        metric,
        protocol,
        oif,
        ...(dst ? { dst: prefix, scope: v6 ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK, ...(src ? { prefsrc: host } : {}) } : {}),
        ...(via || !dst ? { gateway: v6 ? `fe80::${via + 1}` : `198.18.0.${via + 1}` } : {}),
        type: RTN_UNICAST,
      });
    });
const ruleArb = (protocol: fc.Arbitrary<number>, tables: readonly number[]): fc.Arbitrary<Rule> =>
  fc
    .record({
      from: fc.constantFrom('198.18.1.2', '198.18.1.0/24', '198.18.2.2', '2001:db8:1::2', '2001:db8:1::/64'),
      table: fc.constantFrom(...tables),
      protocol,
      priority: fc.constantFrom(30000, 30001),
    })
    .map((spec) => rule(spec));

const anyProtocol = fc.constantFrom(PROTO, PROTO, PROTO, PROTO_STATIC, PROTO_DHCP);

describe('computeChanges properties', () => {
  it('applying the changes leaves exactly the plan in what symroute owns, touching nothing else', () => {
    const arb = fc
      .record({
        protectedTables: fc.subarray(TABLES),
        mirrorRoutes: fc.array(routeArb(anyProtocol, [...TABLES, 254]), { maxLength: 12 }),
        mirrorRules: fc.array(ruleArb(anyProtocol, [...TABLES, 254]), { maxLength: 10 }), // repeats make duplicates
      })
      .chain(({ protectedTables, mirrorRoutes, mirrorRules }) => {
        const free = TABLES.filter((t) => !protectedTables.includes(t));
        return fc.record({
          protectedTables: fc.constant(protectedTables),
          mirrorRoutes: fc.constant(mirrorRoutes),
          mirrorRules: fc.constant(mirrorRules),
          planRoutes: free.length ? fc.uniqueArray(routeArb(fc.constant(PROTO), free), { maxLength: 8, selector: routeSlot }) : fc.constant([]),
          planRules: free.length ? fc.uniqueArray(ruleArb(fc.constant(PROTO), free), { maxLength: 6, selector: ruleKey }) : fc.constant([]),
        });
      });
    fc.assert(
      fc.property(arb, (s) => {
        const b = new MirrorBuilder();
        for (const r of s.mirrorRoutes) b.route(r);
        for (const r of s.mirrorRules) b.rule(r);
        const p = planOf({ routes: s.planRoutes, rules: s.planRules, protectedTables: new Set(s.protectedTables) });
        const phases = computeChanges(p, b.mirror, PROTO);
        expectConverges(b.mirror, p, phases);
        // And the kernel's view, fed back through the mirror, needs nothing more.
        applyToMirror(b, phases);
        expect(computeChanges(p, b.mirror, PROTO)).toEqual([]);
      }),
      { numRuns: 1000 },
    );
  });

  it('real plans from random mirrors converge in one round, and never name a foreign object', () => {
    const arb = fc.record({
      up: fc.tuple(fc.boolean(), fc.boolean()),
      addresses: fc.subarray(['198.18.1.2/24', '198.18.1.3/24', '2001:db8:1::2/64', '198.18.9.9/32', '198.18.2.2/24']),
      addresses3: fc.subarray(['198.18.3.2/24', '2001:db8:3::2/64', '198.18.1.7/24']),
      routes: fc.array(routeArb(anyProtocol, [1002, 1003, 1004, 254, 254]), { maxLength: 10 }),
      rules: fc.array(ruleArb(anyProtocol, [1002, 1003, 1004, 200]), { maxLength: 8 }),
      match: fc.constantFrom<'address' | 'prefix'>('address', 'prefix'),
    });
    fc.assert(
      fc.property(arb, (s) => {
        const b = new MirrorBuilder();
        b.link(2, 'eth0', { up: s.up[0] });
        b.link(3, 'eth1', { up: s.up[1] });
        for (const cidr of s.addresses) b.address({ ifindex: 2, cidr });
        for (const cidr of s.addresses3) b.address({ ifindex: 3, cidr });
        for (const r of s.routes) b.route(r);
        for (const r of s.rules) b.rule(r);
        const c = defaultConfig();
        c.rule.match = s.match;
        const p = plan(c, b.mirror);
        const phases = computeChanges(p, b.mirror, PROTO);
        expectConverges(b.mirror, p, phases);
        applyToMirror(b, phases);
        const again = plan(c, b.mirror);
        expect(again.routes).toEqual(p.routes);
        expect(again.rules).toEqual(p.rules);
        expect(computeChanges(again, b.mirror, PROTO)).toEqual([]);
      }),
      { numRuns: 1000 },
    );
  });
});
