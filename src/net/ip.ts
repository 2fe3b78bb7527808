// IP address literals <-> bytes, and prefix arithmetic. Addresses travel through symroute
// as canonical strings (RFC 5952 for IPv6) so that the mirror, the planner and the logs all
// compare and print the same text; the planner reads their bits through parseAddress.
export type Family = 4 | 6;

export function familyOf(address: string): Family | undefined {
  const bytes = parseAddress(address);
  return bytes === undefined ? undefined : bytes.length === 4 ? 4 : 6;
}

export function addressToBytes(address: string): Uint8Array {
  const bytes = parseAddress(address);
  if (bytes === undefined) throw new Error(`not an IP address: ${JSON.stringify(address)}`);
  return bytes;
}

// A hand-written parser rather than node:net's isIPv4/isIPv6 and string splitting: the
// planner reads the bits of every address and prefix it plans, and the regular expressions
// were the largest part of planning one event. Strict: dotted quads without leading zeros,
// IPv6 groups of 1–4 hex digits, one `::` at most, an optional dotted IPv4 tail, no zone.
const DOT = 46;
const COLON = 58;

/** The address's bytes, or undefined if it is not an IPv4 or IPv6 literal. */
function parseAddress(text: string): Uint8Array | undefined {
  if (text.includes(':')) return parseIPv6(text);
  const bytes = new Uint8Array(4);
  return parseDottedQuad(text, 0, bytes, 0) === text.length ? bytes : undefined;
}

/** Reads a dotted quad at `from` into bytes[at..at+3]; returns where it ended, or -1. */
function parseDottedQuad(text: string, from: number, bytes: Uint8Array, at: number): number {
  let i = from;
  for (let part = 0; part < 4; part++) {
    if (part > 0) {
      if (text.charCodeAt(i) !== DOT) return -1;
      i++;
    }
    const start = i;
    let value = 0;
    while (i < text.length && i - start < 3) {
      const digit = text.charCodeAt(i) - 48;
      if (digit < 0 || digit > 9) break;
      value = value * 10 + digit;
      i++;
    }
    if (i === start || value > 255 || (i - start > 1 && text.charCodeAt(start) === 48)) return -1;
    bytes[at + part] = value;
  }
  return i;
}

function hexDigit(code: number): number {
  if (code >= 48 && code <= 57) return code - 48;
  const lower = code | 0x20;
  return lower >= 97 && lower <= 102 ? lower - 87 : -1;
}

function parseIPv6(text: string): Uint8Array | undefined {
  const bytes = new Uint8Array(16);
  const groups: number[] = [];
  let gap = -1; // where `::` stood, in groups
  let i = 0;
  if (text.startsWith('::')) {
    gap = 0;
    i = 2;
    if (i === text.length) return bytes;
  }
  for (;;) {
    const start = i;
    let value = 0;
    while (i < text.length && i - start < 4) {
      const digit = hexDigit(text.charCodeAt(i));
      if (digit < 0) break;
      value = (value << 4) | digit;
      i++;
    }
    if (text.charCodeAt(i) === DOT) {
      // A dotted IPv4 tail: the last two groups, and the end of the text.
      if (groups.length > 6) return undefined;
      const tail = new Uint8Array(4);
      if (parseDottedQuad(text, start, tail, 0) !== text.length) return undefined;
      groups.push((tail[0]! << 8) | tail[1]!, (tail[2]! << 8) | tail[3]!);
      break;
    }
    if (i === start || groups.length === 8) return undefined;
    groups.push(value);
    if (i === text.length) break;
    if (text.charCodeAt(i) !== COLON) return undefined;
    i++;
    if (text.charCodeAt(i) === COLON) {
      if (gap >= 0) return undefined;
      gap = groups.length;
      i++;
      if (i === text.length) break;
    } else if (i === text.length) return undefined;
  }
  if (gap < 0 ? groups.length !== 8 : groups.length > 7) return undefined;
  const tailAt = gap < 0 ? 0 : 8 - (groups.length - gap);
  groups.forEach((group, g) => {
    const at = gap < 0 || g < gap ? g : tailAt + g - gap;
    bytes[at * 2] = group >> 8;
    bytes[at * 2 + 1] = group & 0xff;
  });
  return bytes;
}

export function bytesToAddress(bytes: Uint8Array): string {
  if (bytes.length === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  if (bytes.length !== 16) throw new Error(`an IP address has 4 or 16 bytes, not ${bytes.length}`);
  // RFC 5952: compress the longest run (length >= 2) of zero groups, the first one on ties.
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (bytes[2 * i] !== 0 || bytes[2 * i + 1] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && bytes[2 * j] === 0 && bytes[2 * j + 1] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  let text = '';
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      text += '::';
      i += bestLength - 1;
      continue;
    }
    if (text.length > 0 && !text.endsWith(':')) text += ':';
    text += ((bytes[2 * i]! << 8) | bytes[2 * i + 1]!).toString(16);
  }
  return text;
}

export function canonicalAddress(address: string): string {
  return bytesToAddress(addressToBytes(address));
}

/** The network address of `address/prefixLength` (host bits cleared). */
export function networkOf(address: string, prefixLength: number): string {
  return bytesToAddress(maskBytes(addressToBytes(address), prefixLength));
}

/** Bit `bit` of an address, counted from the most significant: 0 or 1. */
export const bitOf = (bytes: Uint8Array, bit: number): number => (bytes[bit >> 3]! >> (7 - (bit & 7))) & 1;

/** A copy of `bytes` with bit `bit` set: the upper half of the prefix of that many bits. */
export function withBitSet(bytes: Uint8Array, bit: number): Uint8Array {
  const copy = Uint8Array.from(bytes);
  copy[bit >> 3]! |= 0x80 >> (bit & 7);
  return copy;
}

/** Clears the host bits of `bytes` (in place) after the first `prefixLength`; returns them. */
export function maskBytes(bytes: Uint8Array, prefixLength: number): Uint8Array {
  const whole = prefixLength >> 3;
  if (whole < bytes.length) {
    bytes[whole]! &= (0xff00 >> (prefixLength & 7)) & 0xff;
    bytes.fill(0, whole + 1);
  }
  return bytes;
}

export function isIPv6LinkLocal(address: string): boolean {
  const bytes = addressToBytes(address);
  return bytes.length === 16 && bytes[0] === 0xfe && (bytes[1]! & 0xc0) === 0x80;
}
