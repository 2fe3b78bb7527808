// IP address literals <-> bytes, and prefix arithmetic. Addresses travel through symroute
// as canonical strings (RFC 5952 for IPv6) so that the mirror, the planner and the logs all
// compare and print the same text.
import { isIPv4, isIPv6 } from 'node:net';

export type Family = 4 | 6;

export function familyOf(address: string): Family | undefined {
  if (isIPv4(address)) return 4;
  if (isIPv6(address)) return 6;
  return undefined;
}

export function addressToBytes(address: string): Uint8Array {
  if (isIPv4(address)) return Uint8Array.from(address.split('.').map(Number));
  if (!isIPv6(address)) throw new Error(`not an IP address: ${JSON.stringify(address)}`);
  // An embedded IPv4 tail (::ffff:198.51.100.1) is rewritten as its two hex groups.
  const text = address.replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_, a, b, c, d) =>
    `${((+a << 8) | +b).toString(16)}:${((+c << 8) | +d).toString(16)}`,
  );
  const bytes = new Uint8Array(16);
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const groups = (part: string | undefined) => (part ? part.split(':') : []);
  const headGroups = groups(head);
  const tailGroups = groups(tail);
  headGroups.forEach((group, i) => writeGroup(bytes, i * 2, group));
  tailGroups.forEach((group, i) => writeGroup(bytes, 16 - (tailGroups.length - i) * 2, group));
  return bytes;
}

function writeGroup(bytes: Uint8Array, offset: number, group: string): void {
  const value = parseInt(group, 16);
  bytes[offset] = value >> 8;
  bytes[offset + 1] = value & 0xff;
}

export function bytesToAddress(bytes: Uint8Array): string {
  if (bytes.length === 4) return Array.from(bytes).join('.');
  if (bytes.length !== 16) throw new Error(`an IP address has 4 or 16 bytes, not ${bytes.length}`);
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  // RFC 5952: compress the longest run (length >= 2) of zero groups, the first one on ties.
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

export function canonicalAddress(address: string): string {
  return bytesToAddress(addressToBytes(address));
}

/** The network address of `address/prefixLength` (host bits cleared). */
export function networkOf(address: string, prefixLength: number): string {
  const bytes = addressToBytes(address);
  for (let bit = prefixLength; bit < bytes.length * 8; bit++) {
    bytes[bit >> 3]! &= ~(0x80 >> (bit & 7));
  }
  return bytesToAddress(bytes);
}

export function isIPv6LinkLocal(address: string): boolean {
  const bytes = addressToBytes(address);
  return bytes.length === 16 && bytes[0] === 0xfe && (bytes[1]! & 0xc0) === 0x80;
}
