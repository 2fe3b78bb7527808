import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Mirror } from '../../src/domain/mirror.js';
import { type Route } from '../../src/domain/model.js';
import { addressKey, routeKey, ruleKey, type AddressKey } from '../../src/domain/keys.js';
import { HOST_LITTLE_ENDIAN, splitDatagram } from '../../src/netlink/codec.js';
import { NLM_F_CREATE, NLM_F_REPLACE, RTM_DELROUTE, RTM_DELRULE, RTM_F_CLONED, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE, RTM_NEWRULE } from '../../src/netlink/constants.js';
import { IFA_F_DEPRECATED, IFA_F_SECONDARY, IFA_F_TENTATIVE, RT_SCOPE_HOST, RT_SCOPE_LINK, RT_TABLE_LOCAL } from '../../src/domain/constants.js';
import { decodeMessage, isRtnlBody } from '../../src/netlink/messages.js';
import { routeToMessage, ruleToMessage } from '../../src/kernel/objects.js';
import { eventFromMessage } from '../../src/kernel/events.js';
import {
  addressMessage,
  FIXTURES,
  fixture,
  linkMessage,
  MirrorBuilder,
  PROTO,
  PROTO_STATIC,
  route,
  rule,
} from '../support/builders.js';

const routes = (m: Mirror) => [...m.routes.values()];
const has = (m: Mirror, r: Route) => m.routes.has(routeKey(r));

