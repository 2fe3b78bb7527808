// The incremental desired state (DesiredState.update from the mirror's journal, and the diff
// within the scope it returns) against planning and diffing everything from nothing, over
// random sequences of kernel changes: the same plan after every step, the same changes, and
// once those are applied, nothing left to do in either.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { defaultConfig, type Config } from '../../src/config/config.js';
import { changesWithin, computeChanges, type Change } from '../../src/domain/diff.js';
import { DesiredState, plan, type Scope } from '../../src/domain/planner.js';
import { isPlumbingRoute } from '../../src/domain/destinations.js';
import { type Route, type Rule } from '../../src/domain/model.js';
import { routeKey, ruleKey } from '../../src/domain/keys.js';
import { IFA_F_DEPRECATED, IFA_F_SECONDARY, RT_SCOPE_LINK } from '../../src/domain/constants.js';
import { NLM_F_CREATE, NLM_F_REPLACE } from '../../src/netlink/constants.js';
import { localRouteOf, MirrorBuilder, PROTO, PROTO_DHCP, PROTO_STATIC, route, rule } from '../support/builders.js';

const IFA_F_PERMANENT = 0x80;
const INDEXES = [2, 3, 4, 5];

type Op =
  | { op: 'link'; index: number; name: string; up: boolean }
  | { op: 'unlink'; index: number }
  | { op: 'address' | 'unaddress'; ifindex: number; cidr: string; flags: number }
  | { op: 'route' | 'unroute' | 'replace'; route: Route }
  | { op: 'rule' | 'unrule'; rule: Rule }
  | { op: 'drift'; pick: number }
  | { op: 'dad'; pick: number; done: boolean }
  | { op: 'bulk' | 'unbulk'; what: 'addresses' | 'pods'; ifindex: number; net: number; count: number };

