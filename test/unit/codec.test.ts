import { readdirSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bytesToAddress } from '../../src/net/ip.js';
import type { Route, Rule } from '../../src/domain/model.js';
import {
  align4,
  concat,
  encodeAttribute,
  encodeMessage,
  HOST_LITTLE_ENDIAN,
  NetlinkDecodeError,
  NLMSG_HDRLEN,
  splitDatagram,
  viewOf,
} from '../../src/netlink/codec.js';
import { AF_INET, AF_INET6, IFF_LOOPBACK, IFF_UP, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_CREATE, NLM_F_EXCL, NLM_F_MULTI, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NLMSGERR_ATTR_MSG, NLMSGERR_ATTR_OFFS, RTM_DELADDR, RTM_DELLINK, RTM_DELRULE, RTM_GETROUTE, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE, RTM_NEWRULE } from '../../src/netlink/constants.js';
import { IFA_F_DEPRECATED, IFA_F_SECONDARY, IFA_F_TENTATIVE, RT_SCOPE_LINK, RT_SCOPE_UNIVERSE, RT_TABLE_LOCAL, RT_TABLE_MAIN, RTN_UNICAST } from '../../src/domain/constants.js';
import {
  decodeMessage,
  encodeBody,
  encodeRequest,
  isRtnlBody,
  peekRpFilterChange,
  type AddressMessage,
  type DecodedMessage,
  type LinkMessage,
  type RouteMessage,
  type RtnlBody,
  type RuleMessage,
} from '../../src/netlink/messages.js';
import {
  addressFromMessage,
  linkFromMessage,
  routeFromMessage,
  routeToMessage,
  ruleFromMessage,
  ruleToMessage,
} from '../../src/kernel/objects.js';
import { FIXTURES, fixture } from '../support/builders.js';

const ENOENT = 2;
const EINVAL = 22;
const ENETUNREACH = 101;
const RT_TABLE_COMPAT = 252;

// ------------------------------------------------------------------ helpers

const decodeDatagram = (datagram: Uint8Array): DecodedMessage[] => splitDatagram(datagram).map(decodeMessage);

/** Decodes one datagram; the only acceptable failure is a NetlinkDecodeError. */
function decodeOrReject(datagram: Uint8Array): DecodedMessage[] | NetlinkDecodeError {
  try {
    return decodeDatagram(datagram);
  } catch (error) {
    if (error instanceof NetlinkDecodeError) return error;
    throw new Error(`not a NetlinkDecodeError: ${String(error)} (${(error as Error)?.constructor?.name})`, {
      cause: error,
    });
  }
}

function u32(value: number): Uint8Array {
  const bytes = new Uint8Array(4);
  viewOf(bytes).setUint32(0, value >>> 0, HOST_LITTLE_ENDIAN);
  return bytes;
}
function s32(value: number): Uint8Array {
  const bytes = new Uint8Array(4);
  viewOf(bytes).setInt32(0, value, HOST_LITTLE_ENDIAN);
  return bytes;
}
const cstring = (text: string) => concat([Buffer.from(text), new Uint8Array(1)]);

/** An attribute header with whatever length it claims, followed by `payload` as is. */
function rawAttribute(claimedLength: number, type: number, payload: Uint8Array): Uint8Array {
  const header = new Uint8Array(4);
  viewOf(header).setUint16(0, claimedLength, HOST_LITTLE_ENDIAN);
  viewOf(header).setUint16(2, type, HOST_LITTLE_ENDIAN);
  return concat([header, payload]);
}

const RULE_HEADER = (family = AF_INET) =>
  encodeBody({
    kind: 'rule',
    header: { family, dstLen: 0, srcLen: 0, tos: 0, table: 0, action: 1, flags: 0 },
    attributes: {},
  });
const ROUTE_HEADER = (family = AF_INET) =>
  encodeBody({
    kind: 'route',
    header: { family, dstLen: 0, srcLen: 0, tos: 0, table: 0, protocol: 83, scope: 0, type: 1, flags: 0 },
    attributes: {},
  });
const message = (type: number, payload: Uint8Array, flags = NLM_F_MULTI) =>
  encodeMessage({ type, flags, seq: 7, portId: 4242 }, payload);

/** A completion with -0 turned into 0 (see the "+0, not -0" test), for toEqual. */
const plain = (body: unknown): unknown => JSON.parse(JSON.stringify(body));

function expectDecodeError(datagram: Uint8Array, pattern?: RegExp): void {
  const result = decodeOrReject(datagram);
  expect(result).toBeInstanceOf(NetlinkDecodeError);
  if (pattern) expect((result as Error).message).toMatch(pattern);
}

// ------------------------------------------------------------------ generators

const u8 = fc.integer({ min: 0, max: 0xff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32Value = fc.integer({ min: 0, max: 0xffffffff });
const s32Value = fc.integer({ min: -0x80000000, max: 0x7fffffff });
const table = fc.oneof(u32Value, fc.integer({ min: 0, max: 300 }), fc.integer({ min: 256, max: 70000 }));
const text = (maxLength: number) =>
  fc.string({ unit: 'grapheme', maxLength }).filter((s) => !s.includes('\0'));

const v4 = fc.uint8Array({ minLength: 4, maxLength: 4 }).map(bytesToAddress);
const v6 = fc
  .array(fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffff })), { minLength: 8, maxLength: 8 })
  .map((groups) => bytesToAddress(Uint8Array.from(groups.flatMap((g) => [g >> 8, g & 0xff]))));
const familyAndAddress = fc.oneof(
  fc.constant({ family: AF_INET, address: v4 }),
  fc.constant({ family: AF_INET6, address: v6 }),
);

const routeBody: fc.Arbitrary<RouteMessage> = familyAndAddress.chain(({ family, address }) =>
  fc.record({
    kind: fc.constant('route' as const),
    header: fc.record({
      family: fc.constant(family),
      dstLen: u8,
      srcLen: u8,
      tos: u8,
      table: u8,
      protocol: u8,
      scope: u8,
      type: u8,
      flags: u32Value,
    }),
    attributes: fc.record(
      {
        dst: address,
        src: address,
        iif: u32Value,
        oif: u32Value,
        gateway: address,
        priority: u32Value,
        prefsrc: address,
        multipath: fc.array(
          fc.record(
            { flags: u8, hops: u8, ifindex: s32Value, gateway: address },
            { requiredKeys: ['flags', 'hops', 'ifindex'] },
          ),
          { minLength: 1, maxLength: 4 },
        ),
        table,
        pref: u8,
        nhId: u32Value,
      },
      { requiredKeys: [] },
    ),
  }),
);

