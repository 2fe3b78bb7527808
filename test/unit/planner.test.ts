import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { defaultConfig, type Config } from '../../src/config/config.js';
import { networkOf, type Family } from '../../src/net/ip.js';
import { type Route, type Rule } from '../../src/domain/model.js';
import { routeSlot, ruleKey } from '../../src/domain/keys.js';
import { FR_ACT_TO_TBL, IFA_F_DADFAILED, IFA_F_DEPRECATED, IFA_F_SECONDARY, IFA_F_TENTATIVE, RT_SCOPE_HOST, RT_SCOPE_LINK, RT_SCOPE_SITE, RT_SCOPE_UNIVERSE, RTN_UNICAST } from '../../src/domain/constants.js';
import { DesiredState, plan, type Plan } from '../../src/domain/planner.js';
import { localRouteOf, MirrorBuilder, PROTO, PROTO_BOOT, PROTO_DHCP, PROTO_STATIC, route } from '../support/builders.js';

const PROTO_RA = 9;
const IFA_F_PERMANENT = 0x80;
const IFA_F_OPTIMISTIC = 0x04;
const RTN_BLACKHOLE = 6;

const config = (patch: (c: Config) => void = () => {}): Config => {
  const c = defaultConfig();
  patch(c);
  return c;
};
const prefixMode = config((c) => (c.rule.match = 'prefix'));

/** The connected route symroute plans for a prefix. */
const connected = (table: number, cidr: string, oif: number, prefsrc: string): Route => {
  const [dst, length] = cidr.split('/') as [string, string];
  const family: Family = dst.includes(':') ? 6 : 4;
  return {
    family, table, dst, dstLength: Number(length), metric: family === 4 ? 0 : 1024, protocol: PROTO,
    scope: family === 4 ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE, type: RTN_UNICAST, oif, prefsrc,
  };
};
/** The default route symroute plans for a gateway. */
const viaGateway = (table: number, gateway: string, oif: number): Route => {
  const family: Family = gateway.includes(':') ? 6 : 4;
  return {
    family, table, dst: family === 4 ? '0.0.0.0' : '::', dstLength: 0, metric: family === 4 ? 0 : 1024,
    protocol: PROTO, scope: RT_SCOPE_UNIVERSE, type: RTN_UNICAST, oif, gateway,
  };
};
/** The source rule symroute plans. */
const from = (cidr: string, table: number): Rule => {
  const [src, length] = cidr.split('/') as [string, string | undefined];
  const family: Family = src.includes(':') ? 6 : 4;
  return {
    family, priority: 30000, table, action: FR_ACT_TO_TBL, protocol: PROTO, src,
    srcLength: Number(length ?? (family === 4 ? 32 : 128)), dstLength: 0, tos: 0,
  };
};
const tablesOf = (p: Plan) => new Set([...p.routes.map((r) => r.table), ...p.rules.map((r) => r.table)]);
const covers = (r: Rule, address: string) => r.src !== undefined && networkOf(address, r.srcLength) === networkOf(r.src, r.srcLength) && (address.includes(':') ? 6 : 4) === r.family;