const index = fc.constantFrom(...INDEXES);
// Few distinct subnets, so that prefixes overlap, addresses repeat across NICs and gateways
// fall in and out of them.
const cidr = fc.oneof(
  fc.record({ net: fc.integer({ min: 0, max: 3 }), host: fc.integer({ min: 1, max: 6 }), length: fc.constantFrom(24, 25, 28, 32) }).map(
    ({ net, host, length }) => `198.18.${net}.${host}/${length}`,
  ),
  fc.record({ net: fc.integer({ min: 0, max: 2 }), host: fc.integer({ min: 1, max: 6 }), length: fc.constantFrom(64, 128) }).map(
    ({ net, host, length }) => `2001:db8:${net}::${host}/${length}`,
  ),
);
const mainRoute = fc.oneof(
  // Defaults, as DHCP and RA leave them, sometimes multipath.
  fc.record({ oif: index, other: index, net: fc.integer({ min: 0, max: 3 }), metric: fc.constantFrom(0, 100, 200), v6: fc.boolean(), multipath: fc.boolean() }).map(
    ({ oif, other, net, metric, v6, multipath }) => {
      const gateway = v6 ? `2001:db8:${net}::1` : `198.18.${net}.1`;
      if (multipath && other !== oif) {
        return route({ family: v6 ? 6 : 4, nexthops: [{ ifindex: oif, gateway }, { ifindex: other, gateway: v6 ? `fe80::${net + 1}` : `198.18.${net}.254` }], metric, protocol: PROTO_DHCP });
      }
      return route({ gateway, oif, metric, protocol: PROTO_DHCP });
    },
  ),
  // Device routes: a gateway outside every subnet made reachable, or a container's prefix.
  fc.record({ oif: index, net: fc.integer({ min: 0, max: 3 }) }).map(({ oif, net }) =>
    route({ dst: `198.18.${net}.1/32`, oif, scope: RT_SCOPE_LINK, protocol: PROTO_STATIC }),
  ),
  fc.record({ oif: index, net: fc.integer({ min: 0, max: 7 }) }).map(({ oif, net }) =>
    route({ dst: `203.0.113.${net * 16}/28`, oif, scope: RT_SCOPE_LINK, protocol: PROTO_STATIC }),
  ),
);
const foreignRoute = fc.record({ table: fc.constantFrom(...INDEXES.map((i) => 1000 + i), 1100, 500) }).map(({ table }) =>
  route({ dst: '203.0.113.0/24', gateway: '198.18.0.1', oif: 2, table, protocol: PROTO_STATIC }),
);
function linkArb(ifindex: fc.Arbitrary<number>): fc.Arbitrary<Op> {
  return fc
    .record({ op: fc.constant('link' as const), index: ifindex, name: fc.constantFrom('eth', 'eth', 'en', 'docker', 'veth'), up: fc.oneof(fc.constant(true), fc.boolean()) })
    .map((o) => ({ ...o, name: `${o.name}${o.index}` }));
}
// Every run starts with the NICs there, most of them managed.
const prologueArb = fc.tuple(...INDEXES.map((i) => linkArb(fc.constant(i))));
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 2, arbitrary: linkArb(index) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('unlink' as const), index }) },
  {
    weight: 6,
    arbitrary: fc.record({
      op: fc.constantFrom('address' as const, 'address' as const, 'unaddress' as const),
      ifindex: index,
      cidr,
      flags: fc.constantFrom(IFA_F_PERMANENT, IFA_F_PERMANENT | IFA_F_SECONDARY, IFA_F_DEPRECATED),
    }),
  },
  { weight: 4, arbitrary: fc.record({ op: fc.constantFrom('route' as const, 'unroute' as const, 'replace' as const), route: mainRoute }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constantFrom('route' as const, 'unroute' as const), route: foreignRoute }) },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constantFrom('rule' as const, 'unrule' as const), from: cidr, table: fc.constantFrom(1002, 1003, 200), protocol: fc.constantFrom(PROTO, PROTO_STATIC) }).map(
      ({ op, from, table, protocol }) => ({ op, rule: rule({ from: from.split('/')[0], table, protocol }) }),
    ),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('drift' as const), pick: fc.nat() }) },
  // An IPv6 address's local route goes (a flap: DAD again) or comes (DAD done).
  { weight: 2, arbitrary: fc.record({ op: fc.constant('dad' as const), pick: fc.nat(), done: fc.boolean() }) },
  // Many at once: enough host addresses, or pod routes, for the rules that skip them, and
  // for the tree of `from` rules (rule-skips.ts).
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constantFrom('bulk' as const, 'bulk' as const, 'unbulk' as const),
      what: fc.constantFrom('addresses' as const, 'pods' as const),
      ifindex: index,
      net: fc.integer({ min: 0, max: 2 }),
      count: fc.oneof(fc.integer({ min: 8, max: 20 }), fc.integer({ min: 40, max: 90 })),
    }),
  },
);

/** The addresses or pod routes of a bulk op: IPv4 for nets 0 and 1, IPv6 for 2. */
function bulkCidrs(op: { net: number; count: number }): string[] {
  return Array.from({ length: op.count }, (_, i) => (op.net < 2 ? `198.19.${op.net}.${i + 1}/32` : `2001:db8:9::${i + 1}/128`));
}
const podRoute = (cidr: string, oif: number): Route => route({ dst: cidr, oif, scope: RT_SCOPE_LINK, protocol: PROTO_STATIC });

const configArb: fc.Arbitrary<Config> = fc
  .record({
    match: fc.constantFrom<'address' | 'prefix'>('address', 'prefix'),
    pinned: fc.boolean(),
    exceptions: fc.boolean(),
    gateway: fc.boolean(),
    containers: fc.boolean(),
  })
  .map(({ match, pinned, exceptions, gateway, containers }) => {
    const c = defaultConfig();
    c.rule.match = match;
    c.containerRoutes = containers;
    c.interfaces.include = ['eth*', 'en*'];
    c.interfaces.exclude = ['docker*', 'veth*'];
    // Pinned tables that collide with each other and with base + ifindex.
    if (pinned) c.table.pinned = { eth3: 1005, en4: 1005, eth5: 1002, en2: 1003 };
    if (exceptions) c.exceptions = ['198.51.100.0/24'];
    if (gateway) c.gateways = { eth2: { ipv4: '198.18.2.1' } };
    return c;
  });

