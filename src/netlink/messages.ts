// Typed rtnetlink messages on top of the generic codec: decoding a received message into
// one of link/address/route/rule/ack/done, and encoding requests.
import {
  AF_INET,
  AF_INET6,
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSGERR_ATTR_MSG,
  NLMSGERR_ATTR_OFFS,
  RTM_DELROUTE,
  RTM_NEWNETCONF,
  RTM_NEWROUTE,
} from './constants.js';
import {
  align4,
  attributeSpan,
  decodeAttributes,
  decodeStruct,
  encodeAttributes,
  writeMessageHeader,
  writeStruct,
  NetlinkDecodeError,
  NLMSG_HDRLEN,
  viewOf,
  HOST_LITTLE_ENDIAN,
  type MessageHeader,
  type Policy,
  type RawMessage,
} from './codec.js';
import {
  NETCONFMSG_SIZE,
  netconfPolicy,
  type NetconfAttributes,
  RTA_TABLE,
  RTMSG_PROTOCOL_OFFSET,
  RTMSG_TABLE_OFFSET,
  RTMSG_TYPE_OFFSET,
  RT_TABLE_COMPAT,
  routeSchema,
  schemaByTypeBlock,
  type AddressAttributes,
  type AddressHeader,
  type LinkAttributes,
  type LinkHeader,
  type MessageSchema,
  type RouteAttributes,
  type RouteHeader,
  type RuleAttributes,
  type RuleHeader,
} from './schemas.js';

export type LinkMessage = { kind: 'link'; header: LinkHeader; attributes: LinkAttributes };
export type AddressMessage = { kind: 'address'; header: AddressHeader; attributes: AddressAttributes };
export type RouteMessage = { kind: 'route'; header: RouteHeader; attributes: RouteAttributes };
export type RuleMessage = { kind: 'rule'; header: RuleHeader; attributes: RuleAttributes };
export type RtnlBody = LinkMessage | AddressMessage | RouteMessage | RuleMessage;

/** NLMSG_ERROR (error 0 is an ACK) or NLMSG_DONE, with the extended-ack text if any. */
export interface Completion {
  readonly kind: 'ack' | 'done';
  readonly errno: number; // positive errno, 0 for success
  readonly extackMessage?: string;
  readonly extackOffset?: number;
}

export type DecodedBody = RtnlBody | Completion | { kind: 'other' };
export type DecodedMessage = MessageHeader & { readonly body: DecodedBody };

const extackPolicy: Policy = [
  { type: NLMSGERR_ATTR_MSG, name: 'message', kind: 'string' },
  { type: NLMSGERR_ATTR_OFFS, name: 'offset', kind: 'u32' },
];

export function isRtnlBody(body: DecodedBody): body is RtnlBody {
  return body.kind === 'link' || body.kind === 'address' || body.kind === 'route' || body.kind === 'rule';
}

export function decodeMessage(raw: RawMessage): DecodedMessage {
  return { type: raw.type, flags: raw.flags, seq: raw.seq, portId: raw.portId, body: decodeBody(raw) };
}

function decodeBody(raw: RawMessage): DecodedBody {
  if (raw.type === NLMSG_ERROR) return decodeError(raw);
  if (raw.type === NLMSG_DONE) return decodeDone(raw);
  const schema = schemaByTypeBlock.get(raw.type & ~3);
  if (!schema || (raw.type & 3) === 3) return { kind: 'other' };
  return decodeRtnl(schema, raw.payload);
}

function decodeRtnl(schema: MessageSchema, payload: Uint8Array): RtnlBody | { kind: 'other' } {
  const what = `${schema.kind} message`;
  const header = decodeStruct<{ family: number }>(schema.header, payload, what);
  if (!schema.families.includes(header.family)) return { kind: 'other' };
  const attributes = decodeAttributes<object>(
    schema.policy,
    payload.subarray(align4(schema.header.size)),
    { family: header.family },
    what,
  );
  return { kind: schema.kind, header, attributes } as RtnlBody;
}

/** The family (4 or 6), table (u32), protocol and type of a route, as peekRoute() reads them. */
export interface RouteTag {
  readonly family: 4 | 6;
  readonly table: number;
  readonly protocol: number;
  readonly type: number;
}

/**
 * The family, table, protocol and type of an IPv4/IPv6 RTM_NEWROUTE/RTM_DELROUTE, read
 * without decoding the message: the rtmsg header holds them, but a table >= 256 only fits in
 * RTA_TABLE (the header then says RT_TABLE_COMPAT), so the attributes are walked for that
 * one. Undefined for any other message, and for one too short or malformed to tell: the full
 * decode then says what is wrong with it.
 */