describe('links', () => {
  it('NEWLINK adds, renames and changes state; an identical repeat is not a change', () => {
    const b = new MirrorBuilder();
    expect(b.link(3, 'eth0')).toBe(true);
    expect(b.mirror.links.get(3)).toEqual({ index: 3, name: 'eth0', up: true, loopback: false });
    expect(b.link(3, 'eth0')).toBe(false);
    expect(b.link(3, 'wan0')).toBe(true);
    expect(b.mirror.links.get(3)!.name).toBe('wan0');
    expect(b.link(3, 'wan0', { up: false })).toBe(true);
    expect(b.mirror.links.get(3)!.up).toBe(false);
    expect(b.link(1, 'lo', { loopback: true })).toBe(true);
    expect(b.mirror.links.get(1)).toEqual({ index: 1, name: 'lo', up: true, loopback: true });
  });

  it('a link message without IFLA_IFNAME is ignored', () => {
    const b = new MirrorBuilder();
    const message = linkMessage(3, 'eth0');
    delete message.attributes.ifname;
    expect(b.apply(RTM_NEWLINK, 0, message)).toBe(false);
    expect(b.mirror.links.size).toBe(0);
  });

  it('DELLINK removes the link with its addresses and routes of both families', () => {
    const b = new MirrorBuilder().nic(3, 'eth0', '198.18.1.2/24', '2001:db8:1::2/64').nic(5, 'eth1', '198.18.2.2/24');
    const v4 = route({ dst: '198.18.1.0/24', oif: 3, scope: RT_SCOPE_LINK, prefsrc: '198.18.1.2', table: 1020 });
    const v4gw = route({ gateway: '198.18.1.1', oif: 3, table: 1003, protocol: PROTO });
    const v6 = route({ dst: '2001:db8:1::/64', oif: 3, table: 1020 });
    const v6mp = route({ nexthops: [{ ifindex: 3, gateway: 'fe80::1' }], table: 1003 });
    const other = route({ dst: '198.18.2.0/24', oif: 5, scope: RT_SCOPE_LINK, table: 1020 });
    for (const r of [v4, v4gw, v6, v6mp, other]) b.route(r);

    expect(b.delLink(3, 'eth0')).toBe(true);
    expect([...b.mirror.links.keys()]).toEqual([5]);
    expect([...b.mirror.addresses.values()].map((a) => a.address)).toEqual(['198.18.2.2']);
    expect(routes(b.mirror)).toEqual([other]);
    expect(b.delLink(3, 'eth0')).toBe(false); // already gone
  });

  // Checked against Linux 6.18 in a namespace with `ip monitor route`: unregistering a device
  // flushes every IPv4 route with ANY nexthop through it, multipath included, and announces
  // nothing; for IPv6 the kernel announces RTM_DELROUTE for the one nexthop (as a plain route
  // "default via 2001:db8:2::1 dev eth1") and keeps the route with its other nexthops.
  it('DELLINK drops an IPv4 multipath route with a nexthop through the deleted link', () => {
    const b = new MirrorBuilder().nic(3, 'eth0', '198.18.1.2/24').nic(5, 'eth1', '198.18.2.2/24');
    const mp4 = route({
      protocol: PROTO_STATIC, metric: 100,
      nexthops: [{ ifindex: 3, gateway: '198.18.1.1' }, { ifindex: 5, gateway: '198.18.2.1' }],
    });
    b.route(mp4);
    b.delLink(5, 'eth1');
    expect(has(b.mirror, mp4)).toBe(false);
  });

  it('after DELLINK and the kernel\'s IPv6 nexthop RTM_DELROUTE, no route names the deleted link', () => {
    const b = new MirrorBuilder().nic(3, 'eth0', '2001:db8:1::2/64').nic(5, 'eth1', '2001:db8:2::2/64');
    const mp6 = route({
      table: 1003, protocol: PROTO,
      nexthops: [{ ifindex: 3, gateway: '2001:db8:1::1' }, { ifindex: 5, gateway: '2001:db8:2::1' }],
    });
    b.route(mp6);
    b.delLink(5, 'eth1');
    b.delRoute(route({ table: 1003, protocol: PROTO, oif: 5, gateway: '2001:db8:2::1' }));
    const naming5 = routes(b.mirror).filter((r) => r.oif === 5 || r.nexthops?.some((n) => n.ifindex === 5));
    expect(naming5).toEqual([]);
  });

  it('a link going down drops its IPv4 routes (the kernel does not announce that) but not its IPv6 ones', () => {
    const b = new MirrorBuilder().nic(3, 'eth0', '198.18.1.2/24').nic(5, 'eth1', '198.18.2.2/24');
    const connected = route({ dst: '198.18.1.0/24', oif: 3, scope: RT_SCOPE_LINK, table: 1003, protocol: PROTO, prefsrc: '198.18.1.2' });
    const gateway = route({ gateway: '198.18.1.1', oif: 3, table: 1003, protocol: PROTO });
    const mainDefault = route({ gateway: '198.18.1.1', oif: 3, metric: 100 });
    const allVia3 = route({ table: 1010, nexthops: [{ ifindex: 3, gateway: '198.18.1.1' }, { ifindex: 3, gateway: '198.18.1.254' }] });
    const v6 = route({ dst: '2001:db8:1::/64', oif: 3, table: 1003, protocol: PROTO });
    const v6gw = route({ gateway: 'fe80::1', oif: 3 });
    const elsewhere = route({ dst: '198.18.2.0/24', oif: 5, scope: RT_SCOPE_LINK, table: 1020 });
    // A multipath route keeps its other nexthop (the one via eth0 is only marked dead).
    const mixed = route({ metric: 50, nexthops: [{ ifindex: 3, gateway: '198.18.1.1' }, { ifindex: 5, gateway: '198.18.2.1' }] });
    for (const r of [connected, gateway, mainDefault, allVia3, v6, v6gw, elsewhere, mixed]) b.route(r);

    expect(b.link(3, 'eth0', { up: false })).toBe(true);
    expect(routes(b.mirror)).toEqual([v6, v6gw, elsewhere, mixed]);
    // Addresses stay: IPv4 ones survive a down link, IPv6 ones are deleted with notifications.
    expect(b.mirror.addresses.size).toBe(2);
    // Coming back up does not resurrect anything; the kernel announces what it re-adds.
    expect(b.link(3, 'eth0')).toBe(true);
    expect(routes(b.mirror)).toEqual([v6, v6gw, elsewhere, mixed]);
  });

  it('a link first seen down drops IPv4 routes through it; a repeated down message is not a change', () => {
    const b = new MirrorBuilder();
    const r = route({ dst: '198.18.1.0/24', oif: 3, scope: RT_SCOPE_LINK });
    b.route(r);
    expect(b.link(3, 'eth0', { up: false })).toBe(true);
    expect(has(b.mirror, r)).toBe(false);
    expect(b.link(3, 'eth0', { up: false })).toBe(false);
  });
});