const ruleBody: fc.Arbitrary<RuleMessage> = familyAndAddress.chain(({ family, address }) =>
  fc.record({
    kind: fc.constant('rule' as const),
    header: fc.record({ family: fc.constant(family), dstLen: u8, srcLen: u8, tos: u8, table: u8, action: u8, flags: u32Value }),
    attributes: fc.record(
      {
        dst: address,
        src: address,
        iifname: text(15),
        goto: u32Value,
        priority: u32Value,
        fwmark: u32Value,
        fwmask: u32Value,
        table,
        oifname: text(15),
        l3mdev: u8,
        protocol: u8,
        ipProto: u8,
      },
      { requiredKeys: [] },
    ),
  }),
);

const addressBody: fc.Arbitrary<AddressMessage> = familyAndAddress.chain(({ family, address }) =>
  fc.record({
    kind: fc.constant('address' as const),
    header: fc.record({ family: fc.constant(family), prefixlen: u8, flags: u8, scope: u8, index: u32Value }),
    attributes: fc.record(
      { address, local: address, label: text(15), broadcast: address, flags: u32Value },
      { requiredKeys: [] },
    ),
  }),
);

const lladdr = fc
  .uint8Array({ minLength: 1, maxLength: 20 })
  .map((bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(':'));
const linkBody: fc.Arbitrary<LinkMessage> = fc.record({
  kind: fc.constant('link' as const),
  // Only AF_UNSPEC links are decoded; other families (bridge ports) are passed over.
  header: fc.record({ family: fc.constant(0), type: u16, index: s32Value, flags: u32Value, change: u32Value }),
  attributes: fc.record(
    {
      address: lladdr,
      ifname: text(15),
      mtu: u32Value,
      master: u32Value,
      operstate: u8,
      linkinfo: fc.record({ kind: text(16) }, { requiredKeys: [] }),
    },
    { requiredKeys: [] },
  ),
});

const newType = { link: RTM_NEWLINK, address: RTM_NEWADDR, route: RTM_NEWROUTE, rule: RTM_NEWRULE } as const;
const anyBody: fc.Arbitrary<RtnlBody> = fc.oneof(routeBody, ruleBody, addressBody, linkBody);
const messageHeader = fc.record({
  typeOffset: fc.integer({ min: 0, max: 2 }), // NEW, DEL, GET
  flags: u16,
  seq: u32Value,
  portId: u32Value,
});

// Model objects, as the rest of symroute holds them.
const modelRoute: fc.Arbitrary<Route> = fc.oneof(fc.constant(4 as const), fc.constant(6 as const)).chain((family) => {
  const address = family === 4 ? v4 : v6;
  return fc
    .record(
      {
        table,
        dst: address,
        dstLength: fc.integer({ min: 0, max: family === 4 ? 32 : 128 }),
        metric: u32Value,
        protocol: u8,
        scope: u8,
        type: u8,
        oif: u32Value,
        gateway: address,
        prefsrc: address,
        nexthops: fc.array(fc.record({ ifindex: s32Value, gateway: address }, { requiredKeys: ['ifindex'] }), {
          minLength: 1,
          maxLength: 3,
        }),
      },
      { requiredKeys: ['table', 'dst', 'dstLength', 'metric', 'protocol', 'scope', 'type'] },
    )
    .map((r) => ({ family, ...r, dst: r.dstLength ? r.dst : family === 4 ? '0.0.0.0' : '::' }));
});

const modelRule: fc.Arbitrary<Rule> = fc.oneof(fc.constant(4 as const), fc.constant(6 as const)).chain((family) => {
  const address = family === 4 ? v4 : v6;
  const full = family === 4 ? 32 : 128;
  return fc
    .record(
      {
        priority: u32Value,
        table,
        action: u8,
        protocol: u8,
        src: address,
        srcLength: fc.integer({ min: 0, max: full }),
        dst: address,
        dstLength: fc.integer({ min: 0, max: full }),
        iifname: text(15),
        oifname: text(15),
        fwmark: u32Value,
        tos: u8,
      },
      { requiredKeys: ['priority', 'table', 'action', 'protocol', 'src', 'srcLength', 'dst', 'dstLength', 'tos'] },
    )
    .map(({ src, dst, ...r }) => ({
      family,
      ...r,
      ...(r.srcLength ? { src } : {}),
      ...(r.dstLength ? { dst } : {}),
    }));
});

// ------------------------------------------------------------------ round trips

describe('encode -> decode round trips', () => {
  it.each([
    ['route', routeBody],
    ['rule', ruleBody],
    ['address', addressBody],
    ['link', linkBody],
  ] as const)('%s bodies come back exactly as sent', (kind, body) => {
    fc.assert(
      fc.property(body as fc.Arbitrary<RtnlBody>, messageHeader, (b, h) => {
        const header = { type: newType[kind] + h.typeOffset, flags: h.flags, seq: h.seq, portId: h.portId };
        const datagram = encodeRequest(header, b);
        expect(datagram.length % 4).toBe(0);
        expect(viewOf(datagram).getUint32(0, HOST_LITTLE_ENDIAN)).toBe(datagram.length);
        const decoded = decodeDatagram(datagram);
        expect(decoded).toHaveLength(1);
        expect(decoded[0]).toEqual({ ...header, body: b });
      }),
      { numRuns: 500 },
    );
  });

  it('several messages in one datagram come back in order', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(anyBody, messageHeader), { minLength: 1, maxLength: 8 }), (parts) => {
        const datagram = concat(
          parts.map(([b, h]) => encodeRequest({ type: newType[b.kind] + h.typeOffset, flags: h.flags, seq: h.seq, portId: h.portId }, b)),
        );
        const decoded = decodeDatagram(datagram);
        expect(decoded.map((m) => m.body)).toEqual(parts.map(([b]) => b));
        expect(decoded.map((m) => m.seq)).toEqual(parts.map(([, h]) => h.seq));
      }),
      { numRuns: 200 },
    );
  });

  it('tables >= 256 travel in RTA_TABLE with RT_TABLE_UNSPEC in the header', () => {
    const r: Route = {
      family: 4, table: 70000, dst: '0.0.0.0', dstLength: 0, metric: 0, protocol: 83,
      scope: RT_SCOPE_UNIVERSE, type: RTN_UNICAST, oif: 3, gateway: '198.18.1.1',
    };
    const message = routeToMessage(r);
    expect(message.header.table).toBe(0);
    expect(message.attributes.table).toBe(70000);
    const [decoded] = decodeDatagram(encodeRequest({ type: RTM_NEWROUTE, flags: 0, seq: 1, portId: 0 }, message));
    expect(routeFromMessage(decoded!.body as RouteMessage)).toEqual(r);
    // The kernel's own convention for big tables in dumps: RT_TABLE_COMPAT in the u8 field.
    const compat = { ...message, header: { ...message.header, table: RT_TABLE_COMPAT } };
    expect(routeFromMessage(compat)?.table).toBe(70000);
  });

  it('model routes survive routeToMessage -> wire -> routeFromMessage', () => {
    fc.assert(
      fc.property(modelRoute, (r) => {
        const [decoded] = decodeDatagram(encodeRequest({ type: RTM_NEWROUTE, flags: 0, seq: 1, portId: 0 }, routeToMessage(r)));
        expect(routeFromMessage(decoded!.body as RouteMessage)).toEqual(r);
      }),
      { numRuns: 500 },
    );
  });

  it('model rules survive ruleToMessage -> wire -> ruleFromMessage', () => {
    fc.assert(
      fc.property(modelRule, (r) => {
        const [decoded] = decodeDatagram(encodeRequest({ type: RTM_NEWRULE, flags: 0, seq: 1, portId: 0 }, ruleToMessage(r)));
        expect(ruleFromMessage(decoded!.body as RuleMessage)).toEqual(r);
      }),
      { numRuns: 500 },
    );
  });

  it('an IPv6 multipath route decodes to its nexthops', () => {
    const r: Route = {
      family: 6, table: 1003, dst: '::', dstLength: 0, metric: 1024, protocol: 83, scope: 0, type: RTN_UNICAST,
      nexthops: [{ ifindex: 3, gateway: 'fe80::1' }, { ifindex: 5, gateway: '2001:db8:2::1' }, { ifindex: 7 }],
    };
    const wire = encodeRequest({ type: RTM_NEWROUTE, flags: 0, seq: 1, portId: 0 }, routeToMessage(r));
    const body = decodeDatagram(wire)[0]!.body as RouteMessage;
    expect(body.attributes.multipath).toEqual([
      { flags: 0, hops: 0, ifindex: 3, gateway: 'fe80::1' },
      { flags: 0, hops: 0, ifindex: 5, gateway: '2001:db8:2::1' },
      { flags: 0, hops: 0, ifindex: 7 },
    ]);
    expect(routeFromMessage(body)).toEqual(r);
  });

  it('skips attributes the policy does not name, and NLA_F_NESTED/NET_BYTEORDER bits', () => {
    const payload = concat([
      RULE_HEADER(),
      encodeAttribute(99, Uint8Array.from([1, 2, 3])), // unknown: skipped
      encodeAttribute(15 | 0x8000 | 0x4000, u32(1002)), // FRA_TABLE with both flag bits
      encodeAttribute(21, Uint8Array.from([83])),
    ]);
    const [decoded] = decodeDatagram(message(RTM_NEWRULE, payload));
    expect(decoded!.body).toEqual({
      kind: 'rule',
      header: { family: AF_INET, dstLen: 0, srcLen: 0, tos: 0, table: 0, action: 1, flags: 0 },
      attributes: { table: 1002, protocol: 83 },
    });
  });

  it('messages symroute does not model decode as "other"', () => {
    for (const type of [1, 4, 19, 23, 27, 28, 30, 35, 36, 100, 0xffff]) {
      const [decoded] = decodeDatagram(message(type, Uint8Array.from([1, 2, 3, 4])));
      expect(decoded!.body).toEqual({ kind: 'other' });
      expect(isRtnlBody(decoded!.body)).toBe(false);
    }
  });
});

