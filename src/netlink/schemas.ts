// What each rtnetlink message looks like, as data: the fixed header struct and the attribute
// policy (number, name, kind), mirroring the kernel's own tables. Attribute numbers carry the
// kernel's names (FRA_TABLE, RTA_PREFSRC); decoded properties are those names in camelCase
// without the prefix (table, prefsrc). The TypeScript shape of every header and attribute set
// is derived from its schema (FieldsOf, AttributesOf), so the two cannot drift apart.
import { AF_INET, AF_INET6, AF_UNSPEC } from './constants.js';
import {
  concat,
  HOST_LITTLE_ENDIAN,
  decodeAttributes,
  encodeAttributes,
  viewOf,
  type AttributeContext,
  type AttributesOf,
  type CustomCodec,
  type FieldsOf,
  type Policy,
  type StructSchema,
} from './codec.js';

// ---- links: struct ifinfomsg ----

// linux/if_link.h
export const IFLA_ADDRESS = 1;
export const IFLA_IFNAME = 3;
export const IFLA_MTU = 4;
export const IFLA_MASTER = 10;
export const IFLA_OPERSTATE = 16;
export const IFLA_LINKINFO = 18;
export const IFLA_INFO_KIND = 1;

const linkHeader = {
  size: 16,
  fields: [
    ['family', 'u8', 0],
    ['type', 'u16', 2],
    ['index', 's32', 4],
    ['flags', 'u32', 8],
    ['change', 'u32', 12],
  ],
} as const satisfies StructSchema;
const linkInfoPolicy = [{ type: IFLA_INFO_KIND, name: 'kind', kind: 'string' }] as const satisfies Policy;
const linkPolicy = [
  { type: IFLA_ADDRESS, name: 'address', kind: 'lladdr' },
  { type: IFLA_IFNAME, name: 'ifname', kind: 'string' },
  { type: IFLA_MTU, name: 'mtu', kind: 'u32' },
  { type: IFLA_MASTER, name: 'master', kind: 'u32' },
  { type: IFLA_OPERSTATE, name: 'operstate', kind: 'u8' },
  { type: IFLA_LINKINFO, name: 'linkinfo', kind: { nested: linkInfoPolicy } },
] as const satisfies Policy;
export type LinkHeader = FieldsOf<typeof linkHeader>;
export type LinkAttributes = AttributesOf<typeof linkPolicy>;

// ---- addresses: struct ifaddrmsg ----

// linux/if_addr.h
export const IFA_ADDRESS = 1;
export const IFA_LOCAL = 2;
export const IFA_LABEL = 3;
export const IFA_BROADCAST = 4;
export const IFA_FLAGS = 8; // the full 32-bit flag word (the header's u8 is truncated)

const addressHeader = {
  size: 8,
  fields: [
    ['family', 'u8', 0],
    ['prefixlen', 'u8', 1],
    ['flags', 'u8', 2],
    ['scope', 'u8', 3],
    ['index', 'u32', 4],
  ],
} as const satisfies StructSchema;
const addressPolicy = [
  { type: IFA_ADDRESS, name: 'address', kind: 'address' },
  { type: IFA_LOCAL, name: 'local', kind: 'address' },
  { type: IFA_LABEL, name: 'label', kind: 'string' },
  { type: IFA_BROADCAST, name: 'broadcast', kind: 'address' },
  { type: IFA_FLAGS, name: 'flags', kind: 'u32' },
] as const satisfies Policy;
export type AddressHeader = FieldsOf<typeof addressHeader>;
export type AddressAttributes = AttributesOf<typeof addressPolicy>;

// ---- routes: struct rtmsg ----

// linux/rtnetlink.h
export const RTA_DST = 1;
export const RTA_SRC = 2;
export const RTA_IIF = 3;
export const RTA_OIF = 4;
export const RTA_GATEWAY = 5;
export const RTA_PRIORITY = 6;
export const RTA_PREFSRC = 7;
export const RTA_MULTIPATH = 9;
export const RTA_TABLE = 15;
export const RTA_PREF = 20;
export const RTA_NH_ID = 30;