describe('addresses', () => {
  it('NEWADDR/DELADDR for both families, keyed by family, link, address and prefix', () => {
    const b = new MirrorBuilder();
    const v4 = { ifindex: 3, cidr: '198.18.1.2/24' };
    const v6 = { ifindex: 3, cidr: '2001:db8:1::2/64' };
    expect(b.address(v4)).toBe(true);
    expect(b.address(v6)).toBe(true);
    expect(b.address({ ifindex: 3, cidr: '198.18.1.2/16' })).toBe(true); // another prefix: another address
    expect([...b.mirror.addresses.keys()]).toEqual(['4|3|198.18.1.2/24', '6|3|2001:db8:1::2/64', '4|3|198.18.1.2/16']);
    expect(b.mirror.addresses.get('6|3|2001:db8:1::2/64' as AddressKey)).toEqual({
      family: 6, ifindex: 3, address: '2001:db8:1::2', prefixLength: 64, scope: 0, flags: 0x80,
    });
    expect(b.address(v4)).toBe(false); // same again
    expect(b.delAddress(v4)).toBe(true);
    expect(b.delAddress(v4)).toBe(false);
    expect(b.delAddress(v6)).toBe(true);
    expect([...b.mirror.addresses.keys()]).toEqual(['4|3|198.18.1.2/16']);
  });

  it('a change of flags, scope or peer is a change', () => {
    const b = new MirrorBuilder();
    b.address({ ifindex: 3, cidr: '2001:db8:1::2/64', flags: 0xc0 });
    expect(b.address({ ifindex: 3, cidr: '2001:db8:1::2/64', flags: 0x80 })).toBe(true); // DAD done
    expect(b.address({ ifindex: 3, cidr: '2001:db8:1::2/64', flags: 0x80 | IFA_F_DEPRECATED })).toBe(true);
    expect(b.address({ ifindex: 3, cidr: '2001:db8:1::2/64', flags: 0x80 | IFA_F_DEPRECATED, scope: RT_SCOPE_LINK })).toBe(true);
    expect(b.mirror.addresses.size).toBe(1);
    b.address({ ifindex: 5, cidr: '198.18.255.1/32', peer: '198.18.255.2' });
    expect(b.address({ ifindex: 5, cidr: '198.18.255.1/32', peer: '198.18.255.3' })).toBe(true);
    expect(b.mirror.addresses.get('4|5|198.18.255.1/32' as AddressKey)!.peer).toBe('198.18.255.3');
  });

  it('uses IFA_FLAGS (32 bits) over the u8 header flags, and IFA_LOCAL over IFA_ADDRESS', () => {
    const b = new MirrorBuilder();
    const message = addressMessage({ ifindex: 3, cidr: '2001:db8:1::2/64', flags: 0x100 | IFA_F_SECONDARY });
    expect(message.header.flags).toBe(IFA_F_SECONDARY);
    b.apply(RTM_NEWADDR, 0, message);
    expect([...b.mirror.addresses.values()][0]!.flags).toBe(0x101);

    const noFlagsAttribute = addressMessage({ ifindex: 3, cidr: '198.18.1.3/24', flags: IFA_F_SECONDARY });
    delete noFlagsAttribute.attributes.flags;
    b.apply(RTM_NEWADDR, 0, noFlagsAttribute);
    expect(b.mirror.addresses.get('4|3|198.18.1.3/24' as AddressKey)!.flags).toBe(IFA_F_SECONDARY);

    b.address({ ifindex: 5, cidr: '198.18.255.1/32', peer: '198.18.255.2' });
    expect(b.mirror.addresses.get('4|5|198.18.255.1/32' as AddressKey)).toMatchObject({ address: '198.18.255.1', peer: '198.18.255.2' });
  });

  it('ignores addresses of other families and without an address', () => {
    const b = new MirrorBuilder();
    const message = addressMessage({ ifindex: 3, cidr: '198.18.1.2/24' });
    expect(eventFromMessage(RTM_NEWADDR, 0, { ...message, header: { ...message.header, family: 7 } })).toBeUndefined();
    expect(eventFromMessage(RTM_NEWADDR, 0, { ...message, attributes: { label: 'eth0' } })).toBeUndefined();
    expect(b.mirror.addresses.size).toBe(0);
  });
});