// ------------------------------------------------------------------ real kernel dumps

const littleEndian = HOST_LITTLE_ENDIAN;
const fixtureFiles = readdirSync(FIXTURES).filter((name) => name.endsWith('.bin')).sort();
const dumpOf = (kind: string): DecodedMessage[] =>
  fixtureFiles
    .filter((name) => new RegExp(`^${kind}-dump-\\d+\\.bin$`).test(name))
    .sort((a, b) => Number(a.match(/(\d+)\.bin$/)![1]) - Number(b.match(/(\d+)\.bin$/)![1]))
    .flatMap((name) => decodeDatagram(fixture(name)));
const bodies = <T extends RtnlBody>(kind: T['kind']): T[] =>
  dumpOf(kind)
    .map((m) => m.body)
    .filter((b): b is T => b.kind === kind);

describe.runIf(littleEndian)('real kernel dumps (test/fixtures, see README.md there)', () => {
  it('has the fixtures', () => {
    for (const kind of ['link', 'address', 'route', 'rule']) {
      expect(fixtureFiles.some((name) => name.startsWith(`${kind}-dump-`))).toBe(true);
    }
  });

  it.each(['link', 'address', 'route', 'rule'])('the %s dump is multipart and ends in a clean NLMSG_DONE', (kind) => {
    const messages = dumpOf(kind);
    expect(messages.length).toBeGreaterThan(2);
    const seq = messages[0]!.seq;
    for (const m of messages) {
      expect(m.seq).toBe(seq);
      expect(m.flags & NLM_F_MULTI).toBe(NLM_F_MULTI);
    }
    expect(plain(messages.at(-1)!.body)).toEqual({ kind: 'done', errno: 0 });
    // Families symroute does not model (IPMR rules, say) are passed over as 'other'.
    expect(messages.slice(0, -1).every((m) => m.body.kind === kind || m.body.kind === 'other')).toBe(true);
    expect(messages.some((m) => m.body.kind === kind)).toBe(true);
  });

  it('links: names, indexes, flags, MAC addresses, kinds', () => {
    const links = bodies<LinkMessage>('link');
    expect(links.map((l) => [l.header.index, l.attributes.ifname])).toEqual([
      [1, 'lo'], [2, 'peer0'], [3, 'nic0'], [4, 'peer1'], [5, 'nic1'], [6, 'peer2'], [7, 'nic2'],
    ]);
    const byName = new Map(links.map((l) => [l.attributes.ifname!, l]));
    expect(linkFromMessage(byName.get('lo')!)).toEqual({ index: 1, name: 'lo', up: true, loopback: true });
    expect(linkFromMessage(byName.get('nic0')!)).toEqual({ index: 3, name: 'nic0', up: true, loopback: false });
    expect(linkFromMessage(byName.get('nic2')!)).toEqual({ index: 7, name: 'nic2', up: false, loopback: false });
    expect(byName.get('lo')!.header.flags & IFF_LOOPBACK).toBe(IFF_LOOPBACK);
    expect(byName.get('nic1')!.header.flags & IFF_UP).toBe(IFF_UP);
    expect(byName.get('nic0')!.attributes).toMatchObject({
      address: '02:00:00:00:00:01', mtu: 1500, linkinfo: { kind: 'veth' },
    });
    expect(byName.get('nic2')!.attributes.address).toBe('02:00:00:00:00:03');
    expect(byName.get('lo')!.attributes.mtu).toBe(65536);
  });

  it('addresses: IPv4 primary/secondary, point-to-point peer, IPv6 flags', () => {
    const addresses = bodies<AddressMessage>('address');
    const find = (address: string) =>
      addresses.find((a) => (a.attributes.local ?? a.attributes.address) === address)!;

    const primary = find('198.18.1.2');
    expect(primary.header).toEqual({ family: AF_INET, prefixlen: 24, flags: 0x80, scope: 0, index: 3 });
    expect(primary.attributes).toEqual({ address: '198.18.1.2', local: '198.18.1.2', label: 'nic0', flags: 0x80 });
    expect(find('198.18.1.3').attributes.flags! & IFA_F_SECONDARY).toBe(IFA_F_SECONDARY);

    expect(addressFromMessage(find('198.18.255.1'))).toEqual({
      family: 4, ifindex: 5, address: '198.18.255.1', prefixLength: 32, peer: '198.18.255.2', scope: 0, flags: 0x80,
    });

    // IFA_F_PERMANENT | IFA_F_NODAD, and deprecated (preferred_lft 0) for ::3.
    expect(addressFromMessage(find('2001:db8:1::2'))).toEqual({
      family: 6, ifindex: 3, address: '2001:db8:1::2', prefixLength: 64, scope: 0, flags: 0x82,
    });
    const deprecated = find('2001:db8:1::3');
    expect(deprecated.attributes.flags).toBe(0xa2);
    expect(deprecated.attributes.flags! & IFA_F_DEPRECATED).toBe(IFA_F_DEPRECATED);
    // nic2 is down: its address never finished DAD.
    const tentative = find('2001:db8:3::2');
    expect(tentative.header.index).toBe(7);
    expect(tentative.attributes.flags! & IFA_F_TENTATIVE).toBe(IFA_F_TENTATIVE);
    // IPv6 addresses carry IFA_ADDRESS only; loopback has scope host.
    expect(find('::1').attributes).toEqual({ address: '::1', flags: 0x80 });
    expect(find('::1').header.scope).toBe(254);
    expect(find('127.0.0.1').attributes.label).toBe('lo');
  });

  it('routes: table 1002 in RTA_TABLE, IPv4 and IPv6 multipath, main-table defaults', () => {
    const routes = bodies<RouteMessage>('route');
    const models = routes.map(routeFromMessage).filter((r): r is Route => r !== undefined);
    expect(models).toHaveLength(routes.length);

    const table1002 = routes.filter((r) => r.attributes.table === 1002);
    expect(table1002).toHaveLength(4);
    for (const r of table1002) {
      expect(r.header.table).toBe(RT_TABLE_COMPAT);
      expect(r.header.protocol).toBe(83);
    }
    expect(models.filter((r) => r.table === 1002)).toEqual([
      { family: 4, table: 1002, dst: '0.0.0.0', dstLength: 0, metric: 0, protocol: 83, scope: 0, type: 1, oif: 3, gateway: '198.18.1.1' },
      { family: 4, table: 1002, dst: '198.18.1.0', dstLength: 24, metric: 0, protocol: 83, scope: RT_SCOPE_LINK, type: 1, oif: 3, prefsrc: '198.18.1.2' },
      { family: 6, table: 1002, dst: '2001:db8:1::', dstLength: 64, metric: 1024, protocol: 83, scope: 0, type: 1, oif: 3, prefsrc: '2001:db8:1::2' },
      { family: 6, table: 1002, dst: '::', dstLength: 0, metric: 1024, protocol: 83, scope: 0, type: 1, oif: 3, gateway: '2001:db8:1::1' },
    ]);

    const multipath = routes.filter((r) => r.attributes.table === 1003);
    expect(multipath.map((r) => r.attributes.multipath)).toEqual([
      [
        { flags: 0, hops: 0, ifindex: 3, gateway: '198.18.1.1' },
        { flags: 0, hops: 0, ifindex: 5, gateway: '198.18.2.1' },
      ],
      [
        { flags: 0, hops: 0, ifindex: 3, gateway: '2001:db8:1::1' },
        { flags: 0, hops: 0, ifindex: 5, gateway: '2001:db8:2::1' },
      ],
    ]);
    expect(models.filter((r) => r.table === 1003).map((r) => r.nexthops)).toEqual([
      [{ ifindex: 3, gateway: '198.18.1.1' }, { ifindex: 5, gateway: '198.18.2.1' }],
      [{ ifindex: 3, gateway: '2001:db8:1::1' }, { ifindex: 5, gateway: '2001:db8:2::1' }],
    ]);

    const mainDefaults = models.filter((r) => r.table === RT_TABLE_MAIN && r.dstLength === 0);
    expect(mainDefaults).toEqual([
      {
        family: 4, table: 254, dst: '0.0.0.0', dstLength: 0, metric: 100, protocol: 4, scope: 0, type: 1,
        nexthops: [{ ifindex: 3, gateway: '198.18.1.1' }, { ifindex: 5, gateway: '198.18.2.1' }],
      },
      { family: 4, table: 254, dst: '0.0.0.0', dstLength: 0, metric: 200, protocol: 16, scope: 0, type: 1, oif: 5, gateway: '198.18.2.1' },
    ]);
    // The point-to-point peer's connected route, and the local table with its own types.
    expect(models).toContainEqual({
      family: 4, table: 254, dst: '198.18.255.2', dstLength: 32, metric: 0, protocol: 2, scope: RT_SCOPE_LINK, type: 1, oif: 5, prefsrc: '198.18.255.1',
    });
    expect(models.some((r) => r.table === RT_TABLE_LOCAL && r.family === 6)).toBe(true);
    // IPv6 routes carry RTA_PREF.
    expect(routes.find((r) => r.header.family === AF_INET6)!.attributes.pref).toBe(0);
  });

  it('rules: the proto 83 rule for table 1002, both families, and the IPMR families', () => {
    const rules = bodies<RuleMessage>('rule');
    const ours = rules.filter((r) => r.attributes.protocol === 83);
    expect(ours.map((r) => ruleFromMessage(r))).toEqual([
      { family: 4, priority: 30000, table: 1002, action: 1, protocol: 83, src: '198.18.1.2', srcLength: 32, dstLength: 0, tos: 0 },
      { family: 6, priority: 30000, table: 1002, action: 1, protocol: 83, src: '2001:db8:1::2', srcLength: 128, dstLength: 0, tos: 0 },
    ]);
    expect(ours[0]!.header.table).toBe(RT_TABLE_COMPAT);
    expect(ruleFromMessage(rules.find((r) => r.attributes.priority === 30001)!)).toMatchObject({
      table: 200, protocol: 4, src: '198.18.2.0', srcLength: 24,
    });
    // The local-table rule has priority 0: the kernel leaves FRA_PRIORITY out.
    expect(ruleFromMessage(rules[0]!)).toMatchObject({ family: 4, priority: 0, table: RT_TABLE_LOCAL });
    // RTNL_FAMILY_IPMR / IP6MR rules are in an AF_UNSPEC dump but are not ours to model:
    // they are passed over undecoded, so their attributes cannot trip the IP policies.
    const ipmr = decodeDatagram(fixture('rule-dump-0.bin')).filter((m) => m.body.kind === 'other');
    expect(ipmr.length).toBeGreaterThan(0);
    expect(rules.every((r) => r.header.family === 2 || r.header.family === 10)).toBe(true);
  });

  it('NLMSG_DONE with -ENOENT and its extended ack (strict dump of a missing table)', () => {
    const [done] = decodeDatagram(fixture('route-dump-enoent-0.bin'));
    expect(done!.type).toBe(NLMSG_DONE);
    expect(done!.flags & (NLM_F_MULTI | NLM_F_ACK_TLVS)).toBe(NLM_F_MULTI | NLM_F_ACK_TLVS);
    expect(done!.body).toEqual({ kind: 'done', errno: ENOENT, extackMessage: 'ipv4: FIB table does not exist' });
  });

  it('NLMSG_ERROR "Nexthop has invalid gateway", capped, with TLVs', () => {
    const [error] = decodeDatagram(fixture('error-invalid-gateway-0.bin'));
    expect(error!.type).toBe(NLMSG_ERROR);
    expect(error!.flags).toBe(NLM_F_CAPPED | NLM_F_ACK_TLVS);
    expect(error!.body).toMatchObject({ kind: 'ack', errno: ENETUNREACH, extackMessage: 'Nexthop has invalid gateway' });
  });

  it('a plain ACK is errno 0 and capped', () => {
    const [ack] = decodeDatagram(fixture('ack-0.bin'));
    expect(ack!.flags & NLM_F_CAPPED).toBe(NLM_F_CAPPED);
    expect(plain(ack!.body)).toEqual({ kind: 'ack', errno: 0 });
  });

  it('every decoded kernel body re-encodes to a body that decodes the same', () => {
    for (const name of fixtureFiles) {
      for (const m of decodeDatagram(fixture(name))) {
        if (!isRtnlBody(m.body)) continue;
        const again = decodeDatagram(encodeRequest(m, m.body));
        expect(again[0]!.body).toEqual(m.body);
      }
    }
  });

  it('truncating a fixture datagram at every offset decodes a prefix or throws NetlinkDecodeError', () => {
    for (const name of fixtureFiles) {
      const datagram = fixture(name);
      const whole = decodeDatagram(datagram);
      for (let cut = 0; cut < datagram.length; cut++) {
        const result = decodeOrReject(datagram.subarray(0, cut));
        // Only a cut at a message boundary can decode, and then to the messages before it.
        if (!(result instanceof NetlinkDecodeError)) expect(whole.slice(0, result.length)).toEqual(result);
      }
    }
  });

  it('a message cut short (its nlmsg_len shortened to match) decodes or throws NetlinkDecodeError', () => {
    let rejected = 0;
    for (const name of fixtureFiles) {
      for (const raw of splitDatagram(fixture(name))) {
        const full = encodeMessage(raw, raw.payload);
        for (let cut = NLMSG_HDRLEN; cut < full.length; cut++) {
          const short = Buffer.from(full.subarray(0, cut));
          viewOf(short).setUint32(0, cut, HOST_LITTLE_ENDIAN);
          if (decodeOrReject(short) instanceof NetlinkDecodeError) rejected++;
        }
      }
    }
    expect(rejected).toBeGreaterThan(1000);
  });

  it('random corruption of fixture bytes decodes or throws NetlinkDecodeError', () => {
    const datagrams = fixtureFiles.map(fixture);
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: datagrams.length - 1 }),
        fc.array(fc.tuple(fc.nat(), u8), { minLength: 1, maxLength: 6 }),
        (which, edits) => {
          const datagram = Buffer.from(datagrams[which]!);
          for (const [offset, value] of edits) datagram[offset % datagram.length] = value;
          decodeOrReject(datagram);
        },
      ),
      { numRuns: 3000 },
    );
  });
});

