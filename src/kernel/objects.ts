// Conversions between decoded rtnetlink messages and symroute's model (model.ts), including
// the kernel's defaults (an IPv4 route without RTA_PRIORITY has metric 0, a rule without
// FRA_TABLE uses the u8 header field, …) so that objects compare equal however they arrived.
import type { Family } from '../net/ip.js';
import type { Address, Link, Route, Rule } from '../domain/model.js';
import {
  AF_INET,
  AF_INET6,
  AF_UNSPEC,
  IFF_LOOPBACK,
  IFF_UP,
  RTM_DELROUTE,
  RTM_DELRULE,
  RTM_F_CLONED,
  RTM_NEWROUTE,
  RTM_NEWRULE,
  RTNH_F_ONLINK,
} from '../netlink/constants.js';
import { attributeSpan, HOST_LITTLE_ENDIAN, viewOf, type RawMessage } from '../netlink/codec.js';
import {
  FRA_DST,
  FRA_FWMARK,
  FRA_IIFNAME,
  FRA_OIFNAME,
  FRA_PRIORITY,
  FRA_PROTOCOL,
  FRA_SRC,
  FRA_TABLE,
  RTA_DST,
  RTA_GATEWAY,
  RTA_MULTIPATH,
  RTA_OIF,
  RTA_PREFSRC,
  RTA_PRIORITY,
  RTA_SRC,
  RTA_TABLE,
} from '../netlink/schemas.js';
import type { AddressMessage, LinkMessage, RouteMessage, RuleMessage } from '../netlink/messages.js';

export function familyOf(number: number): Family | undefined {
  if (number === AF_INET) return 4;
  if (number === AF_INET6) return 6;
  return undefined;
}

const familyNumber = (family: Family): number => (family === 4 ? AF_INET : AF_INET6);
const unspecified = (family: Family): string => (family === 4 ? '0.0.0.0' : '::');

export function linkFromMessage(message: LinkMessage): Link | undefined {
  if (message.attributes.ifname === undefined) return undefined;
  return {
    index: message.header.index,
    name: message.attributes.ifname,
    up: (message.header.flags & IFF_UP) !== 0,
    loopback: (message.header.flags & IFF_LOOPBACK) !== 0,
  };
}

export function addressFromMessage(message: AddressMessage): Address | undefined {
  const family = familyOf(message.header.family);
  const { local, address } = message.attributes;
  const own = local ?? address;
  if (!family || own === undefined) return undefined;
  return {
    family,
    ifindex: message.header.index,
    address: own,
    prefixLength: message.header.prefixlen,
    ...(local !== undefined && address !== undefined && address !== local ? { peer: address } : {}),
    scope: message.header.scope,
    flags: message.attributes.flags ?? message.header.flags,
  };
}

export function routeFromMessage(message: RouteMessage): Route | undefined {
  const family = familyOf(message.header.family);
  if (!family) return undefined;
  const a = message.attributes;
  return {
    family,
    table: a.table ?? message.header.table,
    dst: a.dst ?? unspecified(family),
    dstLength: message.header.dstLen,
    ...(message.header.srcLen > 0 && a.src !== undefined ? { src: a.src, srcLength: message.header.srcLen } : {}),
    metric: a.priority ?? 0,
    protocol: message.header.protocol,
    scope: message.header.scope,
    type: message.header.type,
    ...(a.oif !== undefined ? { oif: a.oif } : {}),
    ...(a.gateway !== undefined ? { gateway: a.gateway } : {}),
    ...(a.gateway !== undefined && message.header.flags & RTNH_F_ONLINK ? { onlink: true as const } : {}),
    ...(a.prefsrc !== undefined ? { prefsrc: a.prefsrc } : {}),
    ...(a.multipath
      ? { nexthops: a.multipath.map((n) => ({ ifindex: n.ifindex, ...(n.gateway ? { gateway: n.gateway } : {}) })) }
      : {}),
  };
}

