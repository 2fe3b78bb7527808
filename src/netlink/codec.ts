// Generic netlink codec: message framing (nlmsghdr), fixed headers described as structs, and
// attributes decoded and encoded from policy tables — the same idea as the kernel's
// nla_policy. Message-specific knowledge lives in schemas.ts as data, not in code here.
import { endianness } from 'node:os';
import { addressToBytes, bytesToAddress } from '../net/ip.js';
import { AF_INET, AF_INET6 } from './constants.js';

export const HOST_LITTLE_ENDIAN = endianness() === 'LE';
export const NLMSG_HDRLEN = 16;
const NLA_HDRLEN = 4;
export const NLA_TYPE_MASK = 0x3fff; // strips NLA_F_NESTED and NLA_F_NET_BYTEORDER

export const align4 = (n: number): number => (n + 3) & ~3;

export class NetlinkDecodeError extends Error {
  override readonly name = 'NetlinkDecodeError';
}

// --- fixed-size structs (the header that precedes the attributes of each message) ---

export type FieldType = 'u8' | 'u16' | 'u32' | 's32';
export interface StructSchema {
  readonly size: number;
  readonly fields: readonly (readonly [name: string, type: FieldType, offset: number])[];
}

/** A struct's decoded fields, as a type: one number per field of the schema (declared `as const`). */
export type FieldsOf<S extends StructSchema> = { -readonly [F in S['fields'][number] as F[0]]: number };

function readField(view: DataView, offset: number, type: FieldType): number {
  switch (type) {
    case 'u8':
      return view.getUint8(offset);
    case 'u16':
      return view.getUint16(offset, HOST_LITTLE_ENDIAN);
    case 'u32':
      return view.getUint32(offset, HOST_LITTLE_ENDIAN);
    case 's32':
      return view.getInt32(offset, HOST_LITTLE_ENDIAN);
  }
}

function writeField(view: DataView, offset: number, type: FieldType, value: number): void {
  switch (type) {
    case 'u8':
      return view.setUint8(offset, value);
    case 'u16':
      return view.setUint16(offset, value, HOST_LITTLE_ENDIAN);
    case 'u32':
      return view.setUint32(offset, value, HOST_LITTLE_ENDIAN);
    case 's32':
      return view.setInt32(offset, value, HOST_LITTLE_ENDIAN);
  }
}

export function decodeStruct<T>(schema: StructSchema, bytes: Uint8Array, what: string): T {
  if (bytes.length < schema.size) {
    throw new NetlinkDecodeError(`${what}: ${bytes.length} bytes, shorter than its ${schema.size}-byte header`);
  }
  const view = viewOf(bytes);
  const result: Record<string, number> = {};
  for (const [name, type, offset] of schema.fields) result[name] = readField(view, offset, type);
  return result as T;
}

// --- attributes ---

/** Context an attribute codec may need: the address family of the enclosing message. */
export interface AttributeContext {
  readonly family: number;
}

export interface CustomCodec<T> {
  decode(bytes: Uint8Array, context: AttributeContext): T;
  encode(value: T, context: AttributeContext): Uint8Array;
}

export type AttributeKind =
  | 'u8'
  | 'u16'
  | 'u32'
  | 'u64'
  | 'string' // NUL-terminated on the wire, decoded without the NUL
  | 'address' // IPv4/IPv6 by length, as a canonical string
  | 'lladdr' // link-layer address, as aa:bb:cc:…
  | 'binary'
  | { readonly nested: Policy }
  | { readonly custom: CustomCodec<unknown> };

export interface AttributeSpec {
  readonly type: number;
  readonly name: string;
  readonly kind: AttributeKind;
}
export type Policy = readonly AttributeSpec[];

/** The value an attribute of this kind decodes to (and is encoded from). */
export type ValueOf<K extends AttributeKind> = K extends 'u8' | 'u16' | 'u32'
  ? number
  : K extends 'u64'
    ? bigint
    : K extends 'string' | 'address' | 'lladdr'
      ? string
      : K extends 'binary'
        ? Uint8Array
        : K extends { readonly nested: infer P extends Policy }
          ? AttributesOf<P>
          : K extends { readonly custom: CustomCodec<infer T> }
            ? T
            : never;

/**
 * The decoded attributes of a policy, as a type: one optional property per entry, named and
 * typed by the entry. Declared `as const`, a policy is the single source of both.
 */
export type AttributesOf<P extends Policy> = { -readonly [S in P[number] as S['name']]?: ValueOf<S['kind']> };

const FIXED_SIZES = { u8: 1, u16: 2, u32: 4, u64: 8 } as const;

/** Each policy's specs indexed by attribute type, built once: a decode looks each attribute up. */
const specsByType = new WeakMap<Policy, ReadonlyArray<AttributeSpec | undefined>>();

