// What each rtnetlink message looks like, as data: the fixed header struct and the attribute
// policy (number, name, kind), mirroring the kernel's own tables. Names follow the kernel's
// constants in camelCase (RTA_PREFSRC -> prefsrc, FRA_PROTOCOL -> protocol).
import { AF_INET, AF_INET6, AF_UNSPEC } from './constants.js';
import {
  concat,
  HOST_LITTLE_ENDIAN,
  decodeAttributes,
  encodeAttributes,
  viewOf,
  type AttributeContext,
  type CustomCodec,
  type Policy,
  type StructSchema,
} from './codec.js';

// ---- links: struct ifinfomsg ----

export interface LinkHeader {
  family: number;
  type: number;
  index: number;
  flags: number;
  change: number;
}
export interface LinkAttributes {
  address?: string;
  ifname?: string;
  mtu?: number;
  master?: number;
  operstate?: number;
  linkinfo?: { kind?: string };
}
const linkHeader: StructSchema = {
  size: 16,
  fields: [
    ['family', 'u8', 0],
    ['type', 'u16', 2],
    ['index', 's32', 4],
    ['flags', 'u32', 8],
    ['change', 'u32', 12],
  ],
};
const linkInfoPolicy: Policy = [{ type: 1, name: 'kind', kind: 'string' }];
const linkPolicy: Policy = [
  { type: 1, name: 'address', kind: 'lladdr' },
  { type: 3, name: 'ifname', kind: 'string' },
  { type: 4, name: 'mtu', kind: 'u32' },
  { type: 10, name: 'master', kind: 'u32' },
  { type: 16, name: 'operstate', kind: 'u8' },
  { type: 18, name: 'linkinfo', kind: { nested: linkInfoPolicy } },
];

// ---- addresses: struct ifaddrmsg ----

export interface AddressHeader {
  family: number;
  prefixlen: number;
  flags: number;
  scope: number;
  index: number;
}
export interface AddressAttributes {
  address?: string;
  local?: string;
  label?: string;
  broadcast?: string;
  flags?: number; // IFA_FLAGS: the full 32-bit flag word (the header's u8 is truncated)
}
const addressHeader: StructSchema = {
  size: 8,
  fields: [
    ['family', 'u8', 0],
    ['prefixlen', 'u8', 1],
    ['flags', 'u8', 2],
    ['scope', 'u8', 3],
    ['index', 'u32', 4],
  ],
};
const addressPolicy: Policy = [
  { type: 1, name: 'address', kind: 'address' },
  { type: 2, name: 'local', kind: 'address' },
  { type: 3, name: 'label', kind: 'string' },
  { type: 4, name: 'broadcast', kind: 'address' },
  { type: 8, name: 'flags', kind: 'u32' },
];

// ---- routes: struct rtmsg ----

export interface RouteHeader {
  family: number;
  dstLen: number;
  srcLen: number;
  tos: number;
  table: number;
  protocol: number;
  scope: number;
  type: number;
  flags: number;
}
export interface Nexthop {
  flags: number;
  hops: number;
  ifindex: number;
  gateway?: string;
}
export interface RouteAttributes {
  dst?: string;
  src?: string;
  iif?: number;
  oif?: number;
  gateway?: string;
  priority?: number;
  prefsrc?: string;
  multipath?: Nexthop[];
  table?: number;
  pref?: number;
  nhId?: number;
}
const routeHeader: StructSchema = {
  size: 12,
  fields: [
    ['family', 'u8', 0],
    ['dstLen', 'u8', 1],
    ['srcLen', 'u8', 2],
    ['tos', 'u8', 3],
    ['table', 'u8', 4],
    ['protocol', 'u8', 5],
    ['scope', 'u8', 6],
    ['type', 'u8', 7],
    ['flags', 'u32', 8],
  ],
};
const nexthopPolicy: Policy = [{ type: 5, name: 'gateway', kind: 'address' }];

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
const routePolicy: Policy = [
  { type: 1, name: 'dst', kind: 'address' },
  { type: 2, name: 'src', kind: 'address' },
  { type: 3, name: 'iif', kind: 'u32' },
  { type: 4, name: 'oif', kind: 'u32' },
  { type: 5, name: 'gateway', kind: 'address' },
  { type: 6, name: 'priority', kind: 'u32' },
  { type: 7, name: 'prefsrc', kind: 'address' },
  { type: 9, name: 'multipath', kind: { custom: multipathCodec as CustomCodec<unknown> } },
  { type: 15, name: 'table', kind: 'u32' },
  { type: 20, name: 'pref', kind: 'u8' },
  { type: 30, name: 'nhId', kind: 'u32' },
];

// ---- rules: struct fib_rule_hdr ----

export interface RuleHeader {
  family: number;
  dstLen: number;
  srcLen: number;
  tos: number;
  table: number;
  action: number;
  flags: number;
}
export interface RuleAttributes {
  dst?: string;
  src?: string;
  iifname?: string;
  goto?: number;
  priority?: number;
  fwmark?: number;
  fwmask?: number;
  table?: number;
  oifname?: string;
  l3mdev?: number;
  protocol?: number;
  ipProto?: number;
}
const ruleHeader: StructSchema = {
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
};
const rulePolicy: Policy = [
  { type: 1, name: 'dst', kind: 'address' },
  { type: 2, name: 'src', kind: 'address' },
  { type: 3, name: 'iifname', kind: 'string' },
  { type: 4, name: 'goto', kind: 'u32' },
  { type: 6, name: 'priority', kind: 'u32' },
  { type: 10, name: 'fwmark', kind: 'u32' },
  { type: 15, name: 'table', kind: 'u32' },
  { type: 16, name: 'fwmask', kind: 'u32' },
  { type: 17, name: 'oifname', kind: 'string' },
  { type: 19, name: 'l3mdev', kind: 'u8' },
  { type: 21, name: 'protocol', kind: 'u8' },
  { type: 22, name: 'ipProto', kind: 'u8' },
];

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
