// Routes of tables symroute does not use are passed over before they are decoded: the peek
// at a raw message's table and protocol, the predicate that judges them, and the daemon
// (against a scripted kernel) fetching a table once a link makes it matter.
import { afterEach, describe, expect, it } from 'vitest';
import { defaultConfig, type Config } from '../../src/config/config.js';
import { RouteInterest } from '../../src/domain/interest.js';
import { RTN_LOCAL, RTN_UNICAST } from '../../src/domain/constants.js';
import { encodeAttribute, encodeMessage, splitDatagram, type RawMessage } from '../../src/netlink/codec.js';
import { RTM_DELROUTE, RTM_GETROUTE, RTM_NEWLINK, RTM_NEWROUTE } from '../../src/netlink/constants.js';
import { decodeMessage, encodeBody, encodeRequest, peekRoute, type RouteMessage } from '../../src/netlink/messages.js';
import { RTA_OIF, RTA_TABLE } from '../../src/netlink/schemas.js';
import { routeFromMessage, routeToMessage } from '../../src/kernel/objects.js';
import { fixture, linkMessage, PROTO, PROTO_BOOT, PROTO_KERNEL, PROTO_STATIC, route } from '../support/builders.js';
import { metricTotal, settle, startScriptedDaemon, stopScriptedDaemons } from '../support/scripted-daemon.js';
import { ScriptedKernel } from '../support/scripted-kernel.js';

/** A route as the kernel sends it: a table >= 256 says RT_TABLE_COMPAT (252) in the header. */
function kernelRoute(spec: Parameters<typeof route>[0], type = RTM_NEWROUTE): RawMessage {
  const r = route(spec);
  const body = routeToMessage(r);
  const message: RouteMessage = { ...body, header: { ...body.header, table: r.table < 256 ? r.table : 252 } };
  return splitDatagram(encodeRequest({ type, flags: 0, seq: 0, portId: 0 }, message))[0]!;
}

const raw = (type: number, payload: Uint8Array): RawMessage => splitDatagram(encodeMessage({ type, flags: 0, seq: 0, portId: 0 }, payload))[0]!;

const RTN_ANYCAST = 4;

