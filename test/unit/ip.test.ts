import { isIPv4, isIPv6 } from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  addressToBytes,
  bytesToAddress,
  canonicalAddress,
  familyOf,
  isIPv6LinkLocal,
  networkOf,
} from '../../src/net/ip.js';

/** Node's (WHATWG URL) canonical text of an IPv6 address: RFC 5952 without the IPv4 tail. */
const nodeCanonicalV6 = (address: string) => new URL(`http://[${address}]`).hostname.slice(1, -1);
const nodeCanonicalV4 = (address: string) => new URL(`http://${address}`).hostname;

const ipv4Bytes = fc.uint8Array({ minLength: 4, maxLength: 4 });
/** 16 bytes whose groups are often zero, so zero runs of every length and position show up. */
const ipv6Bytes = fc
  .array(fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 0xffff })), {
    minLength: 8,
    maxLength: 8,
  })
  .map((groups) => {
    const bytes = new Uint8Array(16);
    groups.forEach((g, i) => {
      bytes[i * 2] = g >> 8;
      bytes[i * 2 + 1] = g & 0xff;
    });
    return bytes;
  });
const anyBytes = fc.oneof(ipv4Bytes, ipv6Bytes, fc.uint8Array({ minLength: 16, maxLength: 16 }));

/** Reference RFC 5952 formatter, written independently of src/net/ip.ts. */
function rfc5952(bytes: Uint8Array): string {
  const groups = Array.from({ length: 8 }, (_, i) => (bytes[2 * i]! << 8) | bytes[2 * i + 1]!);
  let best = { start: -1, length: 0 };
  for (let start = 0; start < 8; start++) {
    let length = 0;
    while (start + length < 8 && groups[start + length] === 0) length++;
    if (length >= 2 && length > best.length) best = { start, length };
  }
  const hex = groups.map((g) => g.toString(16));
  if (best.start < 0) return hex.join(':');
  const head = hex.slice(0, best.start).join(':');
  const tail = hex.slice(best.start + best.length).join(':');
  return `${head}::${tail}`;
}

describe('bytesToAddress / addressToBytes', () => {
  it('round-trips any 4 bytes through dotted-quad text identical to Node’s', () => {
    fc.assert(
      fc.property(ipv4Bytes, (bytes) => {
        const text = bytesToAddress(bytes);
        expect(isIPv4(text)).toBe(true);
        expect(familyOf(text)).toBe(4);
        expect(text).toBe(Array.from(bytes).join('.'));
        expect(text).toBe(nodeCanonicalV4(text));
        expect(addressToBytes(text)).toEqual(bytes);
      }),
    );
  });

  it('round-trips any 16 bytes through RFC 5952 text identical to Node’s canonical form', () => {
    fc.assert(
      fc.property(ipv6Bytes, (bytes) => {
        const text = bytesToAddress(bytes);
        expect(isIPv6(text)).toBe(true);
        expect(familyOf(text)).toBe(6);
        expect(addressToBytes(text)).toEqual(bytes);
        expect(text).toBe(nodeCanonicalV6(text));
        expect(text).toBe(rfc5952(bytes));
      }),
      { numRuns: 2000 },
    );
  });

  it('round-trips uniformly random 16 bytes too', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (bytes) => {
        const text = bytesToAddress(bytes);
        expect(addressToBytes(text)).toEqual(bytes);
        expect(text).toBe(nodeCanonicalV6(text));
      }),
    );
  });

  it('parses every spelling Node accepts to the same bytes as the canonical text', () => {
    fc.assert(
      fc.property(ipv6Bytes, fc.boolean(), fc.boolean(), (bytes, upper, padded) => {
        // Fully expanded, optionally zero-padded and upper-case: no compression at all.
        const groups = Array.from({ length: 8 }, (_, i) => ((bytes[2 * i]! << 8) | bytes[2 * i + 1]!).toString(16));
        let text = groups.map((g) => (padded ? g.padStart(4, '0') : g)).join(':');
        if (upper) text = text.toUpperCase();
        expect(isIPv6(text)).toBe(true);
        expect(addressToBytes(text)).toEqual(bytes);
        expect(canonicalAddress(text)).toBe(bytesToAddress(bytes));
      }),
    );
  });

  it('parses Node’s own canonical output of random fast-check IPv6 literals', () => {
    fc.assert(
      fc.property(fc.ipV6(), (literal) => {
        const canonical = canonicalAddress(literal);
        expect(canonical).toBe(nodeCanonicalV6(literal));
        expect(addressToBytes(canonical)).toEqual(addressToBytes(literal));
      }),
      { numRuns: 1000 },
    );
  });

  it('accepts exactly the literals Node accepts (zones aside), with the bytes of Node’s canonical text', () => {
    // Near-misses: strings over the characters of addresses, and mutations of real literals.
    const nearMiss = fc.oneof(
      fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF:.'), maxLength: 45 }),
      fc.tuple(fc.oneof(fc.ipV4(), fc.ipV6()), fc.nat(45), fc.constantFrom('', ':', '.', '0', '::', 'f', '1.2')).map(
        ([literal, at, insert]) => literal.slice(0, at) + insert + literal.slice(at + 1),
      ),
    );
    fc.assert(
      fc.property(nearMiss, (text) => {
        const family = familyOf(text);
        expect(family).toBe(isIPv4(text) ? 4 : isIPv6(text) ? 6 : undefined);
        if (family === 4) expect(Array.from(addressToBytes(text)).join('.')).toBe(text);
        if (family === 6) expect(bytesToAddress(addressToBytes(text))).toBe(nodeCanonicalV6(text));
      }),
      { numRuns: 20000 },
    );
    expect(familyOf('fe80::1%eth0')).toBeUndefined();
  });

  it('canonicalAddress is idempotent', () => {
    fc.assert(
      fc.property(anyBytes, (bytes) => {
        const once = bytesToAddress(bytes);
        expect(canonicalAddress(once)).toBe(once);
        expect(canonicalAddress(canonicalAddress(once))).toBe(once);
      }),
    );
  });

  it('rejects what is not an address', () => {
    expect(() => addressToBytes('not an address')).toThrow(/not an IP address/);
    expect(() => addressToBytes('')).toThrow(/not an IP address/);
    expect(() => addressToBytes('198.18.1')).toThrow(/not an IP address/);
    expect(() => addressToBytes('2001:db8:3:4:5:6:7:8:9')).toThrow(/not an IP address/);
    expect(() => bytesToAddress(new Uint8Array(5))).toThrow(/4 or 16 bytes, not 5/);
    expect(() => bytesToAddress(new Uint8Array(0))).toThrow(/4 or 16 bytes, not 0/);
    expect(familyOf('example.com')).toBeUndefined();
    expect(familyOf('198.18.1.2')).toBe(4);
    expect(familyOf('::')).toBe(6);
  });
});