function specsOf(policy: Policy): ReadonlyArray<AttributeSpec | undefined> {
  let byType = specsByType.get(policy);
  if (!byType) {
    const indexed: Array<AttributeSpec | undefined> = [];
    for (const spec of policy) indexed[spec.type] ??= spec;
    specsByType.set(policy, (byType = indexed));
  }
  return byType;
}

/**
 * Where attribute `type`'s payload lies in the run of attributes from `from` on, read from the
 * bytes without a decode (or a DataView: the echo check searches sixteen times per echo):
 * null if absent, undefined if the run is malformed.
 */
export function attributeSpan(bytes: Uint8Array, from: number, type: number): { start: number; end: number } | null | undefined {
  for (let offset = from; offset + NLA_HDRLEN <= bytes.length; ) {
    const length = u16(bytes, offset);
    if (length < NLA_HDRLEN || offset + length > bytes.length) return undefined;
    if ((u16(bytes, offset + 2) & NLA_TYPE_MASK) === type) return { start: offset + NLA_HDRLEN, end: offset + length };
    offset += align4(length);
  }
  return null;
}

const u16 = (bytes: Uint8Array, offset: number): number =>
  HOST_LITTLE_ENDIAN ? bytes[offset]! | (bytes[offset + 1]! << 8) : (bytes[offset]! << 8) | bytes[offset + 1]!;

/**
 * Decodes a run of attributes by policy. Attributes the policy does not name are skipped:
 * newer kernels add attributes, and symroute must keep working on them. A known attribute
 * with the wrong size, or a length that runs past the buffer, is an error.
 */
export function decodeAttributes<T>(policy: Policy, bytes: Uint8Array, context: AttributeContext, what: string): T {
  const view = viewOf(bytes);
  const byType = specsOf(policy);
  const result: Record<string, unknown> = {};
  let offset = 0;
  while (offset + NLA_HDRLEN <= bytes.length) {
    const length = view.getUint16(offset, HOST_LITTLE_ENDIAN);
    const type = view.getUint16(offset + 2, HOST_LITTLE_ENDIAN) & NLA_TYPE_MASK;
    if (length < NLA_HDRLEN || offset + length > bytes.length) {
      throw new NetlinkDecodeError(
        `${what}: attribute ${type} at offset ${offset} has length ${length}, ${bytes.length - offset} bytes left`,
      );
    }
    const spec = byType[type];
    if (spec) result[spec.name] = decodeValue(spec, bytes, view, offset + NLA_HDRLEN, length - NLA_HDRLEN, context, what);
    offset += align4(length);
  }
  if (offset < bytes.length) {
    throw new NetlinkDecodeError(`${what}: ${bytes.length - offset} trailing bytes after the last attribute`);
  }
  return result as T;
}

/**
 * One attribute's value: its payload is `size` bytes at `start` of `bytes` (seen through
 * `view`). Numbers and IPv4 addresses are read in place, without a view or copy of their
 * own: a dump of 100k routes decodes half a million of them.
 */
function decodeValue(
  spec: AttributeSpec,
  bytes: Uint8Array,
  view: DataView,
  start: number,
  size: number,
  context: AttributeContext,
  what: string,
): unknown {
  const where = `${what}: attribute ${spec.name}`;
  const kind = spec.kind;
  if (typeof kind === 'object') {
    const payload = bytes.subarray(start, start + size);
    if ('nested' in kind) return decodeAttributes(kind.nested, payload, context, where);
    try {
      return kind.custom.decode(payload, context);
    } catch (error) {
      throw new NetlinkDecodeError(`${where}: ${(error as Error).message}`);
    }
  }
  switch (kind) {
    case 'u8':
    case 'u16':
    case 'u32':
    case 'u64':
      if (size !== FIXED_SIZES[kind]) {
        throw new NetlinkDecodeError(`${where}: expected ${FIXED_SIZES[kind]} bytes, got ${size}`);
      }
      if (kind === 'u8') return bytes[start]!;
      if (kind === 'u16') return view.getUint16(start, HOST_LITTLE_ENDIAN);
      if (kind === 'u32') return view.getUint32(start, HOST_LITTLE_ENDIAN);
      return view.getBigUint64(start, HOST_LITTLE_ENDIAN);
    case 'string': {
      const payload = bytes.subarray(start, start + size);
      const end = payload.indexOf(0);
      return Buffer.from(payload.buffer, payload.byteOffset, end < 0 ? size : end).toString('utf8');
    }
    case 'address':
      if (size !== 4 && size !== 16) {
        throw new NetlinkDecodeError(`${where}: an IP address has 4 or 16 bytes, got ${size}`);
      }
      if (size !== addressLength(context.family)) {
        throw new NetlinkDecodeError(`${where}: ${size}-byte address in a family ${context.family} message`);
      }
      if (size === 4) return `${bytes[start]}.${bytes[start + 1]}.${bytes[start + 2]}.${bytes[start + 3]}`;
      return bytesToAddress(bytes.subarray(start, start + size));
    case 'lladdr':
      return Array.from(bytes.subarray(start, start + size), (byte) => byte.toString(16).padStart(2, '0')).join(':');
    case 'binary':
      return Uint8Array.from(bytes.subarray(start, start + size));
  }
}