describe('one table per managed interface, both families', () => {
  it('plans connected routes, the gateway route and source rules for each address', () => {
    const b = new MirrorBuilder().nic(2, 'eth0', '198.18.1.2/24', '2001:db8:1::2/64');
    b.route(route({ gateway: '198.18.1.1', oif: 2, metric: 100, protocol: PROTO_DHCP }));
    b.route(route({ gateway: 'fe80::1', oif: 2, metric: 1024, protocol: PROTO_RA }));
    b.route(route({ dst: '198.18.1.0/24', oif: 2, scope: RT_SCOPE_LINK, protocol: 2, prefsrc: '198.18.1.2' }));
    const p = plan(defaultConfig(), b.mirror);
    expect(p.problems).toEqual([]);
    expect(p.protectedTables.size).toBe(0);
    expect(p.routes).toEqual([
      connected(1002, '198.18.1.0/24', 2, '198.18.1.2'),
      viaGateway(1002, '198.18.1.1', 2),
      connected(1002, '2001:db8:1::/64', 2, '2001:db8:1::2'),
      viaGateway(1002, 'fe80::1', 2),
    ]);
    expect(p.rules).toEqual([from('198.18.1.2', 1002), from('2001:db8:1::2', 1002)]);
    const v4 = { family: 4, ifindex: 2, address: '198.18.1.2', prefixLength: 24, scope: 0, flags: IFA_F_PERMANENT };
    const v6 = { family: 6, ifindex: 2, address: '2001:db8:1::2', prefixLength: 64, scope: 0, flags: IFA_F_PERMANENT };
    expect(p.interfaces).toEqual([
      {
        link: { index: 2, name: 'eth0', up: true, loopback: false },
        table: 1002,
        families: [
          {
            family: 4,
            addresses: [v4],
            prefixes: [{ network: '198.18.1.0', length: 24, source: v4, members: [v4] }],
            gateway: { address: '198.18.1.1', source: 'main table' },
          },
          {
            family: 6,
            addresses: [v6],
            prefixes: [{ network: '2001:db8:1::', length: 64, source: v6, members: [v6] }],
            gateway: { address: 'fe80::1', source: 'main table' },
          },
        ],
      },
    ]);
  });

  it('gives each interface base + ifindex, in ifindex order whatever order they were seen in', () => {
    const b = new MirrorBuilder().nic(7, 'eth2', '198.18.3.2/24').nic(2, 'eth0', '198.18.1.2/24').nic(4, 'eth1', '198.18.2.2/24');
    const p = plan(config((c) => (c.table.base = 5000)), b.mirror);
    expect(p.interfaces.map((i) => [i.link.name, i.table])).toEqual([['eth0', 5002], ['eth1', 5004], ['eth2', 5007]]);
    expect(p.rules).toEqual([from('198.18.1.2', 5002), from('198.18.2.2', 5004), from('198.18.3.2', 5007)]);
  });

  it('uses a pinned table instead of base + ifindex', () => {
    const b = new MirrorBuilder().nic(2, 'eth0', '198.18.1.2/24').nic(3, 'eth1', '198.18.2.2/24');
    const p = plan(config((c) => (c.table.pinned = { eth1: 70000 })), b.mirror);
    expect(p.interfaces.map((i) => i.table)).toEqual([1002, 70000]);
    expect(p.routes).toEqual([connected(1002, '198.18.1.0/24', 2, '198.18.1.2'), connected(70000, '198.18.2.0/24', 3, '198.18.2.2')]);
    expect(p.rules.map((r) => r.table)).toEqual([1002, 70000]);
  });

  it('skips, with a problem, a second interface that would use the same table', () => {
    const b = new MirrorBuilder().nic(2, 'eth0', '198.18.1.2/24').nic(3, 'eth1', '198.18.2.2/24');
    const p = plan(config((c) => (c.table.pinned = { eth1: 1002 })), b.mirror);
    expect(p.problems).toEqual(['eth1: table 1002 is already used by eth0; eth1 is not managed']);
    expect(p.interfaces.map((i) => i.link.name)).toEqual(['eth0']);
    expect(p.routes.every((r) => r.oif === 2)).toBe(true);
    expect(p.rules).toEqual([from('198.18.1.2', 1002)]);
  });

  it('the first interface by ifindex keeps a contested table, even when pinned to the later one', () => {
    const b = new MirrorBuilder().nic(2, 'eth0', '198.18.1.2/24').nic(5, 'eth1', '198.18.2.2/24');
    const p = plan(config((c) => (c.table.pinned = { eth0: 1005 })), b.mirror);
    expect(p.interfaces.map((i) => [i.link.name, i.table])).toEqual([['eth0', 1005]]);
    expect(p.problems).toEqual(['eth1: table 1005 is already used by eth0; eth1 is not managed']);
  });

  it.each(['constructor', 'toString'])(
    'an interface named %s gets base + ifindex (no Object.prototype lookup in table.pinned)',
    (name) => {
      const b = new MirrorBuilder().nic(2, name, '198.18.1.2/24');
      const p = plan(defaultConfig(), b.mirror);
      expect(p.interfaces.map((i) => i.table)).toEqual([1002]);
      expect(p.rules).toEqual([from('198.18.1.2', 1002)]);
    },
  );

  it('families without usable addresses are left out of the interface plan', () => {
    const b = new MirrorBuilder().nic(2, 'eth0', '2001:db8:1::2/64');
    b.route(route({ gateway: '198.18.1.1', oif: 2 }));
    const p = plan(defaultConfig(), b.mirror);
    expect(p.interfaces[0]!.families.map((f) => f.family)).toEqual([6]);
    expect(p.routes.every((r) => r.family === 6)).toBe(true);
  });

  it('an interface with no usable address at all is still an interface, with nothing planned', () => {
    const b = new MirrorBuilder();
    b.link(2, 'eth0');
    const p = plan(defaultConfig(), b.mirror);
    expect(p.interfaces).toEqual([{ link: { index: 2, name: 'eth0', up: true, loopback: false }, table: 1002, families: [] }]);
    expect(p.routes).toEqual([]);
    expect(p.rules).toEqual([]);
  });
});

describe('connected routes', () => {
  it('one per prefix: IPv4 scope link metric 0, IPv6 universe metric 1024, src the primary address', () => {
    const b = new MirrorBuilder();
    b.link(2, 'eth0');
    // The secondary sorts first by text, but the primary is the source.
    b.address({ ifindex: 2, cidr: '198.18.1.1/24', flags: IFA_F_PERMANENT | IFA_F_SECONDARY });
    b.address({ ifindex: 2, cidr: '198.18.1.9/24' });
    b.address({ ifindex: 2, cidr: '198.18.1.10/24', flags: IFA_F_PERMANENT | IFA_F_SECONDARY });
    b.address({ ifindex: 2, cidr: '203.0.113.77/28' });
    b.address({ ifindex: 2, cidr: '2001:db8:1::20/64' });
    b.address({ ifindex: 2, cidr: '2001:db8:1::3/64' });
    b.address({ ifindex: 2, cidr: '2001:db8:2::1/56' });
    const p = plan(defaultConfig(), b.mirror);
    expect(p.routes).toEqual([
      connected(1002, '198.18.1.0/24', 2, '198.18.1.9'),
      connected(1002, '203.0.113.64/28', 2, '203.0.113.77'),
      connected(1002, '2001:db8:1::/64', 2, '2001:db8:1::3'),
      connected(1002, '2001:db8:2::/56', 2, '2001:db8:2::1'),
    ]);
    // Every address gets its own rule: primaries first, then by numeric order.
    expect(p.rules.map((r) => r.src)).toEqual([
      '198.18.1.9', '203.0.113.77', '198.18.1.1', '198.18.1.10', '2001:db8:1::3', '2001:db8:1::20', '2001:db8:2::1',
    ]);
  });

  it('host addresses (/32, /128) get rules but no connected route', () => {
    const b = new MirrorBuilder().nic(2, 'eth0', '198.18.9.9/32', '2001:db8:9::9/128', '198.18.1.2/24');
    b.route(route({ gateway: '198.18.1.1', oif: 2 }));
    const p = plan(defaultConfig(), b.mirror);
    expect(p.routes).toEqual([connected(1002, '198.18.1.0/24', 2, '198.18.1.2'), viaGateway(1002, '198.18.1.1', 2)]);
    expect(p.rules).toEqual([from('198.18.1.2', 1002), from('198.18.9.9', 1002), from('2001:db8:9::9', 1002)]);
  });

  it('point-to-point: the connected route is the peer prefix, with the local address as src', () => {
    const b = new MirrorBuilder();
    b.link(5, 'ppp0');
    b.address({ ifindex: 5, cidr: '198.18.255.1/32', peer: '198.18.255.2' });
    b.address({ ifindex: 5, cidr: '198.18.254.1/30', peer: '198.18.254.2' });
    b.address({ ifindex: 5, cidr: '2001:db8:ff::1/128', peer: '2001:db8:ff::2' });
    const p = plan(defaultConfig(), b.mirror);
    expect(p.routes).toEqual([
      connected(1005, '198.18.254.0/30', 5, '198.18.254.1'),
      connected(1005, '198.18.255.2/32', 5, '198.18.255.1'),
      connected(1005, '2001:db8:ff::2/128', 5, '2001:db8:ff::1'),
    ]);
    expect(p.rules).toEqual([from('198.18.254.1', 1005), from('198.18.255.1', 1005), from('2001:db8:ff::1', 1005)]);
  });
});