export function ruleFromMessage(message: RuleMessage): Rule | undefined {
  const family = familyOf(message.header.family);
  if (!family) return undefined;
  const a = message.attributes;
  return {
    family,
    priority: a.priority ?? 0,
    table: a.table ?? message.header.table,
    action: message.header.action,
    ...(a.goto !== undefined ? { goto: a.goto } : {}),
    protocol: a.protocol ?? 0,
    ...(a.src !== undefined ? { src: a.src } : {}),
    srcLength: message.header.srcLen,
    ...(a.dst !== undefined ? { dst: a.dst } : {}),
    dstLength: message.header.dstLen,
    ...(a.iifname !== undefined ? { iifname: a.iifname } : {}),
    ...(a.oifname !== undefined ? { oifname: a.oifname } : {}),
    ...(a.fwmark !== undefined ? { fwmark: a.fwmark } : {}),
    tos: message.header.tos,
  };
}

/** The full message for a route: used for adds, replaces and deletes alike, so a delete
 * names every attribute and can only hit the route it describes. */
export function routeToMessage(route: Route): RouteMessage {
  return {
    kind: 'route',
    header: {
      family: familyNumber(route.family),
      dstLen: route.dstLength,
      srcLen: route.srcLength ?? 0,
      tos: 0,
      // Tables >= 256 only fit in RTA_TABLE; the u8 field then says RT_TABLE_UNSPEC.
      table: route.table < 256 ? route.table : 0,
      protocol: route.protocol,
      scope: route.scope,
      type: route.type,
      flags: route.onlink ? RTNH_F_ONLINK : 0,
    },
    attributes: {
      ...(route.dstLength ? { dst: route.dst } : {}),
      ...(route.srcLength ? { src: route.src } : {}),
      ...(route.oif !== undefined ? { oif: route.oif } : {}),
      ...(route.gateway !== undefined ? { gateway: route.gateway } : {}),
      ...(route.metric ? { priority: route.metric } : {}),
      ...(route.prefsrc !== undefined ? { prefsrc: route.prefsrc } : {}),
      ...(route.nexthops
        ? { multipath: route.nexthops.map((n) => ({ flags: 0, hops: 0, ifindex: n.ifindex, ...(n.gateway ? { gateway: n.gateway } : {}) })) }
        : {}),
      table: route.table,
    },
  };
}

export function ruleToMessage(rule: Rule): RuleMessage {
  return {
    kind: 'rule',
    header: {
      family: familyNumber(rule.family),
      dstLen: rule.dstLength,
      srcLen: rule.srcLength,
      tos: rule.tos,
      table: rule.table < 256 ? rule.table : 0,
      action: rule.action,
      flags: 0,
    },
    attributes: {
      ...(rule.srcLength ? { src: rule.src } : {}),
      ...(rule.dstLength ? { dst: rule.dst } : {}),
      ...(rule.iifname !== undefined ? { iifname: rule.iifname } : {}),
      ...(rule.oifname !== undefined ? { oifname: rule.oifname } : {}),
      ...(rule.fwmark !== undefined ? { fwmark: rule.fwmark } : {}),
      ...(rule.goto !== undefined ? { goto: rule.goto } : {}),
      priority: rule.priority,
      table: rule.table,
      protocol: rule.protocol,
    },
  };
}

/** Empty GET bodies: dump everything of a kind, both families. */
export const dumpRequests = {
  link: { kind: 'link', header: { family: AF_UNSPEC, type: 0, index: 0, flags: 0, change: 0 }, attributes: {} },
  address: { kind: 'address', header: { family: AF_UNSPEC, prefixlen: 0, flags: 0, scope: 0, index: 0 }, attributes: {} },
  route: {
    kind: 'route',
    header: { family: AF_UNSPEC, dstLen: 0, srcLen: 0, tos: 0, table: 0, protocol: 0, scope: 0, type: 0, flags: 0 },
    attributes: {},
  },
  rule: {
    kind: 'rule',
    header: { family: AF_UNSPEC, dstLen: 0, srcLen: 0, tos: 0, table: 0, action: 0, flags: 0 },
    attributes: {},
  },
} as const satisfies Record<string, LinkMessage | AddressMessage | RouteMessage | RuleMessage>;