/** Offsets of rtm_table, rtm_protocol and rtm_type in struct rtmsg: read before anything else is decoded. */
export const RTMSG_TABLE_OFFSET = 4;
export const RTMSG_PROTOCOL_OFFSET = 5;
export const RTMSG_TYPE_OFFSET = 7;
/** rtm_table of a route whose table (>= 256) only RTA_TABLE can hold. */
export const RT_TABLE_COMPAT = 252;
const routeHeader = {
  size: 12,
  fields: [
    ['family', 'u8', 0],
    ['dstLen', 'u8', 1],
    ['srcLen', 'u8', 2],
    ['tos', 'u8', 3],
    ['table', 'u8', RTMSG_TABLE_OFFSET],
    ['protocol', 'u8', RTMSG_PROTOCOL_OFFSET],
    ['scope', 'u8', 6],
    ['type', 'u8', RTMSG_TYPE_OFFSET],
    ['flags', 'u32', 8],
  ],
} as const satisfies StructSchema;
export interface Nexthop {
  flags: number;
  hops: number;
  ifindex: number;
  gateway?: string;
}
const nexthopPolicy = [{ type: RTA_GATEWAY, name: 'gateway', kind: 'address' }] as const satisfies Policy;

// RTA_MULTIPATH: a run of struct rtnexthop { u16 len; u8 flags; u8 hops; s32 ifindex }, each
// followed by its own attributes (the gateway).
const RTNH_SIZE = 8;
const multipathCodec: CustomCodec<Nexthop[]> = {
  decode(bytes: Uint8Array, context: AttributeContext): Nexthop[] {
    const view = viewOf(bytes);
    const nexthops: Nexthop[] = [];
    let offset = 0;
    while (offset < bytes.length) {
      const length = bytes.length - offset >= RTNH_SIZE ? view.getUint16(offset, HOST_LITTLE_ENDIAN) : 0;
      if (length < RTNH_SIZE || offset + length > bytes.length) {
        throw new Error(`nexthop at offset ${offset} has length ${length}, ${bytes.length - offset} bytes left`);
      }
      const attributes = decodeAttributes<{ gateway?: string }>(
        nexthopPolicy,
        bytes.subarray(offset + RTNH_SIZE, offset + length),
        context,
        'nexthop',
      );
      nexthops.push({
        flags: view.getUint8(offset + 2),
        hops: view.getUint8(offset + 3),
        ifindex: view.getInt32(offset + 4, HOST_LITTLE_ENDIAN),
        ...attributes,
      });
      offset += (length + 3) & ~3;
    }
    return nexthops;
  },
  encode(nexthops: Nexthop[], context: AttributeContext): Uint8Array {
    return concat(
      nexthops.map((nexthop) => {
        const attributes = encodeAttributes(nexthopPolicy, nexthop, context);
        const header = new Uint8Array(RTNH_SIZE);
        const view = viewOf(header);
        view.setUint16(0, RTNH_SIZE + attributes.length, HOST_LITTLE_ENDIAN);
        view.setUint8(2, nexthop.flags);
        view.setUint8(3, nexthop.hops);
        view.setInt32(4, nexthop.ifindex, HOST_LITTLE_ENDIAN);
        return concat([header, attributes]);
      }),
    );
  },
};
const routePolicy = [
  { type: RTA_DST, name: 'dst', kind: 'address' },
  { type: RTA_SRC, name: 'src', kind: 'address' },
  { type: RTA_IIF, name: 'iif', kind: 'u32' },
  { type: RTA_OIF, name: 'oif', kind: 'u32' },
  { type: RTA_GATEWAY, name: 'gateway', kind: 'address' },
  { type: RTA_PRIORITY, name: 'priority', kind: 'u32' },
  { type: RTA_PREFSRC, name: 'prefsrc', kind: 'address' },
  { type: RTA_MULTIPATH, name: 'multipath', kind: { custom: multipathCodec } },
  { type: RTA_TABLE, name: 'table', kind: 'u32' },
  { type: RTA_PREF, name: 'pref', kind: 'u8' },
  { type: RTA_NH_ID, name: 'nhId', kind: 'u32' },
] as const satisfies Policy;
export type RouteHeader = FieldsOf<typeof routeHeader>;
export type RouteAttributes = AttributesOf<typeof routePolicy>;

// ---- rules: struct fib_rule_hdr ----