describe('the gateway', () => {
  const eth0 = () => new MirrorBuilder().nic(2, 'eth0', '198.18.1.2/24', '2001:db8:1::2/64').nic(3, 'eth1', '198.18.2.2/24');
  const gatewayOf = (p: Plan, family: Family, name = 'eth0') =>
    p.interfaces.find((i) => i.link.name === name)!.families.find((f) => f.family === family)!.gateway;

  it('comes from the config first, canonicalized, over any main-table default', () => {
    const b = eth0();
    b.route(route({ gateway: '198.18.1.1', oif: 2, protocol: PROTO_DHCP }));
    b.route(route({ gateway: 'fe80::1', oif: 2, protocol: PROTO_RA }));
    const c = config((c) => (c.gateways = { eth0: { ipv4: '198.18.1.254', ipv6: '2001:DB8:1:0:0:0:0:FFFF' } }));
    const p = plan(c, b.mirror);
    expect(gatewayOf(p, 4)).toEqual({ address: '198.18.1.254', source: 'config' });
    expect(gatewayOf(p, 6)).toEqual({ address: '2001:db8:1::ffff', source: 'config' });
    expect(p.routes).toContainEqual(viaGateway(1002, '198.18.1.254', 2));
    expect(p.routes).toContainEqual(viaGateway(1002, '2001:db8:1::ffff', 2));
    expect(p.routes.filter((r) => r.gateway)).toHaveLength(2);
  });

  it('per family: a configured IPv6 gateway does not stop the IPv4 one being learned', () => {
    const b = eth0();
    b.route(route({ gateway: '198.18.1.1', oif: 2, protocol: PROTO_DHCP }));
    const p = plan(config((c) => (c.gateways = { eth0: { ipv6: 'fe80::1' } })), b.mirror);
    expect(gatewayOf(p, 4)).toEqual({ address: '198.18.1.1', source: 'main table' });
    expect(gatewayOf(p, 6)).toEqual({ address: 'fe80::1', source: 'config' });
  });

  it('else the lowest-metric main-table default route through that interface', () => {
    const b = eth0();
    b.route(route({ gateway: '198.18.1.3', oif: 2, metric: 300, protocol: PROTO_STATIC }));
    b.route(route({ gateway: '198.18.1.1', oif: 2, metric: 100, protocol: PROTO_DHCP }));
    b.route(route({ gateway: '198.18.1.2', oif: 2, metric: 200, protocol: PROTO_BOOT }));
    b.route(route({ gateway: '198.18.2.1', oif: 3, metric: 1, protocol: PROTO_DHCP })); // other interface
    const p = plan(defaultConfig(), b.mirror);
    expect(gatewayOf(p, 4)).toEqual({ address: '198.18.1.1', source: 'main table' });
    expect(gatewayOf(p, 4, 'eth1')).toEqual({ address: '198.18.2.1', source: 'main table' });
    expect(gatewayOf(p, 6)).toBeUndefined();
    expect(p.routes.filter((r) => r.gateway)).toEqual([viaGateway(1002, '198.18.1.1', 2), viaGateway(1003, '198.18.2.1', 3)]);
  });

  it('keeps an on-link gateway on-link (a /32 address behind a router outside it)', () => {
    const b = new MirrorBuilder().nic(2, 'eth0', '198.18.8.10/32');
    b.route(route({ gateway: '198.18.8.1', oif: 2, onlink: true, protocol: PROTO_BOOT }));
    const p = plan(defaultConfig(), b.mirror);
    expect(gatewayOf(p, 4)).toEqual({ address: '198.18.8.1', source: 'main table', onlink: true });
    expect(p.routes).toEqual([{ ...viaGateway(1002, '198.18.8.1', 2), onlink: true }]);
  });

  it('ignores a source-specific default route when learning the gateway', () => {
    const b = eth0();
    b.route(route({ gateway: '198.18.1.9', oif: 2, src: '198.18.1.0', srcLength: 24, protocol: PROTO_STATIC }));
    expect(gatewayOf(plan(defaultConfig(), b.mirror), 4)).toBeUndefined();
  });

  it('including a nexthop of a multipath default route', () => {
    const b = eth0();
    b.route(route({ metric: 100, protocol: PROTO_STATIC, nexthops: [{ ifindex: 3, gateway: '198.18.2.1' }, { ifindex: 2, gateway: '198.18.1.1' }] }));
    b.route(route({ gateway: '198.18.1.99', oif: 2, metric: 200, protocol: PROTO_DHCP }));
    b.route(route({ metric: 1024, protocol: PROTO_RA, nexthops: [{ ifindex: 2, gateway: 'fe80::1' }, { ifindex: 3, gateway: 'fe80::2' }] }));
    const p = plan(defaultConfig(), b.mirror);
    expect(gatewayOf(p, 4)).toEqual({ address: '198.18.1.1', source: 'main table' });
    expect(gatewayOf(p, 4, 'eth1')).toEqual({ address: '198.18.2.1', source: 'main table' });
    expect(gatewayOf(p, 6)).toEqual({ address: 'fe80::1', source: 'main table' });
  });

  it('is not learned from other tables, other destinations, other types, routes without a gateway, or symroute\'s own routes', () => {
    const b = eth0();
    b.route(route({ gateway: '198.18.1.1', oif: 2, table: 1002, protocol: PROTO })); // our own table
    b.route(route({ gateway: '198.18.1.2', oif: 2, table: 1099, protocol: PROTO_STATIC })); // another table
    b.route(route({ gateway: '198.18.1.3', oif: 2, protocol: PROTO })); // main table, but ours
    b.route(route({ dst: '203.0.113.0/24', gateway: '198.18.1.4', oif: 2, protocol: PROTO_STATIC })); // not a default
    b.route(route({ gateway: '198.18.1.5', oif: 2, type: RTN_BLACKHOLE, protocol: PROTO_STATIC })); // not unicast
    b.route(route({ family: 4, oif: 2, metric: 5, scope: RT_SCOPE_LINK, protocol: PROTO_STATIC })); // dev only
    const p = plan(defaultConfig(), b.mirror);
    expect(gatewayOf(p, 4)).toBeUndefined();
    expect(p.routes.filter((r) => r.gateway)).toEqual([]);
    expect(p.rules).toContainEqual(from('198.18.1.2', 1002)); // rules do not depend on a gateway
  });
});