describe('routes', () => {
  it('NEWROUTE adds, an identical repeat is not a change, DELROUTE removes exactly that route', () => {
    const b = new MirrorBuilder();
    const r = route({ gateway: '198.18.1.1', oif: 3, table: 1003, protocol: PROTO });
    const big = route({ dst: '2001:db8:1::/64', oif: 3, table: 70000, protocol: PROTO, prefsrc: '2001:db8:1::2' });
    expect(b.route(r)).toBe(true);
    expect(b.route(big)).toBe(true);
    expect(b.route(r)).toBe(false);
    expect(routes(b.mirror)).toEqual([r, big]);
    // A look-alike with another protocol or gateway is another route.
    expect(b.delRoute({ ...r, protocol: PROTO_STATIC })).toBe(false);
    expect(b.delRoute({ ...r, gateway: '198.18.1.254' })).toBe(false);
    expect(b.delRoute(r)).toBe(true);
    expect(b.delRoute(r)).toBe(false);
    expect(routes(b.mirror)).toEqual([big]);
  });

  it('routes differing only in metric, table or protocol coexist', () => {
    const b = new MirrorBuilder();
    const base = route({ gateway: '198.18.1.1', oif: 3, metric: 100 });
    for (const r of [base, { ...base, metric: 200 }, { ...base, table: 1003 }, { ...base, protocol: PROTO }]) b.route(r);
    expect(b.mirror.routes.size).toBe(4);
  });

  it('NLM_F_REPLACE drops the route it displaced from the same slot, and only from that slot', () => {
    const b = new MirrorBuilder();
    const old = route({ gateway: '198.18.1.1', oif: 3, table: 1003, protocol: PROTO });
    const appended = route({ gateway: '198.18.1.2', oif: 3, table: 1003, protocol: PROTO_STATIC }); // same slot
    const otherMetric = route({ gateway: '198.18.1.1', oif: 3, table: 1003, metric: 10, protocol: PROTO });
    const otherTable = route({ gateway: '198.18.1.1', oif: 3, table: 1004, protocol: PROTO });
    const otherFamily = route({ gateway: 'fe80::1', oif: 3, table: 1003, metric: 0, protocol: PROTO });
    for (const r of [old, appended, otherMetric, otherTable, otherFamily]) b.route(r);

    const replacement = route({ gateway: '198.18.1.254', oif: 3, table: 1003, protocol: PROTO });
    expect(b.route(replacement, NLM_F_REPLACE | NLM_F_CREATE)).toBe(true);
    expect(routes(b.mirror)).toEqual([otherMetric, otherTable, otherFamily, replacement]);
    // Replacing a route with itself is still reported: the kernel said something changed.
    expect(b.route(replacement, NLM_F_REPLACE)).toBe(true);
    expect(routes(b.mirror)).toEqual([otherMetric, otherTable, otherFamily, replacement]);
  });

  it('of the local table, keeps only which IPv6 addresses it delivers, as no route', () => {
    const b = new MirrorBuilder();
    b.link(3, 'eth0');
    const v6 = { ifindex: 3, cidr: '2001:db8:1::2/64' };
    // An address in DAD (or kept through a flap, DAD again without a word): not delivered yet.
    b.address({ ...v6, flags: 0x80 | IFA_F_TENTATIVE });
    expect(b.mirror.delivers(3, '2001:db8:1::2')).toBe(false);
    const local = route({ dst: '2001:db8:1::2/128', oif: 3, table: RT_TABLE_LOCAL, type: 2, metric: 0, protocol: 2 });
    expect(b.route(local)).toBe(true);
    expect(b.route(local)).toBe(false); // the same again
    expect(b.mirror.delivers(3, '2001:db8:1::2')).toBe(true);
    expect(b.mirror.delivers(4, '2001:db8:1::2')).toBe(false); // that link's copy is another address
    expect(b.mirror.routes.size).toBe(0);
    expect([...b.mirror.tables()]).toEqual([]);
    expect(b.delRoute(local)).toBe(true);
    expect(b.mirror.delivers(3, '2001:db8:1::2')).toBe(false);
    // A link's removal takes its local routes.
    b.route(local);
    b.delLink(3, 'eth0');
    expect(b.mirror.delivers(3, '2001:db8:1::2')).toBe(false);
  });

  it('ignores the rest of the local table and cloned routes, NEW and DEL alike', () => {
    const b = new MirrorBuilder();
    const local = route({ dst: '198.18.1.2/32', oif: 3, table: RT_TABLE_LOCAL, type: 2, scope: RT_SCOPE_HOST, protocol: 2 });
    expect(b.route(local)).toBe(false);
    const anycast = route({ dst: '2001:db8:1::/128', oif: 3, table: RT_TABLE_LOCAL, type: 4, metric: 0, protocol: 2 });
    expect(b.route(anycast)).toBe(false);
    const wanted = route({ dst: '2001:db8:5::1/128', oif: 3, gateway: 'fe80::1', table: 1003 });
    const cloned = routeToMessage(wanted);
    cloned.header.flags |= RTM_F_CLONED;
    expect(b.apply(RTM_NEWROUTE, 0, cloned)).toBe(false);
    expect(b.mirror.routes.size).toBe(0);

    b.route(wanted);
    expect(b.apply(RTM_DELROUTE, 0, cloned)).toBe(false);
    expect(has(b.mirror, wanted)).toBe(true);
  });

  it('ignores routes of families it does not model', () => {
    const b = new MirrorBuilder();
    const message = routeToMessage(route({ gateway: '198.18.1.1', oif: 3 }));
    expect(eventFromMessage(RTM_NEWROUTE, 0, { ...message, header: { ...message.header, family: 28 }, attributes: { oif: 3 } })).toBeUndefined();
    expect(b.mirror.routes.size).toBe(0);
  });
});