// ------------------------------------------------------------------ garbage and lies

describe('rejecting malformed input', () => {
  it('random bytes decode or throw NetlinkDecodeError, never anything else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 256 }), (bytes) => {
        decodeOrReject(bytes);
      }),
      { numRuns: 5000 },
    );
  });

  it('well-framed messages of every interesting type with random payloads decode or throw NetlinkDecodeError', () => {
    const types = [NLMSG_ERROR, NLMSG_DONE, 16, 17, 18, 19, 20, 21, 22, 24, 25, 26, 32, 33, 34, 35];
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            type: fc.constantFrom(...types),
            flags: fc.oneof(u16, fc.constantFrom(NLM_F_CAPPED, NLM_F_ACK_TLVS, NLM_F_CAPPED | NLM_F_ACK_TLVS)),
            payload: fc.uint8Array({ maxLength: 96 }),
          }),
          { minLength: 1, maxLength: 4 },
        ),
        (messages) => {
          const datagram = concat(messages.map((m) => encodeMessage({ type: m.type, flags: m.flags, seq: 1, portId: 0 }, m.payload)));
          decodeOrReject(datagram);
        },
      ),
      { numRuns: 5000 },
    );
  });

  it('well-framed messages with a valid header and random attribute bytes decode or throw NetlinkDecodeError', () => {
    const headers: [number, Uint8Array][] = [
      [RTM_NEWROUTE, ROUTE_HEADER(AF_INET)],
      [RTM_NEWROUTE, ROUTE_HEADER(AF_INET6)],
      [RTM_NEWRULE, RULE_HEADER(AF_INET)],
      [RTM_NEWRULE, RULE_HEADER(AF_INET6)],
      [RTM_NEWADDR, new Uint8Array(8).fill(0).map((_, i) => (i === 0 ? AF_INET6 : 0))],
      [RTM_NEWLINK, new Uint8Array(16)],
    ];
    // Attributes with plausible types and sometimes-lying lengths, to reach the value decoders.
    const attribute = fc
      .record({ length: fc.oneof(u16, fc.integer({ min: 0, max: 24 })), type: fc.integer({ min: 0, max: 32 }), payload: fc.uint8Array({ maxLength: 24 }) })
      .map(({ length, type, payload }) => rawAttribute(length, type, payload));
    fc.assert(
      fc.property(fc.integer({ min: 0, max: headers.length - 1 }), fc.array(attribute, { maxLength: 5 }), (which, attributes) => {
        const [type, header] = headers[which]!;
        decodeOrReject(message(type, concat([header, ...attributes])));
      }),
      { numRuns: 5000 },
    );
  });

  it('nlmsg_len that lies', () => {
    const valid = message(RTM_NEWRULE, RULE_HEADER());
    const longer = Buffer.from(valid);
    viewOf(longer).setUint32(0, valid.length + 4, HOST_LITTLE_ENDIAN);
    expectDecodeError(longer, /claims \d+ bytes, \d+ available/);
    const tiny = Buffer.from(valid);
    viewOf(tiny).setUint32(0, 8, HOST_LITTLE_ENDIAN);
    expectDecodeError(tiny, /claims 8 bytes/);
    const zero = Buffer.from(valid);
    viewOf(zero).setUint32(0, 0, HOST_LITTLE_ENDIAN); // would loop forever if accepted
    expectDecodeError(zero, /claims 0 bytes/);
    const huge = Buffer.from(valid);
    viewOf(huge).setUint32(0, 0xffffffff, HOST_LITTLE_ENDIAN);
    expectDecodeError(huge);
    expectDecodeError(concat([valid, new Uint8Array(7)]), /7 trailing bytes, too short for a message header/);
    expect(decodeDatagram(new Uint8Array(0))).toEqual([]);
  });

  it('an attribute length that lies', () => {
    const priority = encodeAttribute(6, u32(30000));
    expect(decodeDatagram(message(RTM_NEWRULE, concat([RULE_HEADER(), priority])))[0]!.body).toMatchObject({
      attributes: { priority: 30000 },
    });
    // Longer than what is left.
    expectDecodeError(message(RTM_NEWRULE, concat([RULE_HEADER(), rawAttribute(200, 6, u32(30000))])), /attribute 6 at offset 0 has length 200, 8 bytes left/);
    // Shorter than an attribute header; zero would never advance.
    expectDecodeError(message(RTM_NEWRULE, concat([RULE_HEADER(), rawAttribute(2, 6, u32(30000))])), /has length 2/);
    expectDecodeError(message(RTM_NEWRULE, concat([RULE_HEADER(), rawAttribute(0, 6, u32(30000))])), /has length 0/);
    // Also for attributes the policy does not know.
    expectDecodeError(message(RTM_NEWRULE, concat([RULE_HEADER(), rawAttribute(300, 99, u32(0))])), /attribute 99/);
    // Bytes after the last attribute that cannot be an attribute.
    expectDecodeError(message(RTM_NEWRULE, concat([RULE_HEADER(), priority, Uint8Array.from([1, 2])])), /2 trailing bytes after the last attribute/);
    // A lie inside a nested attribute (IFLA_LINKINFO).
    const linkinfo = encodeAttribute(18, rawAttribute(40, 1, cstring('veth')));
    expectDecodeError(message(RTM_NEWLINK, concat([new Uint8Array(16), linkinfo])), /attribute linkinfo: attribute 1 at offset 0 has length 40/);
  });

  it('a fixed-size attribute of the wrong size', () => {
    expectDecodeError(message(RTM_NEWRULE, concat([RULE_HEADER(), encodeAttribute(6, Uint8Array.from([1, 2]))])), /attribute priority: expected 4 bytes, got 2/);
    expectDecodeError(message(RTM_NEWRULE, concat([RULE_HEADER(), encodeAttribute(15, new Uint8Array(8))])), /attribute table: expected 4 bytes, got 8/);
    expectDecodeError(message(RTM_NEWRULE, concat([RULE_HEADER(), encodeAttribute(6, new Uint8Array(0))])), /expected 4 bytes, got 0/);
    expectDecodeError(message(RTM_NEWRULE, concat([RULE_HEADER(), encodeAttribute(21, u32(83))])), /attribute protocol: expected 1 bytes, got 4/);
    expectDecodeError(message(RTM_NEWROUTE, concat([ROUTE_HEADER(), encodeAttribute(4, Uint8Array.from([3, 0, 0]))])), /attribute oif: expected 4 bytes, got 3/);
  });

  it('an address of the wrong size or family', () => {
    expectDecodeError(message(RTM_NEWROUTE, concat([ROUTE_HEADER(), encodeAttribute(5, new Uint8Array(5))])), /attribute gateway: an IP address has 4 or 16 bytes, got 5/);
    expectDecodeError(message(RTM_NEWROUTE, concat([ROUTE_HEADER(AF_INET), encodeAttribute(5, new Uint8Array(16))])), /16-byte address in a family 2 message/);
    expectDecodeError(message(RTM_NEWROUTE, concat([ROUTE_HEADER(AF_INET6), encodeAttribute(1, new Uint8Array(4))])), /4-byte address in a family 10 message/);
  });

  it('a route of a family symroute does not model is passed over, not decoded', () => {
    // An IPMR (128) cache entry's attributes would not fit the IP route policy.
    const [ipmr] = decodeDatagram(message(RTM_NEWROUTE, concat([ROUTE_HEADER(128), encodeAttribute(1, new Uint8Array(3))])));
    expect(ipmr!.body).toEqual({ kind: 'other' });
    const [bridgePort] = decodeDatagram(message(RTM_NEWLINK, concat([Uint8Array.from([7, ...new Uint8Array(15)])])));
    expect(bridgePort!.body).toEqual({ kind: 'other' });
  });

  it('a header shorter than its struct', () => {
    expectDecodeError(message(RTM_NEWROUTE, new Uint8Array(8)), /route message: 8 bytes, shorter than its 12-byte header/);
    expectDecodeError(message(RTM_DELLINK, new Uint8Array(15)), /link message: 15 bytes, shorter than its 16-byte header/);
    expectDecodeError(message(RTM_DELADDR, new Uint8Array(0)), /address message: 0 bytes/);
    expectDecodeError(message(RTM_DELRULE, new Uint8Array(11)), /rule message/);
  });

  it('RTA_MULTIPATH whose nexthop lengths lie', () => {
    const nexthop = (length: number, ifindex: number, attributes: Uint8Array = new Uint8Array(0)) => {
      const header = new Uint8Array(8);
      viewOf(header).setUint16(0, length, HOST_LITTLE_ENDIAN);
      viewOf(header).setInt32(4, ifindex, HOST_LITTLE_ENDIAN);
      return concat([header, attributes]);
    };
    const route = (multipath: Uint8Array) => message(RTM_NEWROUTE, concat([ROUTE_HEADER(), encodeAttribute(9, multipath)]));
    const gateway = encodeAttribute(5, Uint8Array.from([198, 18, 1, 1]));
    expect((decodeDatagram(route(nexthop(16, 3, gateway)))[0]!.body as RouteMessage).attributes.multipath).toEqual([
      { flags: 0, hops: 0, ifindex: 3, gateway: '198.18.1.1' },
    ]);
    expectDecodeError(route(nexthop(0, 3)), /attribute multipath: nexthop at offset 0 has length 0/); // would never advance
    expectDecodeError(route(nexthop(6, 3)), /has length 6/);
    expectDecodeError(route(nexthop(64, 3, gateway)), /has length 64, 16 bytes left/);
    expectDecodeError(route(concat([nexthop(8, 3), Uint8Array.from([1, 2, 3])])), /nexthop at offset 8 has length 0, 3 bytes left/);
    // The nexthop's own attributes are checked too.
    expectDecodeError(route(nexthop(16, 3, encodeAttribute(5, new Uint8Array(16)))), /multipath/);
    expectDecodeError(route(nexthop(16, 3, rawAttribute(12, 5, u32(1)))), /multipath/);
  });
});