describe('a gateway the kernel would refuse in the table', () => {
  const familyOf = (p: Plan, family: Family, name = 'eth0') =>
    p.interfaces.find((i) => i.link.name === name)!.families.find((f) => f.family === family)!;

  it('is not planned when outside every prefix of the interface and not onlink: a problem instead', () => {
    const b = new MirrorBuilder().nic(2, 'eth0', '198.18.1.2/24').nic(3, 'eth1', '198.18.3.2/24');
    b.route(route({ gateway: '198.18.2.1', oif: 2, metric: 100, protocol: PROTO_DHCP })); // its subnet went
    b.route(route({ gateway: '198.18.3.1', oif: 3, metric: 200, protocol: PROTO_DHCP }));
    const p = plan(defaultConfig(), b.mirror);
    expect(familyOf(p, 4).gateway).toBeUndefined();
    expect(familyOf(p, 4).unusableGateway).toEqual({
      address: '198.18.2.1',
      source: 'main table',
      reason: 'in none of its prefixes (198.18.1.0/24), nor behind a device route of it in the main table, and not onlink',
    });
    expect(p.problems).toEqual([
      'eth0: IPv4 gateway 198.18.2.1 (from main table) is not reachable through eth0: in none of its prefixes (198.18.1.0/24), ' +
        'nor behind a device route of it in the main table, and not onlink; the kernel would refuse it, so table 1002 gets no IPv4 default route',
    ]);
    // Everything else is planned.
    expect(p.routes).toEqual([
      connected(1002, '198.18.1.0/24', 2, '198.18.1.2'),
      connected(1003, '198.18.3.0/24', 3, '198.18.3.2'),
      viaGateway(1003, '198.18.3.1', 3),
    ]);
    expect(p.rules).toEqual([from('198.18.1.2', 1002), from('198.18.3.2', 1003)]);
  });

  it('counts a secondary prefix and a peer prefix as reachable', () => {
    const b = new MirrorBuilder().nic(2, 'eth0', '198.18.1.2/24');
    b.address({ ifindex: 2, cidr: '198.18.2.2/24', flags: IFA_F_PERMANENT | IFA_F_SECONDARY });
    b.address({ ifindex: 2, cidr: '198.18.7.2/32', peer: '198.18.7.1', flags: IFA_F_PERMANENT });
    for (const gateway of ['198.18.2.1', '198.18.7.1']) {
      const p = plan(config((c) => (c.gateways = { eth0: { ipv4: gateway } })), b.mirror);
      expect(familyOf(p, 4).gateway, gateway).toEqual({ address: gateway, source: 'config' });
      expect(p.problems).toEqual([]);
    }
  });

  it('is reachable behind a device route of the interface in main, as the kernel finds it', () => {
    const b = new MirrorBuilder().nic(2, 'eth0', '198.18.1.2/24', '2001:db8:1::2/64').nic(3, 'eth1', '198.18.3.2/24');
    const c = config((c) => (c.gateways = { eth0: { ipv4: '203.0.113.1', ipv6: '2001:db8:99::1' } }));
    // On another interface, or in another table, it does not count.
    b.route(route({ dst: '203.0.113.1/32', oif: 3, scope: RT_SCOPE_LINK, protocol: PROTO_STATIC }));
    b.route(route({ dst: '2001:db8:99::1/128', oif: 2, table: 77, protocol: PROTO_STATIC }));
    expect(plan(c, b.mirror).problems).toHaveLength(2);
    b.route(route({ dst: '203.0.113.1/32', oif: 2, scope: RT_SCOPE_LINK, protocol: PROTO_STATIC }));
    b.route(route({ dst: '2001:db8:99::/64', oif: 2, protocol: PROTO_STATIC }));
    const p = plan(c, b.mirror);
    expect(p.problems).toEqual([]);
    expect(p.routes).toContainEqual(viaGateway(1002, '203.0.113.1', 2));
    expect(p.routes).toContainEqual(viaGateway(1002, '2001:db8:99::1', 2));
  });

  it('for IPv6: a link-local gateway is always reachable, a global one outside the prefixes is not', () => {
    const b = new MirrorBuilder().nic(2, 'eth0', '2001:db8:1::2/64');
    expect(familyOf(plan(config((c) => (c.gateways = { eth0: { ipv6: 'fe80::1' } })), b.mirror), 6).gateway).toEqual({
      address: 'fe80::1',
      source: 'config',
    });
    const p = plan(config((c) => (c.gateways = { eth0: { ipv6: '2001:db8:2::1' } })), b.mirror);
    expect(familyOf(p, 6).gateway).toBeUndefined();
    expect(p.problems).toEqual([
      'eth0: IPv6 gateway 2001:db8:2::1 (from config) is not reachable through eth0: in none of its prefixes (2001:db8:1::/64), ' +
        'nor behind a device route of it in the main table, not link-local, and not onlink; the kernel would refuse it, so table 1002 gets no IPv6 default route',
    ]);
  });

  it('an on-link gateway of a host address is reachable; one without onlink is not', () => {
    const b = new MirrorBuilder().nic(2, 'eth0', '198.18.8.10/32');
    b.route(route({ gateway: '198.18.8.1', oif: 2, protocol: PROTO_BOOT }));
    const p = plan(defaultConfig(), b.mirror);
    expect(familyOf(p, 4).unusableGateway?.reason).toBe(
      'not in any prefix of it (it has none), nor behind a device route of it in the main table, and not onlink',
    );
    expect(p.routes).toEqual([]);
  });
});