describe('peekRoute', () => {
  it('reads family, table, protocol and type from the rtmsg header of an IPv4 or IPv6 route below table 256', () => {
    expect(peekRoute(kernelRoute({ dst: '198.18.0.0/24', oif: 2, table: 254, protocol: PROTO_BOOT }))).toEqual({ family: 4, table: 254, protocol: PROTO_BOOT, type: RTN_UNICAST });
    expect(peekRoute(kernelRoute({ dst: '2001:db8::/64', oif: 2, table: 100, protocol: PROTO }, RTM_DELROUTE))).toEqual({ family: 6, table: 100, protocol: PROTO, type: RTN_UNICAST });
  });

  it('reads a table >= 256 from RTA_TABLE, also when the header holds 0 (as symroute sends it)', () => {
    expect(peekRoute(kernelRoute({ dst: '198.18.0.0/24', oif: 2, table: 1002, protocol: PROTO_STATIC }))).toEqual({ family: 4, table: 1002, protocol: PROTO_STATIC, type: RTN_UNICAST });
    expect(peekRoute(kernelRoute({ dst: '2001:db8::/64', gateway: '2001:db8::1', oif: 2, table: 0xffff_fff0 }))).toEqual({
      family: 6,
      table: 0xffff_fff0,
      protocol: PROTO_BOOT,
      type: RTN_UNICAST,
    });
    const asSent = splitDatagram(encodeRequest({ type: RTM_NEWROUTE, flags: 0, seq: 0, portId: 0 }, routeToMessage(route({ dst: '198.18.0.0/24', oif: 2, table: 70000 }))))[0]!;
    expect(peekRoute(asSent)).toEqual({ family: 4, table: 70000, protocol: PROTO_BOOT, type: RTN_UNICAST });
  });

  it('takes table 252 itself when RTA_TABLE says so, or is missing', () => {
    expect(peekRoute(kernelRoute({ dst: '198.18.0.0/24', oif: 2, table: 252 }))?.table).toBe(252);
    const header = encodeBody(routeToMessage(route({ dst: '198.18.0.0/24', table: 252 }))).subarray(0, 12);
    expect(peekRoute(raw(RTM_NEWROUTE, Buffer.concat([header, encodeAttribute(RTA_OIF, new Uint8Array(4))])))?.table).toBe(252);
  });

  it('agrees with the full decode on every route of the captured kernel dumps', () => {
    let routes = 0;
    for (const name of ['route-dump-0.bin', 'route-dump-1.bin']) {
      for (const message of splitDatagram(fixture(name))) {
        const decoded = decodeMessage(message);
        if (decoded.body.kind !== 'route') continue;
        const model = routeFromMessage(decoded.body)!;
        expect(peekRoute(message)).toEqual({ family: model.family, table: model.table, protocol: model.protocol, type: model.type });
        routes++;
      }
    }
    expect(routes).toBeGreaterThan(5);
  });

  it('says nothing of other messages, other families, or one too short or malformed to tell', () => {
    const good = kernelRoute({ dst: '198.18.0.0/24', oif: 2, table: 1002 });
    expect(peekRoute({ ...good, type: RTM_GETROUTE })).toBeUndefined();
    expect(peekRoute(splitDatagram(encodeRequest({ type: RTM_NEWLINK, flags: 0, seq: 0, portId: 0 }, linkMessage(2, 'eth0')))[0]!)).toBeUndefined();
    const ipmr = Uint8Array.from(good.payload);
    ipmr[0] = 128; // RTNL_FAMILY_IPMR: its attributes mean other things
    expect(peekRoute({ ...good, payload: ipmr })).toBeUndefined();
    expect(peekRoute({ ...good, payload: good.payload.subarray(0, 11) })).toBeUndefined();
    expect(peekRoute({ ...good, payload: good.payload.subarray(0, good.payload.length - 2) })).toBeUndefined(); // RTA_TABLE cut short
    const header = good.payload.subarray(0, 12);
    const liar = Buffer.concat([header, Buffer.from([200, 0, RTA_TABLE, 0, 1, 2, 3, 4])]); // length past the end
    expect(peekRoute(raw(RTM_NEWROUTE, liar))).toBeUndefined();
    const wide = Buffer.concat([header, encodeAttribute(RTA_TABLE, new Uint8Array(2))]); // a u16 where a u32 belongs
    expect(peekRoute(raw(RTM_NEWROUTE, wide))).toBeUndefined();
  });
});

describe('RouteInterest', () => {
  const config = (): Config => ({ ...defaultConfig(), table: { base: 1000, pinned: { wan: 77, lan: 4_000_000_000 } } });
  const unicast = (table: number, protocol: number) => ({ family: 4 as const, table, protocol, type: RTN_UNICAST });

  it('keeps symroute\'s own routes, main, pinned tables and base + ifindex of known links; of local, IPv6 local routes', () => {
    const interest = new RouteInterest(config(), [2, 3]);
    expect(interest.matters(unicast(254, PROTO_BOOT))).toBe(true);
    expect(interest.matters(unicast(1002, PROTO_STATIC))).toBe(true);
    expect(interest.matters(unicast(1003, PROTO_BOOT))).toBe(true);
    expect(interest.matters(unicast(77, PROTO_STATIC))).toBe(true);
    expect(interest.matters(unicast(4_000_000_000, PROTO_STATIC))).toBe(true);
    expect(interest.matters(unicast(500, PROTO))).toBe(true); // its own, wherever: it may have to remove them
    expect(interest.matters(unicast(500, PROTO_STATIC))).toBe(false);
    expect(interest.matters(unicast(1004, PROTO_STATIC))).toBe(false);
    expect(interest.matters(unicast(1000, PROTO_STATIC))).toBe(false);
    expect(interest.matters(unicast(253, PROTO_BOOT))).toBe(false);
    expect(interest.matters(unicast(0xffff_ffff, PROTO_BOOT))).toBe(false);
    expect(interest.matters(unicast(255, PROTO_BOOT))).toBe(false);
    expect(interest.matters(unicast(255, PROTO))).toBe(false);
    // Which IPv6 addresses the kernel delivers (DAD done): IPv4 delivers with the address.
    expect(interest.matters({ family: 6, table: 255, protocol: PROTO_KERNEL, type: RTN_LOCAL })).toBe(true);
    expect(interest.matters({ family: 4, table: 255, protocol: PROTO_KERNEL, type: RTN_LOCAL })).toBe(false);
    expect(interest.matters({ family: 6, table: 255, protocol: PROTO_KERNEL, type: RTN_ANYCAST })).toBe(false);
  });

  it('adds the table of a link that appears, and says so only the first time', () => {
    const interest = new RouteInterest(config(), [2]);
    expect(interest.cover(2)).toBeUndefined();
    expect(interest.matters(unicast(1005, PROTO_STATIC))).toBe(false);
    expect(interest.cover(5)).toBe(1005);
    expect(interest.matters(unicast(1005, PROTO_STATIC))).toBe(true);
    expect(interest.cover(5)).toBeUndefined();
  });
});