export function peekRoute(raw: RawMessage): RouteTag | undefined {
  if (raw.type !== RTM_NEWROUTE && raw.type !== RTM_DELROUTE) return undefined;
  const payload = raw.payload;
  const headerSize = routeSchema.header.size;
  if (payload.length < headerSize || !routeSchema.families.includes(payload[0]!)) return undefined;
  const family = payload[0] === AF_INET6 ? 6 : 4;
  const protocol = payload[RTMSG_PROTOCOL_OFFSET]!;
  const type = payload[RTMSG_TYPE_OFFSET]!;
  const headerTable = payload[RTMSG_TABLE_OFFSET]!;
  // Every table but 0 and 252 is exact in the header; those two may stand for a larger one.
  if (headerTable !== RT_TABLE_COMPAT && headerTable !== 0) return { family, table: headerTable, protocol, type };
  const span = attributeSpan(payload, align4(headerSize), RTA_TABLE);
  if (span === null) return { family, table: headerTable, protocol, type };
  if (span === undefined || span.end - span.start !== 4) return undefined;
  return { family, table: viewOf(payload).getUint32(span.start, HOST_LITTLE_ENDIAN), protocol, type };
}

/**
 * The device whose IPv4 rp_filter changed, from an RTM_NEWNETCONF notification: its
 * ifindex, or 'all' for net.ipv4.conf.all/default (which apply to every device). Undefined
 * for any other message, or one that says nothing of rp_filter.
 */
export function peekRpFilterChange(raw: RawMessage): number | 'all' | undefined {
  if (raw.type !== RTM_NEWNETCONF || raw.payload.length < NETCONFMSG_SIZE || raw.payload[0] !== AF_INET) return undefined;
  const attributes = decodeAttributes<NetconfAttributes>(netconfPolicy, raw.payload.subarray(align4(NETCONFMSG_SIZE)), { family: AF_INET }, 'netconf message');
  if (attributes.rpFilter === undefined || attributes.ifindex === undefined) return undefined;
  const ifindex = attributes.ifindex | 0; // back to s32
  return ifindex > 0 ? ifindex : 'all';
}

function decodeError(raw: RawMessage): Completion {
  // struct nlmsgerr { int error; struct nlmsghdr msg; } then, unless capped, the rest of the
  // request we sent; then, with NLM_F_ACK_TLVS, the extended-ack attributes.
  if (raw.payload.length < 4 + NLMSG_HDRLEN) {
    throw new NetlinkDecodeError(`error message: ${raw.payload.length} bytes, shorter than struct nlmsgerr`);
  }
  const view = viewOf(raw.payload);
  const errno = 0 - view.getInt32(0, HOST_LITTLE_ENDIAN); // 0 - x: success is +0, not -0
  const echoedLength = view.getUint32(4, HOST_LITTLE_ENDIAN);
  const echoed = raw.flags & NLM_F_CAPPED ? NLMSG_HDRLEN : echoedLength;
  return { kind: 'ack', errno, ...decodeExtack(raw, 4 + align4(echoed)) };
}

function decodeDone(raw: RawMessage): Completion {
  // A dump's terminator carries an int: the dump's final status (e.g. ENOENT for a strict
  // dump of a table that does not exist).
  const errno = raw.payload.length >= 4 ? 0 - viewOf(raw.payload).getInt32(0, HOST_LITTLE_ENDIAN) : 0;
  return { kind: 'done', errno, ...decodeExtack(raw, 4) };
}

function decodeExtack(raw: RawMessage, offset: number): { extackMessage?: string; extackOffset?: number } {
  if (!(raw.flags & NLM_F_ACK_TLVS) || offset > raw.payload.length) return {};
  const tlvs = decodeAttributes<{ message?: string; offset?: number }>(
    extackPolicy,
    raw.payload.subarray(offset),
    { family: 0 },
    'extended ack',
  );
  return {
    ...(tlvs.message ? { extackMessage: tlvs.message } : {}),
    ...(tlvs.offset !== undefined ? { extackOffset: tlvs.offset } : {}),
  };
}

/** Encodes a link/address/route/rule body (header struct, then attributes). */
export function encodeBody(body: RtnlBody): Uint8Array {
  return encodeRtnl(body, 0);
}

/** A request: nlmsghdr, header struct and attributes, written into one buffer. */
export function encodeRequest(header: MessageHeader, body: RtnlBody): Buffer {
  const message = encodeRtnl(body, NLMSG_HDRLEN) as Buffer;
  writeMessageHeader(message, header);
  return message;
}

/** A body after `headroom` bytes: the attributes are encoded with room for the rest in front. */
function encodeRtnl(body: RtnlBody, headroom: number): Uint8Array {
  const schema = schemaByTypeBlock.get(typeBlock(body.kind))!;
  const bytes = encodeAttributes(schema.policy, body.attributes, { family: body.header.family }, headroom + align4(schema.header.size));
  writeStruct(schema.header, body.header, bytes, headroom);
  return bytes;
}

function typeBlock(kind: RtnlBody['kind']): number {
  return { link: 16, address: 20, route: 24, rule: 32 }[kind];
}

export function familyNumber(family: 4 | 6): number {
  return family === 4 ? AF_INET : AF_INET6;
}