describe('rule.match: prefix', () => {
  it('one rule per distinct connected prefix; host addresses keep their own rule', () => {
    const b = new MirrorBuilder().nic(2, 'eth0', '198.18.1.2/24', '2001:db8:1::2/64', '2001:db8:1::3/64', '198.18.9.9/32');
    b.address({ ifindex: 2, cidr: '198.18.1.3/24', flags: IFA_F_PERMANENT | IFA_F_SECONDARY });
    const p = plan(prefixMode, b.mirror);
    expect(p.problems).toEqual([]);
    expect(p.rules).toEqual([from('198.18.1.0/24', 1002), from('198.18.9.9', 1002), from('2001:db8:1::/64', 1002)]);
    expect(p.routes.map((r) => `${r.dst}/${r.dstLength}`)).toEqual(['198.18.1.0/24', '2001:db8:1::/64']);
  });

  it('falls back to per-address rules, with a problem, when two managed interfaces share a prefix', () => {
    const b = new MirrorBuilder()
      .nic(2, 'eth0', '198.18.1.2/24', '2001:db8:1::2/64')
      .nic(3, 'eth1', '198.18.1.3/24', '198.18.1.4/24', '2001:db8:2::2/64');
    const p = plan(prefixMode, b.mirror);
    expect(p.problems).toEqual([
      'eth0: prefix 198.18.1.0/24 overlaps a prefix of eth1; using one rule per address for it',
      'eth1: prefix 198.18.1.0/24 overlaps a prefix of eth0; using one rule per address for it',
    ]);
    expect(p.rules).toEqual([
      from('198.18.1.2', 1002),
      from('2001:db8:1::/64', 1002),
      from('198.18.1.3', 1003),
      from('198.18.1.4', 1003),
      from('2001:db8:2::/64', 1003),
    ]);
    // Each table still gets its own connected route for the shared prefix.
    expect(p.routes.filter((r) => r.dst === '198.18.1.0')).toEqual([
      connected(1002, '198.18.1.0/24', 2, '198.18.1.2'),
      connected(1003, '198.18.1.0/24', 3, '198.18.1.3'),
    ]);
  });

  it('an unmanaged interface (down or excluded) with the same prefix does not count', () => {
    const b = new MirrorBuilder().nic(2, 'eth0', '198.18.1.2/24').nic(3, 'docker0', '198.18.1.3/24');
    b.link(4, 'eth1', { up: false });
    b.address({ ifindex: 4, cidr: '198.18.1.4/24' });
    const p = plan(prefixMode, b.mirror);
    expect(p.problems).toEqual([]);
    expect(p.rules).toEqual([from('198.18.1.0/24', 1002)]);
  });

  it('a point-to-point address is matched by a rule that covers the local address', () => {
    const b = new MirrorBuilder();
    b.link(5, 'ppp0');
    b.address({ ifindex: 5, cidr: '198.18.255.1/32', peer: '198.18.255.2' });
    const p = plan(prefixMode, b.mirror);
    // Replies leave from 198.18.255.1: "from 198.18.255.2/32" would never match them.
    expect(p.rules.filter((r) => covers(r, '198.18.255.1'))).toHaveLength(1);
  });

  it('no address is matched by a prefix rule of another interface (overlapping prefixes)', () => {
    // 198.18.0.0/16 on eth1 contains eth0's 198.18.1.0/24: whichever of the two rules
    // (same priority) the kernel meets first takes the other NIC's replies too.
    const b = new MirrorBuilder().nic(2, 'eth0', '198.18.1.2/24').nic(3, 'eth1', '198.18.200.2/16');
    const p = plan(prefixMode, b.mirror);
    const owner = new Map([['198.18.1.2', 1002], ['198.18.200.2', 1003]]);
    for (const [address, table] of owner) {
      expect(p.rules.filter((r) => covers(r, address)).map((r) => r.table)).toEqual([table]);
    }
  });
});