describe('the daemon against a scripted kernel: tables that start to matter', () => {
  afterEach(stopScriptedDaemons);
  const start = (kernel: ScriptedKernel) => startScriptedDaemon(kernel);

  it('passes over foreign tables, then fetches a NIC\'s table when the NIC appears and leaves it alone for its foreign route', async () => {
    const kernel = new ScriptedKernel();
    kernel.link(2, 'eth0');
    kernel.address({ ifindex: 2, cidr: '198.18.0.10/24' });
    kernel.addRoute(route({ dst: '203.0.113.0/24', oif: 2, table: 500, protocol: PROTO_STATIC }));
    kernel.addRoute(route({ dst: '203.0.113.0/24', oif: 2, table: 1003, protocol: PROTO_STATIC }));
    const { daemon, metrics, lines } = await start(kernel);
    // The kernel is asked for main, local, symroute's own routes, and eth0's table: nothing else comes.
    expect([...kernel.log.keys()].filter((entry) => entry.startsWith('dump_route'))).toEqual([
      'dump_route protocol 83',
      'dump_route',
      'dump_route table 255',
      'dump_route table 1002',
    ]);
    expect(await metricTotal(metrics.routesSkipped)).toBe(0);
    expect(kernel.ownedRules(PROTO)).toHaveLength(1);

    // Routes into table 500 keep being passed over; eth1 (index 3) makes table 1003 matter.
    kernel.addRoute(route({ dst: '203.0.113.128/25', oif: 2, table: 500, protocol: PROTO_STATIC }));
    kernel.link(3, 'eth1');
    kernel.address({ ifindex: 3, cidr: '198.18.1.10/24' });
    await settle({ daemon, kernel });
    expect(kernel.count('dump_route table 1003')).toBe(1);
    expect(kernel.count('dump_route')).toBe(1); // no full re-dump
    expect(await metricTotal(metrics.routesSkipped)).toBe(1); // the notification of the route into table 500
    expect(await metricTotal(metrics.resyncs)).toBe(0);
    expect(kernel.ownedRules(PROTO).map((r) => r.table)).toEqual([1002]);
    const warnings = lines.filter((l) => l.level >= 40).map((l) => l.msg);
    expect(warnings).toEqual([expect.stringMatching(/^eth1: table 1003 holds a route symroute does not own \(203\.0\.113\.0\/24 dev eth0 table 1003/)]);
    expect(lines.some((l) => l.msg === 'dumping the routes of tables that now matter')).toBe(true);
    expect(kernel.errors()).toEqual([]);

    // A route added to the table once it matters is seen: eth2's table gets one too.
    kernel.link(4, 'eth2');
    kernel.address({ ifindex: 4, cidr: '198.18.2.10/24' });
    await settle({ daemon, kernel });
    expect(kernel.ownedRules(PROTO).map((r) => r.table).sort()).toEqual([1002, 1004]);
    kernel.addRoute(route({ dst: '203.0.113.0/24', oif: 2, table: 1004, protocol: PROTO_STATIC }));
    await settle({ daemon, kernel });
    expect(lines.some((l) => l.level >= 40 && l.msg.startsWith('eth2: table 1004 holds a route symroute does not own'))).toBe(true);
  });

  it('reads the new table\'s notifications while its dump is under way, and replays them over it', async () => {
    const kernel = new ScriptedKernel();
    kernel.link(2, 'eth0');
    kernel.address({ ifindex: 2, cidr: '198.18.0.10/24' });
    const { daemon, metrics, lines } = await start(kernel);
    // The dump of table 1003 is answered (empty) but the answer waits; meanwhile someone
    // puts a route into 1003. Its notification must be read, held back, and replayed.
    kernel.requests.held = true;
    kernel.link(3, 'eth1');
    kernel.address({ ifindex: 3, cidr: '198.18.1.10/24' });
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(kernel.count('dump_route table 1003')).toBe(1);
    kernel.addRoute(route({ dst: '203.0.113.0/24', oif: 2, table: 1003, protocol: PROTO_STATIC }));
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    kernel.requests.release();
    await settle({ daemon, kernel });
    expect(kernel.ownedRules(PROTO).map((r) => r.table)).toEqual([1002]);
    expect(lines.some((l) => l.level >= 40 && l.msg.startsWith('eth1: table 1003 holds a route symroute does not own'))).toBe(true);
    expect(await metricTotal(metrics.resyncs)).toBe(0);
    expect(kernel.errors()).toEqual([]);
  });

  it('fetches a table of 150k foreign routes when it starts to matter (more routes than a call takes arguments)', async () => {
    const kernel = new ScriptedKernel();
    kernel.link(2, 'eth0');
    kernel.address({ ifindex: 2, cidr: '198.18.0.10/24' });
    for (let i = 0; i < 150_000; i++) {
      kernel.addRoute(route({ dst: `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}/32`, oif: 2, table: 1003, protocol: PROTO_STATIC }));
    }
    const { daemon, metrics } = await start(kernel);
    kernel.link(3, 'eth1');
    kernel.address({ ifindex: 3, cidr: '198.18.1.10/24' });
    await settle({ daemon, kernel });
    expect(kernel.count('dump_route table 1003')).toBe(1);
    expect(kernel.ownedRules(PROTO).map((r) => r.table)).toEqual([1002]); // eth1's table is taken
    expect(await metricTotal(metrics.resyncs)).toBe(0);
  }, 60_000);

  it('fetches each table that starts to matter once, with one kernel-filtered dump, however many come at once', async () => {
    const kernel = new ScriptedKernel();
    kernel.link(2, 'eth0');
    kernel.address({ ifindex: 2, cidr: '198.18.0.10/24' });
    kernel.addRoute(route({ dst: '203.0.113.0/24', oif: 2, table: 1050, protocol: PROTO_STATIC }));
    const { daemon, metrics } = await start(kernel);
    for (let i = 0; i < 100; i++) kernel.link(3 + i, `eth${1 + i}`);
    for (let i = 0; i < 100; i++) kernel.address({ ifindex: 3 + i, cidr: `198.18.${1 + i}.10/24` });
    await settle({ daemon, kernel });
    // Work in proportion to the links that appeared: not a dump of every route.
    const tableDumps = [...kernel.log.keys()].filter((entry) => entry.startsWith('dump_route table') && entry !== 'dump_route table 255');
    expect(tableDumps).toHaveLength(101);
    expect(tableDumps.every((entry) => kernel.count(entry) === 1)).toBe(true);
    expect(kernel.count('dump_route')).toBe(1);
    expect(await metricTotal(metrics.resyncs)).toBe(0);
    // eth48 (index 50) sits behind table 1050, which holds a foreign route: left alone.
    expect(kernel.ownedRules(PROTO).map((r) => r.table)).not.toContain(1050);
    // 100 `from` rules: from 48 on they are laid out as a tree (rule-skips.ts), off rule.priority.
    expect(kernel.ownedRules(PROTO).filter((r) => r.srcLength > 0 && r.table > 0)).toHaveLength(100);
  });
});