describe('rules', () => {
  const r = rule({ from: '198.18.1.2', table: 1003 });

  it('NEWRULE/DELRULE for both families', () => {
    const b = new MirrorBuilder();
    const v6 = rule({ from: '2001:db8:1::/64', table: 1003 });
    expect(b.rule(r)).toBe(true);
    expect(b.rule(v6)).toBe(true);
    expect([...b.mirror.rules.values()]).toEqual([
      { rule: r, count: 1 },
      { rule: v6, count: 1 },
    ]);
    expect(b.delRule(v6)).toBe(true);
    expect(b.delRule(v6)).toBe(false);
    expect([...b.mirror.rules.keys()]).toEqual([ruleKey(r)]);
  });

  it('counts duplicates, and deletes them one at a time', () => {
    const b = new MirrorBuilder();
    expect(b.rule(r)).toBe(true);
    expect(b.rule(r)).toBe(true);
    expect(b.rule(r)).toBe(true);
    expect(b.mirror.rules.get(ruleKey(r))).toEqual({ rule: r, count: 3 });
    expect(b.delRule(r)).toBe(true);
    expect(b.mirror.rules.get(ruleKey(r))!.count).toBe(2);
    expect(b.delRule(r)).toBe(true);
    expect(b.mirror.rules.get(ruleKey(r))!.count).toBe(1);
    expect(b.delRule(r)).toBe(true);
    expect(b.mirror.rules.has(ruleKey(r))).toBe(false);
    expect(b.delRule(r)).toBe(false);
  });

  it('rules that differ in any selector, the table or the protocol are different rules', () => {
    const b = new MirrorBuilder();
    for (const variant of [
      r,
      { ...r, table: 1004 },
      { ...r, protocol: PROTO_STATIC },
      { ...r, priority: 30001 },
      { ...r, iifname: 'eth0' },
      { ...r, fwmark: 1 },
      { ...r, src: '198.18.1.0', srcLength: 24 },
    ]) {
      b.rule(variant);
    }
    expect(b.mirror.rules.size).toBe(7);
    expect([...b.mirror.rules.values()].every((c) => c.count === 1)).toBe(true);
  });

  it('ignores the IPMR families (128, 129)', () => {
    const b = new MirrorBuilder();
    for (const family of [128, 129]) {
      const message = ruleToMessage(rule({ table: 254, priority: 32767, protocol: 2, family: 4 }));
      expect(eventFromMessage(RTM_NEWRULE, 0, { ...message, header: { ...message.header, family } })).toBeUndefined();
      expect(eventFromMessage(RTM_DELRULE, 0, { ...message, header: { ...message.header, family } })).toBeUndefined();
    }
    expect(b.mirror.rules.size).toBe(0);
  });
});