describe('usable addresses', () => {
  it('IPv4: universe and site scope only', () => {
    const b = new MirrorBuilder();
    b.link(2, 'eth0');
    b.address({ ifindex: 2, cidr: '198.18.1.2/24' });
    b.address({ ifindex: 2, cidr: '198.18.0.9/24', scope: RT_SCOPE_SITE });
    b.address({ ifindex: 2, cidr: '127.0.0.2/8', scope: RT_SCOPE_HOST });
    b.address({ ifindex: 2, cidr: '203.0.113.3/24', scope: RT_SCOPE_LINK });
    const p = plan(defaultConfig(), b.mirror);
    expect(p.rules.map((r) => r.src)).toEqual(['198.18.0.9', '198.18.1.2']);
    expect(p.routes.map((r) => r.dst)).toEqual(['198.18.0.0', '198.18.1.0']);
  });

  it('IPv6: not link-local, tentative, DAD-failed or deprecated, and universe scope only', () => {
    const b = new MirrorBuilder();
    b.link(2, 'eth0');
    b.address({ ifindex: 2, cidr: '2001:db8:1::1/64' });
    b.address({ ifindex: 2, cidr: '2001:db8:1::2/64', flags: IFA_F_PERMANENT | IFA_F_TENTATIVE });
    b.address({ ifindex: 2, cidr: '2001:db8:1::3/64', flags: IFA_F_PERMANENT | IFA_F_DADFAILED | IFA_F_TENTATIVE });
    b.address({ ifindex: 2, cidr: '2001:db8:1::4/64', flags: IFA_F_PERMANENT | IFA_F_DEPRECATED });
    b.address({ ifindex: 2, cidr: '2001:db8:1::5/64', flags: IFA_F_OPTIMISTIC }); // usable while DAD runs
    b.address({ ifindex: 2, cidr: '2001:db8:1::6/64', flags: 0x01 }); // temporary (privacy) address
    b.address({ ifindex: 2, cidr: 'fe80::1/64', scope: RT_SCOPE_LINK });
    b.address({ ifindex: 2, cidr: 'fe80::2/64', scope: RT_SCOPE_UNIVERSE }); // link-local whatever the scope says
    b.address({ ifindex: 2, cidr: '2001:db8:fec0::1/64', scope: RT_SCOPE_SITE });
    b.address({ ifindex: 2, cidr: '::1/128', scope: RT_SCOPE_HOST });
    const p = plan(defaultConfig(), b.mirror);
    expect(p.rules.map((r) => r.src)).toEqual(['2001:db8:1::1', '2001:db8:1::5', '2001:db8:1::6']);
    expect(p.routes).toEqual([connected(1002, '2001:db8:1::/64', 2, '2001:db8:1::1')]);
    expect(p.interfaces[0]!.families[0]!.addresses.map((a) => a.address)).toEqual(['2001:db8:1::1', '2001:db8:1::5', '2001:db8:1::6']);
  });

  it('IPv6: only while the kernel delivers it (its local route), which a flap takes until DAD ends again', () => {
    const b = new MirrorBuilder();
    b.link(2, 'eth0');
    const kept = { ifindex: 2, cidr: '2001:db8:1::1/64' };
    b.address(kept);
    const desired = new DesiredState(defaultConfig());
    desired.update(b.mirror, b.mirror.takeChanges());
    const sources = () => desired.toPlan().rules.map((r) => r.src);
    expect(sources()).toEqual(['2001:db8:1::1']);
    // Down and up: the address stays as it was announced, its local route is gone.
    b.link(2, 'eth0', { up: false });
    b.link(2, 'eth0');
    b.delRoute(localRouteOf(kept)!);
    desired.update(b.mirror, b.mirror.takeChanges());
    expect(desired.toPlan()).toMatchObject({ rules: [], routes: [] });
    b.route(localRouteOf(kept)!); // DAD done
    desired.update(b.mirror, b.mirror.takeChanges());
    expect(sources()).toEqual(['2001:db8:1::1']);
  });

  it('an interface whose only IPv6 address is tentative plans nothing for IPv6, not even a gateway', () => {
    const b = new MirrorBuilder();
    b.link(2, 'eth0');
    b.address({ ifindex: 2, cidr: '2001:db8:1::2/64', flags: IFA_F_TENTATIVE });
    const p = plan(config((c) => (c.gateways = { eth0: { ipv6: 'fe80::1' } })), b.mirror);
    expect(p.routes).toEqual([]);
    expect(p.rules).toEqual([]);
  });
});

describe('which interfaces are managed', () => {
  const many = () => {
    const b = new MirrorBuilder()
      .nic(2, 'eth0', '198.18.1.2/24')
      .nic(3, 'eth1', '198.18.2.2/24')
      .nic(4, 'wlan0', '198.18.3.2/24')
      .nic(5, 'docker0', '198.19.17.1/24')
      .nic(6, 'veth1234', '198.19.18.1/24');
    b.link(7, 'eth2', { up: false });
    b.address({ ifindex: 7, cidr: '198.18.7.2/24' });
    b.link(1, 'lo', { loopback: true });
    b.address({ ifindex: 1, cidr: '127.0.0.1/8' });
    b.link(8, 'lo1', { loopback: true });
    b.address({ ifindex: 8, cidr: '198.18.8.8/32' });
    return b;
  };
  const managed = (c: Config) => plan(c, many().mirror).interfaces.map((i) => i.link.name);

  it('by default: every up, non-loopback link not in the default exclude list', () => {
    expect(managed(defaultConfig())).toEqual(['eth0', 'eth1', 'wlan0']);
  });

  it('include globs', () => {
    expect(managed(config((c) => (c.interfaces.include = ['eth*'])))).toEqual(['eth0', 'eth1']);
    expect(managed(config((c) => (c.interfaces.include = ['eth[01]', 'wlan?'])))).toEqual(['eth0', 'eth1', 'wlan0']);
    expect(managed(config((c) => (c.interfaces.include = [])))).toEqual([]);
  });

  it('exclude globs win over include', () => {
    expect(managed(config((c) => (c.interfaces.exclude = ['eth1'])))).toEqual(['eth0', 'wlan0', 'docker0', 'veth1234']);
    expect(managed(config((c) => ((c.interfaces.include = ['eth*']), (c.interfaces.exclude = ['*0']))))).toEqual(['eth1']);
  });

  it('never lo or a loopback, even when included by name, and never a down link', () => {
    const c = config((c) => ((c.interfaces.include = ['lo', 'lo1', 'eth2']), (c.interfaces.exclude = [])));
    expect(managed(c)).toEqual([]);
    expect(plan(c, many().mirror).rules).toEqual([]);
  });
});