describe('RFC 5952 formatting', () => {
  it.each([
    // 4.1 leading zeros suppressed; 4.3 lower case
    ['2001:0DB8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['2001:db8:aaaa:bbbb:cccc:dddd:eeee:0001', '2001:db8:aaaa:bbbb:cccc:dddd:eeee:1'],
    // 4.2.1 shorten as much as possible
    ['2001:db8:0:0:0:0:2:1', '2001:db8::2:1'],
    // 4.2.2 a single 16-bit zero field is never compressed
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['2001:db8:0:1:0:1:0:1', '2001:db8:0:1:0:1:0:1'],
    ['fe80:0:1:0:1:0:1:0', 'fe80:0:1:0:1:0:1:0'],
    // 4.2.3 the longest run is compressed; on ties, the first
    ['fe80:0:0:1:0:0:0:1', 'fe80:0:0:1::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['fe80:0:0:2:0:0:3:4', 'fe80::2:0:0:3:4'],
    ['fe80:0:0:0:2:0:0:0', 'fe80::2:0:0:0'],
    ['2001:db8:0:0:1:0:0:0', '2001:db8:0:0:1::'],
    // runs at either end, and everything
    ['0:0:0:0:0:0:0:0', '::'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['fe80:0:0:0:0:0:0:0', 'fe80::'],
    ['0:0:0:0:0:ffff:c613:0', '::ffff:c613:0'],
    ['2001:db8:0:1:0:0:0:0', '2001:db8:0:1::'],
    ['fe80:0000:0000:0000:0200:5eff:fe00:5301', 'fe80::200:5eff:fe00:5301'],
    ['2001:db8:ffff:ffff:ffff:ffff:ffff:ffff', '2001:db8:ffff:ffff:ffff:ffff:ffff:ffff'],
    // already-compressed input that is not canonical
    ['2001:db8::0:1', '2001:db8::1'],
    ['::0:0:1', '::1'],
    ['fe80:0::', 'fe80::'],
  ])('%s -> %s', (input, expected) => {
    expect(canonicalAddress(input)).toBe(expected);
    expect(canonicalAddress(input)).toBe(nodeCanonicalV6(input));
  });

  it.each([
    // An embedded IPv4 tail is read as its two hex groups (output never uses the dotted form).
    ['::ffff:198.51.100.1', '::ffff:c633:6401', [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 1]],
    ['2001:db8::198.51.100.33', '2001:db8::c633:6421', [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 198, 51, 100, 33]],
    ['::198.18.1.2', '::c612:102', [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 198, 18, 1, 2]],
    ['::0.0.0.0', '::', new Array(16).fill(0)],
    ['2001:db8:1:2:3:4:198.18.7.10', '2001:db8:1:2:3:4:c612:70a', [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2, 0, 3, 0, 4, 198, 18, 7, 10]],
    ['::ffff:198.18.0.0', '::ffff:c612:0', [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 0]],
  ])('embedded IPv4 tail %s -> %s', (input, expected, bytes) => {
    expect(Array.from(addressToBytes(input))).toEqual(bytes);
    expect(canonicalAddress(input)).toBe(expected);
    expect(canonicalAddress(input)).toBe(nodeCanonicalV6(input));
  });

  it('formats IPv4 without leading zeros or compression', () => {
    expect(bytesToAddress(Uint8Array.from([0, 0, 0, 0]))).toBe('0.0.0.0');
    expect(bytesToAddress(Uint8Array.from([198, 18, 1, 2]))).toBe('198.18.1.2');
    expect(bytesToAddress(Uint8Array.from([203, 0, 113, 255]))).toBe('203.0.113.255');
    expect(canonicalAddress('198.18.0.1')).toBe('198.18.0.1');
  });
});

describe('networkOf', () => {
  it.each([
    ['198.18.1.77', 24, '198.18.1.0'],
    ['198.18.1.200', 25, '198.18.1.128'],
    ['198.18.1.3', 31, '198.18.1.2'],
    ['198.18.1.77', 32, '198.18.1.77'],
    ['198.18.1.77', 0, '0.0.0.0'],
    ['198.19.255.255', 17, '198.19.128.0'],
    ['198.19.255.255', 0, '0.0.0.0'],
    ['198.18.255.2', 16, '198.18.0.0'],
    ['198.18.31.255', 20, '198.18.16.0'],
    ['198.19.255.2', 15, '198.18.0.0'],
  ])('IPv4 %s/%i -> %s', (address, length, network) => {
    expect(networkOf(address, length)).toBe(network);
  });

  it.each([
    ['2001:db8:1:2:3:4:5:6', 64, '2001:db8:1:2::'],
    ['2001:db8:1:2:3:4:5:6', 128, '2001:db8:1:2:3:4:5:6'],
    ['2001:db8:1:2:3:4:5:6', 0, '::'],
    ['2001:db8:ffff:ffff:ffff:ffff:ffff:ffff', 33, '2001:db8:8000::'],
    ['2001:db8:ffff:ffff:ffff:ffff:ffff:ffff', 127, '2001:db8:ffff:ffff:ffff:ffff:ffff:fffe'],
    ['2001:db8:1:ffff::1', 65, '2001:db8:1:ffff::'],
    ['2001:db8:1:2:ffff::1', 65, '2001:db8:1:2:8000::'],
    ['2001:db8:1:2:ffff::1', 70, '2001:db8:1:2:fc00::'],
    ['fe80::1', 10, 'fe80::'],
    ['::ffff:198.51.100.77', 120, '::ffff:c633:6400'],
  ])('IPv6 %s/%i -> %s', (address, length, network) => {
    expect(networkOf(address, length)).toBe(network);
  });

  it('keeps exactly the first prefixLength bits, for every length', () => {
    fc.assert(
      fc.property(anyBytes, fc.nat(128), (bytes, rawLength) => {
        const bits = bytes.length * 8;
        const length = rawLength % (bits + 1);
        const address = bytesToAddress(bytes);
        const network = addressToBytes(networkOf(address, length));
        expect(network.length).toBe(bytes.length);
        for (let bit = 0; bit < bits; bit++) {
          const mask = 0x80 >> (bit & 7);
          const expected = bit < length ? bytes[bit >> 3]! & mask : 0;
          expect(network[bit >> 3]! & mask).toBe(expected);
        }
        // Idempotent, and a full-length prefix is the address itself.
        expect(networkOf(networkOf(address, length), length)).toBe(networkOf(address, length));
        expect(networkOf(address, bits)).toBe(address);
        expect(networkOf(address, 0)).toBe(bytes.length === 4 ? '0.0.0.0' : '::');
      }),
    );
  });

  it('does not modify its input text', () => {
    const address = '2001:db8::ffff';
    networkOf(address, 64);
    expect(address).toBe('2001:db8::ffff');
  });
});

describe('isIPv6LinkLocal', () => {
  it.each([
    ['fe80::1', true],
    ['FE80::1', true],
    ['fe80::200:5eff:fe00:5301', true],
    ['febf:ffff::1', true], // fe80::/10 ends at febf:…
    ['fe9a:1::', true],
    ['fec0::1', false], // site-local, not link-local
    ['fe7f:ffff::1', false],
    ['ff02::1', false],
    ['2001:db8::1', false],
    ['::1', false],
    ['::', false],
    ['203.0.113.254', false], // an IPv4 address (link-local or not) is never IPv6 link-local
    ['198.18.1.2', false],
  ])('%s -> %s', (address, expected) => {
    expect(isIPv6LinkLocal(address)).toBe(expected);
  });

  it('agrees with the fe80::/10 prefix for random addresses', () => {
    fc.assert(
      fc.property(ipv6Bytes, fc.integer({ min: 0, max: 0x3f }), fc.boolean(), (bytes, low, force) => {
        if (force) {
          bytes[0] = 0xfe;
          bytes[1] = 0x80 | (low & 0x3f);
        }
        const expected = bytes[0] === 0xfe && (bytes[1]! & 0xc0) === 0x80;
        expect(isIPv6LinkLocal(bytesToAddress(bytes))).toBe(expected);
        expect(networkOf(bytesToAddress(bytes), 10) === 'fe80::').toBe(expected);
      }),
    );
  });
});