function addressLength(family: number): number {
  if (family === AF_INET) return 4;
  if (family === AF_INET6) return 16;
  return -1;
}

/**
 * Encodes attributes by policy into one buffer, after `headroom` zeroed bytes (room for the
 * headers of the message they belong to, so a request is written into a single buffer).
 * Numbers and IPv4 addresses are written in place; only strings and nested, custom or
 * binary values are encoded apart first.
 */
export function encodeAttributes(policy: Policy, values: object, context: AttributeContext, headroom = 0): Uint8Array {
  const record = values as Record<string, unknown>;
  // Pass 1: each present attribute's payload (the bytes, where they are not written in place) and the total.
  const present: Array<{ spec: AttributeSpec; value: unknown; bytes: Uint8Array | undefined; size: number }> = [];
  let total = headroom;
  for (const spec of policy) {
    const value = record[spec.name];
    if (value === undefined) continue;
    const bytes = inPlace(spec, value, context) ? undefined : encodeValue(spec, value, context);
    const size = bytes ? bytes.length : payloadSize(spec, context);
    present.push({ spec, value, bytes, size });
    total += align4(NLA_HDRLEN + size);
  }
  // Pass 2: written one after the other.
  const out = Buffer.alloc(total);
  const view = viewOf(out);
  let offset = headroom;
  for (const { spec, value, bytes, size } of present) {
    view.setUint16(offset, NLA_HDRLEN + size, HOST_LITTLE_ENDIAN);
    view.setUint16(offset + 2, spec.type, HOST_LITTLE_ENDIAN);
    const at = offset + NLA_HDRLEN;
    if (bytes) out.set(bytes, at);
    else writeInPlace(spec, value, view, at);
    offset += align4(NLA_HDRLEN + size);
  }
  return out;
}

export function encodeAttribute(type: number, payload: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(align4(NLA_HDRLEN + payload.length));
  const view = viewOf(bytes);
  view.setUint16(0, NLA_HDRLEN + payload.length, HOST_LITTLE_ENDIAN);
  view.setUint16(2, type, HOST_LITTLE_ENDIAN);
  bytes.set(payload, NLA_HDRLEN);
  return bytes;
}

/** Whether a value is written straight into the message: a number, or an IPv4 address in an IPv4 message. */
function inPlace(spec: AttributeSpec, value: unknown, context: AttributeContext): boolean {
  const kind = spec.kind;
  if (kind === 'u8' || kind === 'u16' || kind === 'u32' || kind === 'u64') return true;
  return kind === 'address' && context.family === AF_INET && ipv4Number(value as string) >= 0;
}

function payloadSize(spec: AttributeSpec, context: AttributeContext): number {
  const kind = spec.kind;
  return kind === 'address' ? addressLength(context.family) : FIXED_SIZES[kind as keyof typeof FIXED_SIZES];
}

function writeInPlace(spec: AttributeSpec, value: unknown, view: DataView, at: number): void {
  switch (spec.kind) {
    case 'u8':
      return view.setUint8(at, value as number);
    case 'u16':
      return view.setUint16(at, value as number, HOST_LITTLE_ENDIAN);
    case 'u32':
      return view.setUint32(at, value as number, HOST_LITTLE_ENDIAN);
    case 'u64':
      return view.setBigUint64(at, value as bigint, HOST_LITTLE_ENDIAN);
    default:
      // An IPv4 address, in network byte order.
      return view.setUint32(at, ipv4Number(value as string), false);
  }
}

/**
 * A dotted-quad IPv4 address (decimal octets, no leading zeros: what isIPv4 accepts) as an
 * unsigned number, read without a regular expression; -1 for any other text (which the full
 * parser then judges).
 */
function ipv4Number(text: string): number {
  let value = 0;
  let octets = 0;
  let octet = -1;
  let digits = 0;
  for (let i = 0; i <= text.length; i++) {
    const code = i < text.length ? text.charCodeAt(i) : 46; // a final '.'
    if (code === 46) {
      if (digits === 0 || octet > 255 || ++octets > 4) return -1;
      value = value * 256 + octet;
      octet = -1;
      digits = 0;
    } else if (code >= 48 && code <= 57) {
      if (digits > 0 && octet === 0) return -1; // a leading zero
      octet = (octet < 0 ? 0 : octet * 10) + (code - 48);
      if (++digits > 3) return -1;
    } else return -1;
  }
  return octets === 4 ? value : -1;
}