// ------------------------------------------------------------------ NLMSG_ERROR and NLMSG_DONE

describe('NLMSG_ERROR and NLMSG_DONE', () => {
  const INVALID_GATEWAY = 'Nexthop has invalid gateway';
  const request = encodeRequest(
    { type: RTM_NEWROUTE, flags: NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, seq: 42, portId: 4242 },
    routeToMessage({
      family: 4, table: 1004, dst: '0.0.0.0', dstLength: 0, metric: 0, protocol: 83, scope: 0, type: 1,
      oif: 3, gateway: '198.18.3.1',
    }),
  );
  const tlvs = (...parts: Uint8Array[]) => concat(parts);
  const msgTlv = (text: string) => encodeAttribute(NLMSGERR_ATTR_MSG, cstring(text));
  const offsTlv = (offset: number) => encodeAttribute(NLMSGERR_ATTR_OFFS, u32(offset));
  /** struct nlmsgerr: error, then the request (whole, or only its header when capped), then TLVs. */
  const errorMessage = (errno: number, flags: number, echoed: Uint8Array, extra: Uint8Array = new Uint8Array(0)) =>
    encodeMessage({ type: NLMSG_ERROR, flags, seq: 42, portId: 4242 }, concat([s32(-errno), echoed, new Uint8Array(align4(echoed.length) - echoed.length), extra]));
  const decodeOne = (datagram: Uint8Array) => {
    const messages = decodeDatagram(datagram);
    expect(messages).toHaveLength(1);
    return messages[0]!;
  };

  it('capped, with TLVs: the message and offset', () => {
    const m = decodeOne(errorMessage(EINVAL, NLM_F_CAPPED | NLM_F_ACK_TLVS, request.subarray(0, 16), tlvs(msgTlv(INVALID_GATEWAY), offsTlv(36))));
    expect(m).toMatchObject({ type: NLMSG_ERROR, seq: 42, portId: 4242 });
    expect(m.body).toEqual({ kind: 'ack', errno: EINVAL, extackMessage: INVALID_GATEWAY, extackOffset: 36 });
  });

  it('not capped, with TLVs: skips the whole echoed request', () => {
    const m = decodeOne(errorMessage(EINVAL, NLM_F_ACK_TLVS, request, tlvs(msgTlv(INVALID_GATEWAY))));
    expect(m.body).toEqual({ kind: 'ack', errno: EINVAL, extackMessage: INVALID_GATEWAY });
  });

  it('not capped, with TLVs, echoing a request whose nlmsg_len is not a multiple of 4', () => {
    const odd = Buffer.from(request.subarray(0, 30));
    viewOf(odd).setUint32(0, 30, HOST_LITTLE_ENDIAN);
    const m = decodeOne(errorMessage(EINVAL, NLM_F_ACK_TLVS, odd, tlvs(msgTlv(INVALID_GATEWAY))));
    expect(m.body).toEqual({ kind: 'ack', errno: EINVAL, extackMessage: INVALID_GATEWAY });
  });

  it('capped, without TLVs', () => {
    expect(decodeOne(errorMessage(ENETUNREACH, NLM_F_CAPPED, request.subarray(0, 16))).body).toEqual({ kind: 'ack', errno: ENETUNREACH });
  });

  it('not capped, without TLVs', () => {
    expect(decodeOne(errorMessage(ENETUNREACH, 0, request)).body).toEqual({ kind: 'ack', errno: ENETUNREACH });
  });

  it('TLV bytes without NLM_F_ACK_TLVS are not read', () => {
    const m = decodeOne(errorMessage(EINVAL, NLM_F_CAPPED, request.subarray(0, 16), tlvs(msgTlv(INVALID_GATEWAY))));
    expect(m.body).toEqual({ kind: 'ack', errno: EINVAL });
  });

  it('a success ACK (always capped by the kernel)', () => {
    expect(plain(decodeOne(errorMessage(0, NLM_F_CAPPED, request.subarray(0, 16))).body)).toEqual({ kind: 'ack', errno: 0 });
  });

  it('success is errno +0, not -0 (Completion.errno: "0 for success")', () => {
    // -0 === 0, but Object.is(-0, 0) is false: toEqual/toBe, and anything comparing with
    // Object.is or dividing by errno, tell them apart.
    const ack = decodeOne(errorMessage(0, NLM_F_CAPPED, request.subarray(0, 16))).body as { errno: number };
    const done = decodeOne(encodeMessage({ type: NLMSG_DONE, flags: NLM_F_MULTI, seq: 9, portId: 1 }, s32(0))).body as { errno: number };
    expect(Object.is(ack.errno, 0)).toBe(true);
    expect(Object.is(done.errno, 0)).toBe(true);
  });

  it('an error message shorter than struct nlmsgerr', () => {
    expectDecodeError(encodeMessage({ type: NLMSG_ERROR, flags: 0, seq: 1, portId: 0 }, s32(-EINVAL)), /shorter than struct nlmsgerr/);
    expectDecodeError(encodeMessage({ type: NLMSG_ERROR, flags: 0, seq: 1, portId: 0 }, new Uint8Array(19)), /shorter than struct nlmsgerr/);
  });

  it('malformed TLVs are a NetlinkDecodeError', () => {
    expectDecodeError(errorMessage(EINVAL, NLM_F_CAPPED | NLM_F_ACK_TLVS, request.subarray(0, 16), rawAttribute(99, NLMSGERR_ATTR_MSG, cstring('x'))), /extended ack/);
    expectDecodeError(errorMessage(EINVAL, NLM_F_CAPPED | NLM_F_ACK_TLVS, request.subarray(0, 16), encodeAttribute(NLMSGERR_ATTR_OFFS, Uint8Array.from([1]))), /extended ack/);
  });

  it('an echoed length that lies decodes or throws NetlinkDecodeError', () => {
    fc.assert(
      fc.property(u32Value, fc.boolean(), fc.uint8Array({ maxLength: 64 }), (length, withTlv, tail) => {
        const echoed = Buffer.from(request.subarray(0, 16));
        viewOf(echoed).setUint32(0, length, HOST_LITTLE_ENDIAN);
        const extra = withTlv ? concat([msgTlv(INVALID_GATEWAY), tail]) : tail;
        decodeOrReject(errorMessage(EINVAL, NLM_F_ACK_TLVS, echoed, extra));
      }),
      { numRuns: 2000 },
    );
  });

  it('NLMSG_DONE carrying -ENOENT, with and without an extended ack', () => {
    const done = (flags: number, payload: Uint8Array) => decodeOne(encodeMessage({ type: NLMSG_DONE, flags, seq: 9, portId: 1 }, payload));
    expect(done(NLM_F_MULTI, s32(-ENOENT)).body).toEqual({ kind: 'done', errno: ENOENT });
    expect(done(NLM_F_MULTI | NLM_F_ACK_TLVS, concat([s32(-ENOENT), msgTlv('ipv4: FIB table does not exist')])).body).toEqual({
      kind: 'done', errno: ENOENT, extackMessage: 'ipv4: FIB table does not exist',
    });
    expect(done(NLM_F_MULTI | NLM_F_ACK_TLVS, concat([s32(-ENOENT), msgTlv(INVALID_GATEWAY), offsTlv(20)])).body).toEqual({
      kind: 'done', errno: ENOENT, extackMessage: INVALID_GATEWAY, extackOffset: 20,
    });
    // TLVs are only read when flagged.
    expect(done(NLM_F_MULTI, concat([s32(-ENOENT), msgTlv(INVALID_GATEWAY)])).body).toEqual({ kind: 'done', errno: ENOENT });
    expect(plain(done(NLM_F_MULTI, s32(0)).body)).toEqual({ kind: 'done', errno: 0 });
    // A DONE without its int (very old kernels) is a clean end.
    expect(done(NLM_F_MULTI, new Uint8Array(0)).body).toEqual({ kind: 'done', errno: 0 });
    expectDecodeError(encodeMessage({ type: NLMSG_DONE, flags: NLM_F_ACK_TLVS, seq: 9, portId: 1 }, concat([s32(-ENOENT), rawAttribute(64, 1, cstring('x'))])), /extended ack/);
  });

  it('an ACK and a DONE are both completions of the request they answer', () => {
    const datagram = concat([
      errorMessage(0, NLM_F_CAPPED, request.subarray(0, 16)),
      encodeMessage({ type: NLMSG_DONE, flags: NLM_F_MULTI, seq: 43, portId: 4242 }, s32(0)),
      encodeRequest({ type: RTM_GETROUTE, flags: NLM_F_REQUEST, seq: 44, portId: 0 }, routeToMessage({
        family: 6, table: 254, dst: '::', dstLength: 0, metric: 1024, protocol: 3, scope: 0, type: 1, gateway: 'fe80::1', oif: 2,
      })),
    ]);
    const messages = decodeDatagram(datagram);
    expect(messages.map((m) => [m.seq, m.body.kind])).toEqual([
      [42, 'ack'],
      [43, 'done'],
      [44, 'route'],
    ]);
  });
});