/**
 * A GET body that dumps only the routes of one table, or of one protocol (in every table),
 * both families. Strict checking (which symroute's sockets turn on) makes the kernel honour
 * the filter; with AF_UNSPEC a table that does not exist answers nothing, where a single
 * family would answer ENOENT.
 */
export function routeDumpRequest(filter: { readonly table: number } | { readonly protocol: number }): RouteMessage {
  const request = dumpRequests.route;
  if ('table' in filter) return { ...request, attributes: { table: filter.table } };
  return { ...request, header: { ...request.header, protocol: filter.protocol } };
}

/** The attributes routeFromMessage and ruleFromMessage read: all an echo must repeat exactly. */
const ROUTE_ATTRIBUTES = [RTA_DST, RTA_SRC, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_MULTIPATH, RTA_TABLE];
const RULE_ATTRIBUTES = [FRA_DST, FRA_SRC, FRA_IIFNAME, FRA_PRIORITY, FRA_FWMARK, FRA_TABLE, FRA_OIFNAME, FRA_PROTOCOL];
/**
 * The bytes of struct rtmsg and fib_rule_hdr both compare: all but the table's (a table >=
 * 256 reads 0 in a request and RT_TABLE_COMPAT in the kernel's message; the attribute holds
 * it exactly) and the flags (of which only a route's onlink and cloned bits are read).
 */
const HEADER_BYTES = [0, 1, 2, 3, 5, 6, 7];
const HEADER_SIZE = 12;
const ROUTE_FLAGS_READ = RTNH_F_ONLINK | RTM_F_CLONED;

/**
 * Whether a notification (the echo of a route or rule request symroute sent) says exactly
 * what the request asked for, as far as the model reads it: the same type, the same header
 * and the same bytes in every attribute the conversions above read. If so, decoding it
 * would give the very object the request was made from, so it can stand in for the decode;
 * if not (the kernel filled something in, or added something), it is decoded like any other.
 */
export function echoes(raw: RawMessage, sent: { readonly type: number; readonly payload: Uint8Array }): boolean {
  if (raw.type !== sent.type) return false;
  const route = raw.type === RTM_NEWROUTE || raw.type === RTM_DELROUTE;
  if (!route && raw.type !== RTM_NEWRULE && raw.type !== RTM_DELRULE) return false;
  const echo = raw.payload;
  const request = sent.payload;
  if (echo.length < HEADER_SIZE || request.length < HEADER_SIZE) return false;
  for (const i of HEADER_BYTES) if (echo[i] !== request[i]) return false;
  if (route && (flagsOf(echo) & ROUTE_FLAGS_READ) !== (flagsOf(request) & ROUTE_FLAGS_READ)) return false;
  for (const type of route ? ROUTE_ATTRIBUTES : RULE_ATTRIBUTES) if (!sameAttribute(echo, request, type)) return false;
  return true;
}

const flagsOf = (payload: Uint8Array): number => viewOf(payload).getUint32(8, HOST_LITTLE_ENDIAN);

/** Whether both hold attribute `type` with the same payload, or neither holds it. */
function sameAttribute(a: Uint8Array, b: Uint8Array, type: number): boolean {
  const x = attributeSpan(a, HEADER_SIZE, type);
  const y = attributeSpan(b, HEADER_SIZE, type);
  if (x === undefined || y === undefined) return false; // malformed: let the decode say how
  if (x === null || y === null) return x === y;
  if (x.end - x.start !== y.end - y.start) return false;
  for (let i = 0; i < x.end - x.start; i++) if (a[x.start + i] !== b[y.start + i]) return false;
  return true;
}