function encodeValue(spec: AttributeSpec, value: unknown, context: AttributeContext): Uint8Array {
  const kind = spec.kind;
  if (typeof kind === 'object') {
    if ('nested' in kind) return encodeAttributes(kind.nested, value as object, context);
    return kind.custom.encode(value, context);
  }
  switch (kind) {
    case 'u8':
    case 'u16':
    case 'u32':
    case 'u64': {
      const bytes = new Uint8Array(FIXED_SIZES[kind]);
      writeInPlace(spec, value, viewOf(bytes), 0);
      return bytes;
    }
    case 'string':
      return concat([Buffer.from(value as string, 'utf8'), new Uint8Array(1)]);
    case 'address': {
      const bytes = addressToBytes(value as string);
      if (bytes.length !== addressLength(context.family)) {
        throw new Error(`attribute ${spec.name}: ${value as string} does not belong to family ${context.family}`);
      }
      return bytes;
    }
    case 'lladdr':
      return Uint8Array.from((value as string).split(':'), (byte) => parseInt(byte, 16));
    case 'binary':
      return value as Uint8Array;
  }
}

/** Writes a struct's fields into `target` at `offset`. */
export function writeStruct(schema: StructSchema, values: object, target: Uint8Array, offset: number): void {
  const view = viewOf(target);
  const record = values as Record<string, number | undefined>;
  for (const [name, type, at] of schema.fields) writeField(view, offset + at, type, record[name] ?? 0);
}

/** Writes an nlmsghdr at the start of `message`, whose whole length it gives. */
export function writeMessageHeader(message: Uint8Array, header: MessageHeader): void {
  const view = viewOf(message);
  view.setUint32(0, message.length, HOST_LITTLE_ENDIAN);
  view.setUint16(4, header.type, HOST_LITTLE_ENDIAN);
  view.setUint16(6, header.flags, HOST_LITTLE_ENDIAN);
  view.setUint32(8, header.seq, HOST_LITTLE_ENDIAN);
  view.setUint32(12, header.portId, HOST_LITTLE_ENDIAN);
}

// --- message framing ---

export interface MessageHeader {
  readonly type: number;
  readonly flags: number;
  readonly seq: number;
  readonly portId: number;
}

/** One nlmsghdr and the payload that follows it (without padding). */
export interface RawMessage extends MessageHeader {
  readonly payload: Uint8Array;
}

export function encodeMessage(header: MessageHeader, payload: Uint8Array): Buffer {
  const bytes = Buffer.alloc(align4(NLMSG_HDRLEN + payload.length));
  const view = viewOf(bytes);
  view.setUint32(0, NLMSG_HDRLEN + payload.length, HOST_LITTLE_ENDIAN);
  view.setUint16(4, header.type, HOST_LITTLE_ENDIAN);
  view.setUint16(6, header.flags, HOST_LITTLE_ENDIAN);
  view.setUint32(8, header.seq, HOST_LITTLE_ENDIAN);
  view.setUint32(12, header.portId, HOST_LITTLE_ENDIAN);
  bytes.set(payload, NLMSG_HDRLEN);
  return bytes;
}

/** Splits one datagram into its messages; a length field that lies is an error, not a crash. */
export function splitDatagram(datagram: Uint8Array): RawMessage[] {
  return [...messagesOf(datagram)];
}

/**
 * One datagram's messages, one at a time (splitDatagram, lazily): a reader of a large dump
 * holds one message, not a datagram's worth. A length field that lies is an error when it is
 * reached; the messages before it have been read by then.
 */
export function* messagesOf(datagram: Uint8Array): Generator<RawMessage, void, undefined> {
  const view = viewOf(datagram);
  let offset = 0;
  while (offset < datagram.length) {
    if (datagram.length - offset < NLMSG_HDRLEN) {
      throw new NetlinkDecodeError(`datagram: ${datagram.length - offset} trailing bytes, too short for a message header`);
    }
    const length = view.getUint32(offset, HOST_LITTLE_ENDIAN);
    if (length < NLMSG_HDRLEN || offset + length > datagram.length) {
      throw new NetlinkDecodeError(
        `datagram: message at offset ${offset} claims ${length} bytes, ${datagram.length - offset} available`,
      );
    }
    yield {
      type: view.getUint16(offset + 4, HOST_LITTLE_ENDIAN),
      flags: view.getUint16(offset + 6, HOST_LITTLE_ENDIAN),
      seq: view.getUint32(offset + 8, HOST_LITTLE_ENDIAN),
      portId: view.getUint32(offset + 12, HOST_LITTLE_ENDIAN),
      payload: datagram.subarray(offset + NLMSG_HDRLEN, offset + length),
    };
    offset += align4(length);
  }
}

export function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  return Buffer.concat(parts);
}