function perform(b: MirrorBuilder, op: Op): void {
  switch (op.op) {
    case 'link':
      return void b.link(op.index, op.name, { up: op.up });
    case 'unlink':
      return void b.delLink(op.index, b.mirror.links.get(op.index)?.name ?? `eth${op.index}`);
    case 'address':
      return void b.address(op);
    case 'unaddress':
      return void b.delAddress(op);
    case 'route':
      return void b.route(op.route, NLM_F_CREATE);
    case 'replace':
      return void b.route(op.route, NLM_F_REPLACE | NLM_F_CREATE);
    case 'unroute':
      return void b.delRoute(op.route);
    case 'rule':
      return void b.rule(op.rule);
    case 'unrule':
      return void b.delRule(op.rule);
    case 'bulk':
    case 'unbulk':
      for (const cidr of bulkCidrs(op)) {
        if (op.what === 'addresses') void (op.op === 'bulk' ? b.address({ ifindex: op.ifindex, cidr, flags: IFA_F_PERMANENT }) : b.delAddress({ ifindex: op.ifindex, cidr, flags: IFA_F_PERMANENT }));
        else void (op.op === 'bulk' ? b.route(podRoute(cidr, op.ifindex), NLM_F_CREATE) : b.delRoute(podRoute(cidr, op.ifindex)));
      }
      return;
    case 'dad': {
      const held = [...b.mirror.addresses.values()].filter((a) => a.family === 6);
      if (held.length === 0) return;
      const address = held[op.pick % held.length]!;
      const local = localRouteOf({ ifindex: address.ifindex, cidr: `${address.address}/${address.prefixLength}` })!;
      return void (op.done ? b.route(local) : b.delRoute(local));
    }
    case 'drift': {
      // Someone deletes one of symroute's routes or rules.
      const owned = [...b.mirror.routes.values()].filter((r) => r.protocol === PROTO);
      const rules = [...b.mirror.rules.values()].filter(({ rule }) => rule.protocol === PROTO).map(({ rule }) => rule);
      const all = owned.length + rules.length;
      if (all === 0) return;
      const k = op.pick % all;
      return void (k < owned.length ? b.delRoute(owned[k]!) : b.delRule(rules[k - owned.length]!));
    }
  }
}

function applyChanges(b: MirrorBuilder, phases: Change[][]): void {
  for (const change of phases.flat()) {
    if (change.kind === 'rule') void (change.op === 'add' ? b.rule(change.rule) : b.delRule(change.rule));
    else if (change.op === 'add') b.route(change.route, NLM_F_CREATE);
    else if (change.op === 'replace') b.route(change.route, NLM_F_REPLACE | NLM_F_CREATE);
    else b.delRoute(change.route);
  }
}

const described = (phases: Change[][]): string[] =>
  phases.flat().map((c) => `${c.op} ${c.kind === 'rule' ? ruleKey(c.rule) : routeKey(c.route)}`).sort();

const merge = (a: Scope, b: Scope): Scope => ({ tables: new Set([...a.tables, ...b.tables]), ruleKeys: new Set([...a.ruleKeys, ...b.ruleKeys]) });

describe('incremental desired state', () => {
  it('equals planning from nothing after every change, and its scoped diff equals the whole diff', () => {
    fc.assert(
      fc.property(configArb, prologueArb, fc.array(fc.array(opArb, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 30 }), (config, prologue, steps) => {
        const b = new MirrorBuilder((r, name) => isPlumbingRoute(config, r, name));
        b.link(1, 'lo', { loopback: true });
        const desired = new DesiredState(config);
        desired.rebuild(b.mirror);
        b.mirror.takeChanges();
        for (const step of [prologue, ...steps]) {
          for (const op of step) perform(b, op);
          let scope = desired.update(b.mirror, b.mirror.takeChanges()).scope;
          const whole = plan(config, b.mirror);
          expect(desired.toPlan()).toEqual(whole);
          const changes = changesWithin(desired, b.mirror, PROTO, scope);
          expect(described(changes)).toEqual(described(computeChanges(whole, b.mirror, PROTO)));
          // The kernel takes the changes; their notifications come back through the journal.
          applyChanges(b, changes);
          scope = merge(scope, desired.update(b.mirror, b.mirror.takeChanges()).scope);
          expect(changesWithin(desired, b.mirror, PROTO, scope)).toEqual([]);
          expect(computeChanges(plan(config, b.mirror), b.mirror, PROTO)).toEqual([]);
        }
      }),
      { numRuns: 300 },
    );
  });
});