describe('netconf notifications', () => {
  // struct netconfmsg (the family, padded to 4), then NETCONFA_* attributes, as the kernel
  // sends RTM_NEWNETCONF to RTNLGRP_IPV4_NETCONF when a device's rp_filter changes.
  const netconf = (family: number, attributes: Array<[number, number]>) => {
    const payload = Buffer.alloc(4 + 8 * attributes.length);
    payload[0] = family;
    attributes.forEach(([type, value], i) => {
      payload.writeUInt16LE(8, 4 + 8 * i);
      payload.writeUInt16LE(type, 6 + 8 * i);
      payload.writeInt32LE(value, 8 + 8 * i);
    });
    return { type: 80, flags: 0, seq: 0, portId: 0, payload: new Uint8Array(payload) };
  };
  const IFINDEX = 1;
  const FORWARDING = 2;
  const RP_FILTER = 3;

  it('names the device whose rp_filter changed, or all of them for conf.all and conf.default', () => {
    expect(peekRpFilterChange(netconf(AF_INET, [[IFINDEX, 7], [RP_FILTER, 1]]))).toBe(7);
    expect(peekRpFilterChange(netconf(AF_INET, [[IFINDEX, -1], [RP_FILTER, 2]]))).toBe('all');
    expect(peekRpFilterChange(netconf(AF_INET, [[IFINDEX, -2], [RP_FILTER, 0]]))).toBe('all');
  });

  it('says nothing of other settings, other families or other messages', () => {
    expect(peekRpFilterChange(netconf(AF_INET, [[IFINDEX, 7], [FORWARDING, 1]]))).toBeUndefined();
    expect(peekRpFilterChange(netconf(AF_INET6, [[IFINDEX, 7], [RP_FILTER, 1]]))).toBeUndefined();
    expect(peekRpFilterChange({ ...netconf(AF_INET, [[IFINDEX, 7], [RP_FILTER, 1]]), type: RTM_NEWROUTE })).toBeUndefined();
  });
});