describe.runIf(HOST_LITTLE_ENDIAN)('a real kernel dump (test/fixtures)', () => {
  const mirror = new Mirror();
  for (const name of readdirSync(FIXTURES).filter((n) => /^(link|address|route|rule)-dump-\d+\.bin$/.test(n)).sort()) {
    for (const raw of splitDatagram(fixture(name))) {
      const message = decodeMessage(raw);
      if (!isRtnlBody(message.body)) continue;
      const event = eventFromMessage(message.type, message.flags, message.body);
      if (event) mirror.apply(event);
    }
  }

  it('holds the links, addresses, routes and rules, without the local table and IPMR rules', () => {
    expect([...mirror.links.values()].map((l) => l.name).sort()).toEqual(['lo', 'nic0', 'nic1', 'nic2', 'peer0', 'peer1', 'peer2']);
    expect(mirror.addresses.has(addressKey({ family: 6, ifindex: 3, address: '2001:db8:1::3', prefixLength: 64, scope: 0, flags: 0 }))).toBe(true);
    expect(routes(mirror).some((r) => r.table === RT_TABLE_LOCAL)).toBe(false);
    expect(routes(mirror).filter((r) => r.protocol === PROTO)).toHaveLength(6);
    expect([...mirror.rules.values()].every((c) => c.count === 1)).toBe(true);
    expect([...mirror.rules.values()].map((c) => c.rule.family).sort()).toEqual([4, 4, 4, 4, 4, 6, 6, 6]);
    expect([...mirror.rules.values()].filter((c) => c.rule.protocol === PROTO).map((c) => c.rule.table)).toEqual([1002, 1002]);
  });

  it('nic2 was dumped down, so no IPv4 route names it', () => {
    expect(routes(mirror).some((r) => r.family === 4 && r.oif === 7)).toBe(false);
  });

  it('keeps only default routes from the main table (where gateways are learned)', () => {
    const b = new MirrorBuilder();
    expect(b.route(route({ dst: '203.0.113.0/24', gateway: '198.18.1.1', oif: 3 }))).toBe(false);
    const mainDefault = route({ gateway: '198.18.1.1', oif: 3 });
    expect(b.route(mainDefault)).toBe(true);
    expect(routes(b.mirror)).toEqual([mainDefault]);
  });
});

// Checked against Linux 6.18 in a namespace: deleting an address announces only the address.
describe('what removing an address does to routes, unannounced', () => {
  it("the last IPv4 address of a device takes the device's IPv4 routes with it", () => {
    const b = new MirrorBuilder().nic(3, 'eth0', '198.18.1.2/24', '198.18.2.2/24', '2001:db8:1::2/64');
    const first = route({ dst: '198.18.1.0/24', oif: 3, scope: RT_SCOPE_LINK, table: 1003, protocol: PROTO, prefsrc: '198.18.1.2' });
    const second = route({ dst: '198.18.2.0/24', oif: 3, scope: RT_SCOPE_LINK, table: 1003, protocol: PROTO, prefsrc: '198.18.2.2' });
    const v6 = route({ dst: '2001:db8:1::/64', oif: 3, table: 1003, protocol: PROTO, metric: 1024 });
    for (const r of [first, second, v6]) b.route(r);
    // Not the last: the kernel leaves even the route that used it as its source.
    b.delAddress({ ifindex: 3, cidr: '198.18.2.2/24' });
    expect(routes(b.mirror)).toEqual([first, second, v6]);
    b.delAddress({ ifindex: 3, cidr: '198.18.1.2/24' });
    expect(routes(b.mirror)).toEqual([v6]);
  });

  it('an IPv6 address is struck from the routes that used it as their source', () => {
    const b = new MirrorBuilder().nic(3, 'eth0', '2001:db8:1::2/64', '2001:db8:2::2/64');
    const kept = route({ dst: '2001:db8:1::/64', oif: 3, table: 1003, protocol: PROTO, metric: 1024, prefsrc: '2001:db8:1::2' });
    const used = route({ dst: '2001:db8:2::/64', oif: 3, table: 1003, protocol: PROTO, metric: 1024, prefsrc: '2001:db8:2::2' });
    b.route(kept);
    b.route(used);
    b.delAddress({ ifindex: 3, cidr: '2001:db8:2::2/64' });
    const { prefsrc: _prefsrc, ...withoutSource } = used;
    expect(routes(b.mirror)).toEqual([kept, withoutSource]);
  });
});

