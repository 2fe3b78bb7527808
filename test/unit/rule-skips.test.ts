// The rules that let a packet skip blocks of symroute's rules (src/domain/rule-skips.ts):
// their covers hold every prefix of the block, and with them the kernel's walk reaches the
// same rules, in the same order, for every source and destination as without them. The walk
// below is written from the kernel's fib_rules_lookup, not from src/.
import { BlockList } from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { defaultConfig, type Config } from '../../src/config/config.js';
import { isPlumbingRoute } from '../../src/domain/destinations.js';
import { describeRule, type Rule } from '../../src/domain/model.js';
import { plan } from '../../src/domain/planner.js';
import { computeChanges } from '../../src/domain/diff.js';
import { CoverTrie, COVERS_MAX } from '../../src/domain/rule-skips.js';
import { addressToBytes, bytesToAddress } from '../../src/net/ip.js';
import { MirrorBuilder, PROTO, PROTO_STATIC, route, rule } from '../support/builders.js';

const FR_ACT_TO_TBL = 1;
const FR_ACT_GOTO = 2;
const FR_ACT_NOP = 3;

const contains = (network: string | undefined, length: number, address: string): boolean => {
  if (length === 0) return true;
  const version = address.includes(':') ? 'ipv6' : 'ipv4';
  if (network!.includes(':') !== address.includes(':')) return false;
  const block = new BlockList();
  block.addSubnet(network!, length, version);
  return block.check(address, version);
};

/**
 * The tables the kernel looks up for a packet from `src` to `dst`, in order, as if each
 * lookup fell through (the same table twice in a row counts once: it answers the same):
 * rules by priority (a priority's rules in the order given), a matching goto jumps to the
 * first rule of its target (none there: no jump), a nop passes.
 */
function lookups(rules: readonly Rule[], src: string, dst: string): number[] {
  const family = src.includes(':') ? 6 : 4;
  const walk = rules.filter((r) => r.family === family).sort((a, b) => a.priority - b.priority);
  const tried: number[] = [];
  for (let i = 0; i < walk.length; i++) {
    const r = walk[i]!;
    if (!contains(r.src, r.srcLength, src) || !contains(r.dst, r.dstLength, dst)) continue;
    if (r.action === FR_ACT_GOTO) {
      const target = walk.findIndex((other) => other.priority === r.goto);
      if (target > i) i = target - 1;
    } else if (r.action !== FR_ACT_NOP && tried.at(-1) !== r.table) tried.push(r.table);
  }
  return tried;
}

const prefixArb = fc
  .record({ a: fc.integer({ min: 0, max: 3 }), b: fc.integer({ min: 0, max: 255 }), c: fc.integer({ min: 0, max: 255 }), length: fc.constantFrom(16, 24, 28, 30, 31, 32, 32, 32) })
  .map(({ a, b, c, length }) => {
    const network = bytesToAddress(Uint8Array.from([198, 18 + (a & 1), a >> 1 ? b : b & 3, c]));
    const bytes = addressToBytes(network);
    for (let bit = length; bit < 32; bit++) bytes[bit >> 3]! &= ~(0x80 >> (bit & 7));
    return { network: bytesToAddress(bytes), length };
  });

