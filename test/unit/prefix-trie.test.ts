// The prefix trie against the definition it replaces: a prefix overlaps another when one
// contains the other, i.e. both agree on the bits of the shorter one. Random prefixes of both
// families, added and deleted in random order, every length from 0 to the whole address.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PrefixTrie } from '../../src/domain/prefix-trie.js';
import { addressToBytes, bytesToAddress, networkOf } from '../../src/net/ip.js';

interface Held {
  readonly network: string;
  readonly length: number;
  readonly owner: number;
}

const overlaps = (a: Held | { network: string; length: number }, b: { network: string; length: number }) => {
  const shorter = Math.min(a.length, b.length);
  return networkOf(a.network, shorter) === networkOf(b.network, shorter);
};

// Few distinct high bits, so that prefixes really nest and collide.
const prefixArb = (bytes: 4 | 16) =>
  fc
    .tuple(fc.uint8Array({ minLength: bytes, maxLength: bytes }), fc.integer({ min: 0, max: bytes * 8 }), fc.integer({ min: 1, max: 6 }))
    .map(([raw, length, owner]) => {
      raw[0] = raw[0]! & 0x81;
      if (bytes === 16) raw[1] = raw[1]! & 0x03;
      return { network: networkOf(bytesToAddress(raw), length), length, owner };
    });

describe('the prefix trie', () => {
  for (const bytes of [4, 16] as const) {
    it(`finds exactly the prefixes equal to, around and inside a prefix (IPv${bytes === 4 ? 4 : 6}), through adds and deletes`, () => {
      fc.assert(
        fc.property(fc.array(prefixArb(bytes), { maxLength: 40 }), fc.array(fc.nat(), { maxLength: 20 }), fc.array(prefixArb(bytes), { minLength: 1, maxLength: 10 }), (added, deletions, queries) => {
          const trie = new PrefixTrie<number>();
          const held: Held[] = [];
          for (const prefix of added) {
            trie.add(addressToBytes(prefix.network), prefix.length, prefix.owner);
            held.push(prefix);
          }
          for (const pick of deletions) {
            if (held.length === 0) break;
            const [gone] = held.splice(pick % held.length, 1);
            // The same prefix and owner may be held twice; the trie keeps one of them.
            if (!held.some((h) => h.network === gone!.network && h.length === gone!.length && h.owner === gone!.owner)) {
              trie.delete(addressToBytes(gone!.network), gone!.length, gone!.owner);
            }
          }
          for (const query of queries) {
            const expected = new Set(held.filter((h) => overlaps(h, query)).map((h) => h.owner));
            expect(trie.overlapping(addressToBytes(query.network), query.length)).toEqual(expected);
          }
        }),
        { numRuns: 300 },
      );
    });
  }

  it('forgets what was deleted down to the root', () => {
    const trie = new PrefixTrie<string>();
    trie.add(addressToBytes('198.18.1.0'), 24, 'a');
    trie.add(addressToBytes('198.18.1.16'), 28, 'b');
    trie.delete(addressToBytes('198.18.1.16'), 28, 'b');
    trie.delete(addressToBytes('198.18.1.0'), 24, 'a');
    expect(trie.overlapping(addressToBytes('0.0.0.0'), 0)).toEqual(new Set());
    expect(trie).toEqual(new PrefixTrie<string>());
  });
});