describe('replaying notifications held back during a dump', () => {
  it('does not count a rule twice when the dump already had it', () => {
    const b = new MirrorBuilder();
    const ours = rule({ from: '198.18.1.2', table: 1003 });
    b.rule(ours);
    expect(b.apply(RTM_NEWRULE, 0, ruleToMessage(ours), true)).toBe(false);
    expect([...b.mirror.rules.values()].map((r) => r.count)).toEqual([1]);
    // A delete replayed over it still counts.
    expect(b.apply(RTM_DELRULE, 0, ruleToMessage(ours), true)).toBe(true);
    expect(b.mirror.rules.size).toBe(0);
  });
});

describe('IPv6 multipath', () => {
  it('an appended nexthop replaces the single-path route it extends, whatever the nexthop order', () => {
    const b = new MirrorBuilder();
    const single = route({ gateway: 'fe80::1', oif: 3, metric: 1024 });
    const both = route({ metric: 1024, nexthops: [{ ifindex: 3, gateway: 'fe80::1' }, { ifindex: 5, gateway: 'fe80::2' }] });
    b.route(single);
    b.route(both);
    expect(routes(b.mirror)).toEqual([both]);
    const reversed = route({ metric: 1024, nexthops: [{ ifindex: 5, gateway: 'fe80::2' }, { ifindex: 3, gateway: 'fe80::1' }] });
    expect(b.delRoute(reversed)).toBe(true);
    expect(routes(b.mirror)).toEqual([]);
  });
});