describe('CoverTrie', () => {
  it('covers every prefix held with at most the limit, disjoint, and forgets deleted ones', () => {
    fc.assert(
      fc.property(fc.array(prefixArb, { minLength: 1, maxLength: 60 }), fc.array(fc.boolean(), { maxLength: 60 }), fc.integer({ min: 1, max: 6 }), (prefixes, drop, limit) => {
        const trie = new CoverTrie(4);
        for (const p of prefixes) trie.add(addressToBytes(p.network), p.length);
        const kept = prefixes.filter((p, i) => {
          if (!drop[i]) return true;
          expect(trie.delete(addressToBytes(p.network), p.length)).toBe(true);
          return false;
        });
        const fresh = new CoverTrie(4);
        for (const p of kept) fresh.add(addressToBytes(p.network), p.length);
        const covers = trie.covers(limit).map((c) => ({ network: bytesToAddress(c.network), length: c.length }));
        expect(covers).toEqual(fresh.covers(limit).map((c) => ({ network: bytesToAddress(c.network), length: c.length })));
        expect(trie.size).toBe(kept.length);
        expect(covers.length).toBeLessThanOrEqual(limit);
        if (kept.length === 0) expect(covers).toEqual([]);
        for (const p of kept) {
          const holding = covers.filter((c) => c.length <= p.length && contains(c.network, c.length, p.network));
          expect(holding, `${p.network}/${p.length} in ${JSON.stringify(covers)}`).toHaveLength(1);
        }
        for (const [i, a] of covers.entries()) {
          for (const b of covers.slice(i + 1)) expect(contains(a.network, a.length, b.network) || contains(b.network, b.length, a.network)).toBe(false);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('refuses to delete what it does not hold', () => {
    const trie = new CoverTrie(4);
    trie.add(addressToBytes('198.18.0.0'), 24);
    expect(trie.delete(addressToBytes('198.18.0.0'), 25)).toBe(false);
    expect(trie.delete(addressToBytes('198.18.1.0'), 24)).toBe(false);
    expect(trie.covers(COVERS_MAX)).toHaveLength(1);
  });
});

describe('skip rules', () => {
  /** Pod i: in a row from 198.19.0.0, or every other address (nothing to merge). */
  const podAddress = (i: number, apart: boolean) => (apart ? `198.19.${(2 * i) >> 8}.${(2 * i) & 255}` : `198.19.${i >> 8}.${i & 255}`);
  /** eth2 with `addresses` host addresses, eth3 with one, and `pods` /32 routes through cali0. */
  function host(c: Config, addresses: number, pods: number, apart = true): MirrorBuilder {
    const b = new MirrorBuilder((r, name) => isPlumbingRoute(c, r, name));
    b.nic(2, 'eth2', ...Array.from({ length: addresses }, (_, i) => `198.18.${i >> 6}.${(i & 63) + 1}/24`), '2001:db8:1::1/64');
    b.nic(3, 'eth3', '203.0.113.10/24');
    b.link(4, 'cali0');
    for (let i = 0; i < pods; i++) b.route(route({ dst: `${podAddress(i, apart)}/32`, oif: 4, scope: 253, protocol: PROTO_STATIC }));
    return b;
  }
  const skipLines = (rules: readonly Rule[]) => rules.filter((r) => r.action !== FR_ACT_TO_TBL).map(describeRule);

  it('come only for blocks of 16 rules or more, per family', () => {
    const c = defaultConfig();
    expect(skipLines(plan(c, host(c, 8, 8).mirror).rules)).toEqual([]);
    // 300 pods in a row are 4 destination rules (their union): nothing to skip.
    expect(skipLines(plan(c, host(c, 1, 300, false).mirror).rules)).toEqual([]);
    expect(skipLines(plan(c, host(c, 20, 0).mirror).rules)).toEqual([
      // 198.18.0.1 .. .20 and 203.0.113.10: split where that leaves out the most, four at most.
      'from 198.18.0.0/28 goto 30000 pref 29998',
      'from 198.18.0.16/30 goto 30000 pref 29998',
      'from 198.18.0.20 goto 30000 pref 29998',
      'from 203.0.113.10 goto 30000 pref 29998',
      'from all goto 30001 pref 29999',
      'from all nop pref 30001',
    ]);
    // 300 pods every other address (198.19.0.0 .. 198.19.2.86: 300 rules) bring the destination
    // skip, which lands on the source covers.
    expect(skipLines(plan(c, host(c, 1, 300).mirror).rules)).toEqual([
      'from all to 198.19.0.0/23 goto 29997 pref 29995',
      'from all to 198.19.2.0/26 goto 29997 pref 29995',
      'from all to 198.19.2.64/28 goto 29997 pref 29995',
      'from all to 198.19.2.80/29 goto 29997 pref 29995',
      'from all goto 29998 pref 29996',
      'from 198.18.0.1 goto 30000 pref 29998',
      'from 203.0.113.10 goto 30000 pref 29998',
      'from all goto 30001 pref 29999',
      'from all nop pref 30001',
    ]);
  });

  it('send a catch-all after the covers and the rules it skips, and delete it before them', () => {
    const c = defaultConfig();
    const b = host(c, 20, 0);
    const rules = (phases: ReturnType<typeof computeChanges>) => phases.flat().flatMap((change) => (change.kind === 'rule' ? [change] : []));
    const adds = rules(computeChanges(plan(c, b.mirror), b.mirror, PROTO));
    const catchAll = adds.findIndex((change) => change.rule.action === FR_ACT_GOTO && change.rule.srcLength === 0);
    expect(catchAll).toBe(adds.length - 1); // one catch-all (IPv4), after every other rule
    for (const change of adds) b.rule(change.rule);
    // Down to one address: the skip goes, its catch-all first.
    for (let i = 1; i < 20; i++) b.delAddress({ ifindex: 2, cidr: `198.18.0.${i + 1}/24` });
    const deletes = rules(computeChanges(plan(c, b.mirror), b.mirror, PROTO)).filter((change) => change.op === 'delete' && change.rule.action !== FR_ACT_TO_TBL);
    expect(deletes.map((change) => describeRule(change.rule))[0]).toBe('from all goto 30001 pref 29999');
    expect(deletes.length).toBeGreaterThan(2);
  });

  it('leave every source and destination the same lookups, foreign rules included', () => {
    const probe = fc.oneof(
      fc.integer({ min: 0, max: 300 }).map((i) => `198.18.${i >> 6}.${i & 63}`),
      fc.integer({ min: 0, max: 300 }).map((i) => `198.19.${i >> 8}.${i & 255}`),
      fc.integer({ min: 0, max: 255 }).map((i) => `203.0.113.${i}`),
      fc.constantFrom('198.51.100.7', '192.0.2.1', '10.1.2.3'),
    );
    const foreign = fc.record({
      priority: fc.constantFrom(100, 29990, 30005, 31000, 32000),
      from: fc.option(probe, { nil: undefined }),
      to: fc.option(fc.constantFrom('198.19.0.0/16', '198.18.0.0/24', '0.0.0.0/1'), { nil: undefined }),
      table: fc.constantFrom(500, 501),
    });
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 200 }),
        fc.integer({ min: 0, max: 300 }),
        fc.boolean(),
        fc.constantFrom<'address' | 'prefix'>('address', 'prefix'),
        fc.array(foreign, { maxLength: 4 }),
        fc.array(fc.tuple(probe, probe), { minLength: 20, maxLength: 20 }),
        (addresses, pods, apart, match, others, probes) => {
          const c = defaultConfig();
          c.rule.match = match;
          const own = plan(c, host(c, addresses, pods, apart).mirror).rules;
          const foreignRules = others.map((o) => {
            const [dst, dstLength] = o.to?.split('/') ?? [];
            return rule({ ...(o.from ? { from: o.from } : { family: 4 }), priority: o.priority, table: o.table, protocol: PROTO_STATIC, ...(dst ? { dst, dstLength: Number(dstLength) } : {}) });
          });
          const withSkips = [...foreignRules, ...own];
          // Before: the `from` rules, and one `to <pod> lookup main` per pod, unmerged (with any `from` rule).
          const fromRules = own.filter((r) => r.action === FR_ACT_TO_TBL && r.srcLength > 0);
          const podRules = fromRules.some((r) => r.family === 4)
            ? Array.from({ length: pods }, (_, i) => rule({ family: 4, priority: 29999, table: 254, dst: podAddress(i, apart), dstLength: 32 }))
            : [];
          const without = [...foreignRules, ...podRules, ...fromRules];
          for (const [src, dst] of probes) expect(lookups(withSkips, src, dst), `${src} → ${dst}`).toEqual(lookups(without, src, dst));
        },
      ),
      { numRuns: 60 },
    );
  });
});