// linux/fib_rules.h
export const FRA_DST = 1;
export const FRA_SRC = 2;
export const FRA_IIFNAME = 3;
export const FRA_GOTO = 4;
export const FRA_PRIORITY = 6;
export const FRA_FWMARK = 10;
export const FRA_TABLE = 15;
export const FRA_FWMASK = 16;
export const FRA_OIFNAME = 17;
export const FRA_L3MDEV = 19;
export const FRA_PROTOCOL = 21;
export const FRA_IP_PROTO = 22;

const ruleHeader = {
  size: 12,
  fields: [
    ['family', 'u8', 0],
    ['dstLen', 'u8', 1],
    ['srcLen', 'u8', 2],
    ['tos', 'u8', 3],
    ['table', 'u8', 4],
    ['action', 'u8', 7],
    ['flags', 'u32', 8],
  ],
} as const satisfies StructSchema;
const rulePolicy = [
  { type: FRA_DST, name: 'dst', kind: 'address' },
  { type: FRA_SRC, name: 'src', kind: 'address' },
  { type: FRA_IIFNAME, name: 'iifname', kind: 'string' },
  { type: FRA_GOTO, name: 'goto', kind: 'u32' },
  { type: FRA_PRIORITY, name: 'priority', kind: 'u32' },
  { type: FRA_FWMARK, name: 'fwmark', kind: 'u32' },
  { type: FRA_TABLE, name: 'table', kind: 'u32' },
  { type: FRA_FWMASK, name: 'fwmask', kind: 'u32' },
  { type: FRA_OIFNAME, name: 'oifname', kind: 'string' },
  { type: FRA_L3MDEV, name: 'l3mdev', kind: 'u8' },
  { type: FRA_PROTOCOL, name: 'protocol', kind: 'u8' },
  { type: FRA_IP_PROTO, name: 'ipProto', kind: 'u8' },
] as const satisfies Policy;
export type RuleHeader = FieldsOf<typeof ruleHeader>;
export type RuleAttributes = AttributesOf<typeof rulePolicy>;

// ---- netconf (RTM_NEWNETCONF): a device's IP settings, as they change ----

export const NETCONFA_IFINDEX = 1;
export const NETCONFA_RP_FILTER = 3;
/** struct netconfmsg: the family alone, its attributes 4-aligned after it. */
export const NETCONFMSG_SIZE = 1;
export const netconfPolicy = [
  // s32 on the wire: -1 and -2 (conf.all, conf.default) read as 0xffffffff and 0xfffffffe here.
  { type: NETCONFA_IFINDEX, name: 'ifindex', kind: 'u32' },
  { type: NETCONFA_RP_FILTER, name: 'rpFilter', kind: 'u32' },
] as const satisfies Policy;
export type NetconfAttributes = AttributesOf<typeof netconfPolicy>;

// ---- message kinds by nlmsg_type ----

export interface MessageSchema {
  readonly kind: 'link' | 'address' | 'route' | 'rule';
  readonly header: StructSchema;
  readonly policy: Policy;
  /**
   * The address families (first header byte) these policies describe. The same message
   * types carry others — bridge-port links (AF_BRIDGE), multicast routing (IPMR, 128/129),
   * MPLS — whose attributes mean other things; those are passed over, not decoded.
   */
  readonly families: readonly number[];
}
const IP_FAMILIES = [AF_INET, AF_INET6];
export const linkSchema: MessageSchema = { kind: 'link', header: linkHeader, policy: linkPolicy, families: [AF_UNSPEC] };
export const addressSchema: MessageSchema = {
  kind: 'address',
  header: addressHeader,
  policy: addressPolicy,
  families: IP_FAMILIES,
};
export const routeSchema: MessageSchema = { kind: 'route', header: routeHeader, policy: routePolicy, families: IP_FAMILIES };
export const ruleSchema: MessageSchema = { kind: 'rule', header: ruleHeader, policy: rulePolicy, families: IP_FAMILIES };

/** RTM_NEW/DEL/GET{LINK,ADDR,ROUTE,RULE} come in blocks of four starting at these numbers. */
export const schemaByTypeBlock: ReadonlyMap<number, MessageSchema> = new Map([
  [16, linkSchema],
  [20, addressSchema],
  [24, routeSchema],
  [32, ruleSchema],
]);