describe('collisions with routes symroute does not own', () => {
  it('a foreign route in an interface\'s table: a problem naming the table, and the table protected', () => {
    const b = new MirrorBuilder().nic(2, 'eth0', '198.18.1.2/24', '2001:db8:1::2/64').nic(3, 'eth1', '198.18.2.2/24');
    b.route(route({ gateway: '198.18.1.1', oif: 2, metric: 100, protocol: PROTO_DHCP }));
    b.route(route({ gateway: '198.18.2.1', oif: 3, metric: 100, protocol: PROTO_DHCP }));
    b.route(route({ dst: '203.0.113.0/24', gateway: '198.18.1.254', oif: 2, table: 1002, protocol: PROTO_STATIC }));
    const p = plan(defaultConfig(), b.mirror);
    expect(p.problems).toHaveLength(1);
    expect(p.problems[0]).toBe(
      'eth0: table 1002 holds a route symroute does not own (203.0.113.0/24 via 198.18.1.254 dev eth0 table 1002 proto 4); ' +
        'leaving that table alone (pin a free one with table.pinned.eth0: 1000, or move every table with table.base: 2000)',
    );
    expect([...p.protectedTables]).toEqual([1002]);
    expect(tablesOf(p)).toEqual(new Set([1003]));
    const eth0 = p.interfaces.find((i) => i.link.name === 'eth0')!;
    expect(eth0.collision).toBe(p.problems[0]);
    expect(eth0.table).toBe(1002);
    // The other interface is planned as usual.
    expect(p.routes).toEqual([connected(1003, '198.18.2.0/24', 3, '198.18.2.2'), viaGateway(1003, '198.18.2.1', 3)]);
    expect(p.rules).toEqual([from('198.18.2.2', 1003)]);
  });

  it('names links it does not know by ifindex, and multipath nexthops by name', () => {
    const b = new MirrorBuilder().nic(2, 'eth0', '198.18.1.2/24');
    b.route(route({ table: 1002, protocol: PROTO_BOOT, nexthops: [{ ifindex: 2, gateway: '198.18.1.1' }, { ifindex: 9, gateway: '198.18.9.1' }] }));
    const p = plan(defaultConfig(), b.mirror);
    expect(p.problems[0]).toContain('(default nexthop via 198.18.1.1 dev eth0 nexthop via 198.18.9.1 dev #9 table 1002 proto 3)');
  });

  it('routes with symroute\'s own protocol are no collision', () => {
    const b = new MirrorBuilder().nic(2, 'eth0', '198.18.1.2/24');
    b.route(route({ gateway: '198.18.1.77', oif: 2, table: 1002, protocol: PROTO }));
    b.route(route({ dst: '203.0.113.0/24', gateway: '198.18.1.254', oif: 2, table: 1002, protocol: PROTO }));
    const p = plan(defaultConfig(), b.mirror);
    expect(p.problems).toEqual([]);
    expect(p.protectedTables.size).toBe(0);
    expect(p.routes).toEqual([connected(1002, '198.18.1.0/24', 2, '198.18.1.2')]);
  });

  it('a foreign route in a pinned table collides; one in an unused table does not matter', () => {
    const b = new MirrorBuilder().nic(2, 'eth0', '198.18.1.2/24');
    b.route(route({ gateway: '198.18.1.1', oif: 2, table: 200, protocol: PROTO_STATIC }));
    b.route(route({ gateway: '198.18.1.1', oif: 2, table: 1002, protocol: PROTO_STATIC }));
    const p = plan(config((c) => (c.table.pinned = { eth0: 200 })), b.mirror);
    expect([...p.protectedTables]).toEqual([200]);
    expect(p.problems[0]).toMatch(/^eth0: table 200 holds a route symroute does not own/);
    expect(p.routes).toEqual([]);
    expect(p.rules).toEqual([]);
  });

  it('names the same foreign route whatever order the kernel reported the routes in', () => {
    // "The same inputs always give the same plan": two foreign routes in one table.
    const a = route({ gateway: '198.18.1.1', oif: 2, table: 1002, protocol: PROTO_STATIC });
    const b6 = route({ gateway: 'fe80::1', oif: 2, table: 1002, protocol: PROTO_STATIC });
    const one = new MirrorBuilder().nic(2, 'eth0', '198.18.1.2/24');
    one.route(a);
    one.route(b6);
    const other = new MirrorBuilder().nic(2, 'eth0', '198.18.1.2/24');
    other.route(b6);
    other.route(a);
    expect(plan(defaultConfig(), one.mirror).problems).toEqual(plan(defaultConfig(), other.mirror).problems);
  });

  it('the protocol is the configured one', () => {
    const b = new MirrorBuilder().nic(2, 'eth0', '198.18.1.2/24');
    b.route(route({ gateway: '198.18.1.1', oif: 2, table: 1002, protocol: PROTO }));
    const p = plan(config((c) => (c.protocol = 99)), b.mirror);
    expect([...p.protectedTables]).toEqual([1002]);
    expect(p.problems[0]).toContain('proto 83');
  });
});

// ------------------------------------------------------------------ properties

interface Scenario {
  links: { index: number; name: string; up: boolean }[];
  addresses: { ifindex: number; cidr: string; flags: number; scope: number }[];
  routes: Route[];
}