describe('main-table device routes, kept as prefixes', () => {
  const hostRoute = (dst: string, oif: number, extra: Partial<Route> = {}) => route({ dst, oif, scope: RT_SCOPE_LINK, protocol: PROTO_STATIC, ...extra });

  it('say which device reaches an address, and follow delete, replace, device down and link removal', () => {
    const b = new MirrorBuilder().nic(3, 'eth0', '198.18.1.2/24').nic(4, 'eth1', '198.18.2.2/24');
    b.route(hostRoute('198.18.9.1', 3));
    b.route(hostRoute('198.18.64.0/20', 4));
    expect(b.mirror.routes.size).toBe(0); // not whole routes: only their prefixes
    expect(b.mirror.mainDeviceRouteCovers(3, 4, '198.18.9.1')).toBe(true);
    expect(b.mirror.mainDeviceRouteCovers(4, 4, '198.18.9.1')).toBe(false);
    expect(b.mirror.mainDeviceRouteCovers(4, 4, '198.18.70.9')).toBe(true);
    b.route(hostRoute('198.18.9.1', 4), NLM_F_REPLACE);
    expect(b.mirror.mainDeviceRouteCovers(3, 4, '198.18.9.1')).toBe(false);
    expect(b.mirror.mainDeviceRouteCovers(4, 4, '198.18.9.1')).toBe(true);
    b.delRoute(hostRoute('198.18.9.1', 4));
    expect(b.mirror.mainDeviceRouteCovers(4, 4, '198.18.9.1')).toBe(false);
    b.link(4, 'eth1', { up: false });
    expect(b.mirror.mainDeviceRouteCovers(4, 4, '198.18.70.9')).toBe(false);
  });

  it('cover exactly the addresses of their prefix, at every length and on both halves of the IPv4 space', () => {
    const b = new MirrorBuilder().nic(3, 'eth0', '198.18.1.2/24');
    const prefixes = ['0.0.0.0/1', '203.0.113.128/25', '255.255.255.255/32', '128.0.0.1/32', '198.51.100.6/31'];
    for (const prefix of prefixes) b.route(hostRoute(prefix, 3));
    const covered = (address: string) => b.mirror.mainDeviceRouteCovers(3, 4, address);
    expect(['127.255.255.255', '10.0.0.1', '203.0.113.128', '203.0.113.255', '255.255.255.255', '128.0.0.1', '198.51.100.6', '198.51.100.7'].filter(covered)).toHaveLength(8);
    expect(['203.0.113.127', '255.255.255.254', '128.0.0.2', '198.51.100.5', '198.51.100.8', '192.0.2.1'].filter(covered)).toEqual([]);
    // Two metrics for one prefix: the second stays when the first goes.
    b.route(hostRoute('203.0.113.128/25', 3, { metric: 50 }));
    b.delRoute(hostRoute('203.0.113.128/25', 3));
    expect(covered('203.0.113.200')).toBe(true);
    b.delRoute(hostRoute('203.0.113.128/25', 3, { metric: 50 }));
    expect(covered('203.0.113.200')).toBe(false);
    // The last IPv4 address gone takes the IPv4 prefixes, not the IPv6 ones.
    b.route(hostRoute('2001:db8:9::/64', 3));
    b.delAddress({ ifindex: 3, cidr: '198.18.1.2/24' });
    expect(covered('255.255.255.255')).toBe(false);
    expect(b.mirror.mainDeviceRouteCovers(3, 6, '2001:db8:9::1')).toBe(true);
  });

  it('cover exactly the addresses of their prefix for IPv6 too, at every length held', () => {
    const b = new MirrorBuilder().nic(3, 'eth0', '2001:db8:1::2/64');
    for (const prefix of ['8000::/1', '2001:db8:9::/48', '2001:db8:7::6/127', '2001:db8:5::1/128']) b.route(hostRoute(prefix, 3));
    const covered = (address: string) => b.mirror.mainDeviceRouteCovers(3, 6, address);
    expect(['ffff::1', '8000::', '2001:db8:9::', '2001:db8:9:ffff::1', '2001:db8:7::6', '2001:db8:7::7', '2001:db8:5::1'].filter(covered)).toHaveLength(7);
    expect(['7fff::1', '2001:db8:a::', '2001:db8:8:ffff::1', '2001:db8:7::5', '2001:db8:7::8', '2001:db8:5::2', '2001:db8:5::'].filter(covered)).toEqual([]);
    b.delRoute(hostRoute('2001:db8:9::/48', 3));
    expect(covered('2001:db8:9::1')).toBe(false);
    expect(covered('2001:db8:7::7')).toBe(true);
  });

  it('are not kept if they cannot reach a gateway: IPv4 of universe scope, not unicast, via a gateway', () => {
    const b = new MirrorBuilder().nic(3, 'eth0', '198.18.1.2/24');
    b.route(hostRoute('198.18.9.1', 3, { scope: 0 }));
    b.route(hostRoute('198.18.9.2', 3, { type: 6 }));
    b.route(route({ dst: '198.18.9.3/32', gateway: '198.18.1.1', oif: 3 }));
    for (const address of ['198.18.9.1', '198.18.9.2', '198.18.9.3']) expect(b.mirror.mainDeviceRouteCovers(3, 4, address)).toBe(false);
    b.route(hostRoute('2001:db8:9::/64', 3));
    expect(b.mirror.mainDeviceRouteCovers(3, 6, '2001:db8:9::1')).toBe(true);
  });

  it('become whole routes when their device is renamed into plumbing, and prefixes again when renamed out', () => {
    const b = new MirrorBuilder((_route, name) => name?.startsWith('docker') === true);
    b.link(5, 'eth5');
    const container = hostRoute('203.0.113.0/28', 5);
    b.route(container);
    expect(b.mirror.routes.has(routeKey(container))).toBe(false);
    b.mirror.takeChanges();
    b.link(5, 'docker0');
    expect(b.mirror.routes.get(routeKey(container))).toEqual(container);
    expect(b.mirror.takeChanges().routes).toEqual([container]);
    b.link(5, 'eth5');
    expect(b.mirror.routes.has(routeKey(container))).toBe(false);
    expect(b.mirror.mainDeviceRouteCovers(5, 4, '203.0.113.1')).toBe(true);
  });
});