/** Random interfaces, each with addresses from its own /16 (v4) or /48 (v6), plus main-table defaults. */
const scenario: fc.Arbitrary<Scenario> = fc
  .uniqueArray(fc.integer({ min: 2, max: 12 }), { minLength: 1, maxLength: 5 })
  .chain((indexes) =>
    fc.record({
      links: fc.tuple(...indexes.map((index) => fc.record({ index: fc.constant(index), name: fc.constantFrom(`eth${index}`, `en${index}`, `docker${index}`), up: fc.boolean() }))),
      addresses: fc.tuple(
        ...indexes.map((index) =>
          fc.uniqueArray(
            fc.oneof(
              fc.record({ host: fc.integer({ min: 1, max: 0xfffe }), length: fc.integer({ min: 16, max: 32 }), v6: fc.constant(false) }),
              fc.record({ host: fc.integer({ min: 1, max: 0xfffe }), length: fc.constantFrom(48, 56, 64, 112, 128), v6: fc.constant(true) }),
            ).chain((a) =>
              fc.record({
                ifindex: fc.constant(index),
                cidr: fc.constant(
                  a.v6
                    ? `2001:db8:${index.toString(16)}::${a.host.toString(16)}/${a.length}`
                    : `10.${index}.${a.host >> 8}.${a.host & 0xff}/${a.length}`,
                ),
                flags: fc.constantFrom(IFA_F_PERMANENT, IFA_F_PERMANENT, IFA_F_PERMANENT | IFA_F_SECONDARY, IFA_F_TENTATIVE, IFA_F_DEPRECATED),
                scope: fc.constantFrom(RT_SCOPE_UNIVERSE, RT_SCOPE_UNIVERSE, RT_SCOPE_LINK),
              }),
            ),
            { maxLength: 5, selector: (a) => a.cidr.split('/')[0] },
          ),
        ),
      ).map((lists) => lists.flat()),
      routes: fc.uniqueArray(
        fc.record({
          oif: fc.constantFrom(...indexes),
          metric: fc.integer({ min: 0, max: 1000 }),
          protocol: fc.constantFrom(PROTO_BOOT, PROTO_DHCP, PROTO_STATIC, PROTO),
          host: fc.integer({ min: 1, max: 254 }),
          v6: fc.boolean(),
          table: fc.constantFrom(254, 254, 254, ...indexes.map((i) => 1000 + i)),
        }).map(({ oif, metric, protocol, host, v6, table }) =>
          route({ gateway: v6 ? `fe80::${host.toString(16)}` : `10.${oif}.0.${host}`, oif, metric, protocol, table }),
        ),
        { maxLength: 6, selector: (r) => `${r.family}|${r.table}|${r.metric}` },
      ),
    }),
  );

function build(s: Scenario, order: number[] = []): MirrorBuilder {
  const b = new MirrorBuilder();
  for (const l of s.links) b.link(l.index, l.name, { up: l.up });
  const rest: (() => void)[] = [
    ...s.addresses.map((a) => () => void b.address(a)),
    ...s.routes.map((r) => () => void b.route(r)),
  ];
  const permuted = order.length === rest.length ? order.map((i) => rest[i]!) : rest;
  for (const step of permuted) step();
  return b;
}

describe('plan properties', () => {
  it('is the same whatever order the kernel reported things in', () => {
    fc.assert(
      fc.property(
        scenario.chain((s) => {
          const n = s.addresses.length + s.routes.length;
          const ids = Array.from({ length: n }, (_, i) => i);
          return fc.tuple(fc.constant(s), fc.shuffledSubarray(ids, { minLength: n, maxLength: n }), fc.constantFrom<'address' | 'prefix'>('address', 'prefix'));
        }),
        ([s, order, match]) => {
          const c = config((c) => (c.rule.match = match));
          // Collision texts name the first foreign route found: compared in their own test.
          const comparable = (p: Plan) => ({
            ...p,
            problems: p.problems.map((text) => text.replace(/\(.*\)/, '(…)')),
            interfaces: p.interfaces.map((i) => ({ ...i, collision: i.collision?.replace(/\(.*\)/, '(…)') })),
          });
          expect(comparable(plan(c, build(s, order).mirror))).toEqual(comparable(plan(c, build(s).mirror)));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('only plans symroute routes and rules in unprotected tables of managed interfaces, one route per slot, every usable address covered', () => {
    fc.assert(
      fc.property(scenario, fc.constantFrom<'address' | 'prefix'>('address', 'prefix'), (s, match) => {
        const c = config((c) => (c.rule.match = match));
        const b = build(s);
        const p = plan(c, b.mirror);
        const tables = new Map(p.interfaces.filter((i) => !i.collision).map((i) => [i.table, i]));
        for (const r of p.routes) {
          expect(r.protocol).toBe(PROTO);
          expect(tables.has(r.table)).toBe(true);
          expect(p.protectedTables.has(r.table)).toBe(false);
          expect(r.oif).toBe(tables.get(r.table)!.link.index);
        }
        expect(new Set(p.routes.map(routeSlot)).size).toBe(p.routes.length);
        for (const r of p.rules) {
          expect(r.protocol).toBe(PROTO);
          expect(tables.has(r.table)).toBe(true);
        }
        expect(new Set(p.rules.map(ruleKey)).size).toBe(p.rules.length);
        // Each usable address is matched by a rule, and only by rules pointing at its own table.
        for (const i of tables.values()) {
          for (const f of i.families) {
            for (const a of f.addresses) {
              expect([...new Set(p.rules.filter((r) => covers(r, a.address)).map((r) => r.table))]).toEqual([i.table]);
            }
          }
        }
        // Interfaces whose tables hold foreign routes are protected, the others are not.
        for (const i of p.interfaces) {
          const foreign = [...b.mirror.routes.values()].some((r) => r.table === i.table && r.protocol !== PROTO);
          expect(p.protectedTables.has(i.table)).toBe(foreign);
        }
      }),
      { numRuns: 500 },
    );
  });
});

