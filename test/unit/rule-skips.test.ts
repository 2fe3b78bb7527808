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
import { DesiredState, plan } from '../../src/domain/planner.js';
import { computeChanges } from '../../src/domain/diff.js';
import { ruleKey } from '../../src/domain/keys.js';
import { CoverTrie, COVERS_MAX, kernelIdentity, LEAF_MAX, priorityRange, RuleSkips, TREE_MIN } from '../../src/domain/rule-skips.js';
import { parseConfig } from '../../src/config/config.js';
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

/** How many rules the kernel evaluates for a packet from `src` up to its `from` rule (lookups succeed); none: Infinity. */
function evaluations(rules: readonly Rule[], src: string, dst: string): number {
  const family = src.includes(':') ? 6 : 4;
  const walk = rules.filter((r) => r.family === family).sort((a, b) => a.priority - b.priority);
  let count = 0;
  for (let i = 0; i < walk.length; i++) {
    const r = walk[i]!;
    count++;
    if (!contains(r.src, r.srcLength, src) || !contains(r.dst, r.dstLength, dst)) continue;
    if (r.action === FR_ACT_GOTO) {
      const target = walk.findIndex((other) => other.priority === r.goto);
      if (target > i) i = target - 1;
    } else if (r.action === FR_ACT_TO_TBL && r.srcLength > 0) return count;
  }
  return Infinity; // never reached a `from` rule
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
      // Before symroute's rules (29995 .. 30162) and after them.
      priority: fc.constantFrom(100, 29990, 30164, 31000, 32000),
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

describe('the tree of `from` rules', () => {
  const c = defaultConfig();
  /** eth2 with `count` host addresses in 198.18.0.0/16 (spread over /24s) and 2001:db8:1::/64. */
  const addresses = (count: number) => Array.from({ length: count }, (_, i) => `198.18.${Math.floor(i / 100)}.${(i % 100) + 1}`);
  function host(count: number): MirrorBuilder {
    const b = new MirrorBuilder((r, name) => isPlumbingRoute(c, r, name));
    b.nic(2, 'eth2', ...addresses(count).map((a) => `${a}/24`));
    b.nic(3, 'eth3', '203.0.113.10/24');
    return b;
  }
  const fromRules = (rules: readonly Rule[]) => rules.filter((r) => r.action === FR_ACT_TO_TBL && r.srcLength > 0);

  it(`comes from ${TREE_MIN} \`from\` rules of a family on, within symroute's priorities, off rule.priority`, () => {
    const below = plan(c, host(TREE_MIN - 2).mirror).rules; // and 203.0.113.10: one short
    expect(fromRules(below).every((r) => r.priority === 30000)).toBe(true);
    const tree = plan(c, host(TREE_MIN - 1).mirror).rules;
    const { first, last } = priorityRange(30000);
    expect([first, last]).toEqual([29995, 30162]);
    expect(fromRules(tree).every((r) => r.priority >= 30034 && r.priority < last && r.priority % 2 === 0)).toBe(true);
    expect(tree.filter((r) => r.action === FR_ACT_NOP).map(describeRule)).toEqual(['from all nop pref 30162']);
    expect(tree.filter((r) => r.priority === 29999).map(describeRule)).toEqual(['from all goto 30162 pref 29999']);
    // No slot holds more than a leaf (LEAF_MAX), and every goto goes forward, within the range.
    const perSlot = new Map<number, number>();
    for (const r of fromRules(tree)) perSlot.set(r.priority, (perSlot.get(r.priority) ?? 0) + 1);
    expect(Math.max(...perSlot.values())).toBeLessThanOrEqual(LEAF_MAX);
    for (const r of tree.filter((r) => r.action === FR_ACT_GOTO)) expect(r.goto! > r.priority && r.goto! <= last).toBe(true);
  });

  it('lets a packet from any of 1000 managed sources find its rule in a few dozen evaluations, not 1000', () => {
    const rules = plan(c, host(1000).mirror).rules;
    const counts = addresses(1000).map((a) => evaluations(rules, a, '192.0.2.1'));
    // Walk: the branch covers (31 leaves in 4 branches), the leaf covers of one branch (up to
    // 16), up to LEAF_MAX `from` rules: 51 at most here, 25 on average.
    expect(Math.max(...counts)).toBeLessThanOrEqual(52);
    // Unmanaged: the covers, the catch-all, the nop, and no `from` rule.
    expect(evaluations(rules, '192.0.2.7', '192.0.2.1')).toBe(Infinity);
    // eth3's address, far from the others, is a branch of one leaf: its cover at P-2 goes
    // straight to the leaf's slot, and it meets its own rule after the branch covers.
    expect(lookups(rules, '203.0.113.10', '192.0.2.1')[0]).toBe(1003);
    expect(evaluations(rules, '203.0.113.10', '192.0.2.1')).toBeLessThanOrEqual(COVERS_MAX + 2);
    const [lone, ...more] = rules.filter((r) => r.priority === 29998 && r.src === '203.0.113.10');
    expect(more).toEqual([]);
    expect(lone!.goto).toBeGreaterThanOrEqual(30034); // a leaf slot, not a branch slot
    expect(lone!.goto).toBeLessThan(30162);
    // (one branch cover per 16 leaves or fewer: 1000 sources are 31 leaves, 4 branches)
    expect(rules.filter((r) => r.family === 4 && r.priority === 29998).length).toBeLessThanOrEqual(COVERS_MAX);
  });

  it('keeps its layout a function of the sources: one coming or going moves only a few leaves\' rules', () => {
    fc.assert(
      fc.property(fc.integer({ min: 60, max: 400 }), fc.array(fc.integer({ min: 0, max: 499 }), { minLength: 1, maxLength: 25 }), (start, toggles) => {
        const b = host(0);
        const held = new Set<number>();
        const address = (i: number) => `198.18.${i >> 7}.${(i & 127) + 1}/24`;
        for (let i = 0; i < start; i++) (b.address({ ifindex: 2, cidr: address(i) }), held.add(i));
        const desired = new DesiredState(c);
        desired.rebuild(b.mirror);
        b.mirror.takeChanges();
        let before = new Set(fromRules(desired.toPlan().rules).map(ruleKey));
        let moved = 0;
        for (const i of toggles) {
          if (held.delete(i)) b.delAddress({ ifindex: 2, cidr: address(i) });
          else (b.address({ ifindex: 2, cidr: address(i) }), held.add(i));
          desired.update(b.mirror, b.mirror.takeChanges());
          const now = desired.toPlan();
          expect(now).toEqual(plan(c, b.mirror));
          const after = new Set(fromRules(now.rules).map(ruleKey));
          const changed = [...after].filter((k) => !before.has(k)).length;
          // Never all of them: a leaf split or merged, and the leaves its slot ran into.
          if (held.size > 2 * TREE_MIN) expect(changed).toBeLessThan(held.size / 2);
          moved += changed;
          before = after;
        }
        // On average about one leaf's worth per change.
        expect(moved / toggles.length).toBeLessThanOrEqual(2 * LEAF_MAX);
      }),
      { numRuns: 60 },
    );
  });

  it('moves exactly the rules whose place changed: what it reports, applied, is the layout from nothing', () => {
    // Sources from up to 3000 addresses in batches: leaves split and merge, run into each
    // other's slots and, beyond 64 leaves, share them. (Drawn from a seed: fast-check's own
    // integers lean towards small ones, whose toggles mostly undo each other.)
    const source = (i: number): Rule => ({ family: 4, priority: 30000, table: 1002, action: FR_ACT_TO_TBL, protocol: PROTO, src: `198.18.${i >> 8}.${i & 255}`, srcLength: 32, dstLength: 0, tos: 0 });
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 0x7fffffff }), fc.integer({ min: 100, max: 3000 }), fc.array(fc.integer({ min: 1, max: 400 }), { minLength: 1, maxLength: 12 }), (seed, pool, sizes) => {
        let state = seed;
        const draw = () => (state = (Math.imul(state, 1103515245) + 12345) & 0x7fffffff) % pool;
        const skips = new RuleSkips(c);
        const held = new Map<number, Rule>();
        const wanted = new Map<string, Rule>();
        for (const size of sizes) {
          for (let k = 0; k < size; k++) {
            const i = draw();
            const rule = held.get(i);
            if (rule) (skips.deleteSource(rule), held.delete(i));
            else held.set(i, source(i)), skips.addSource(held.get(i)!);
          }
          const layout = skips.layout();
          for (const rule of layout.removed) expect(wanted.delete(ruleKey(rule))).toBe(true);
          for (const rule of layout.added) wanted.set(ruleKey(rule), rule);
          const fresh = new RuleSkips(c);
          for (const rule of held.values()) fresh.addSource(rule);
          const scratch = fresh.layout();
          expect(layout.skips).toEqual(scratch.skips);
          expect([...wanted.keys()].sort()).toEqual(scratch.added.map(ruleKey).sort());
          for (const rule of held.values()) expect(skips.placed(rule)).toEqual(fresh.placed(rule));
        }
      }),
      { numRuns: 100 },
    );
  });

  it('never asks the kernel for a rule it already has but for the goto target: the old one goes first', () => {
    // The kernel's NLM_F_EXCL check, written from fib_rules.c's rule_exists (every selector,
    // action, table, priority and protocol; not the target), over the diff's phases in order:
    // hosts that grow into the tree and out of it, leaves splitting and changing slots.
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 0x7fffffff }), fc.array(fc.integer({ min: -300, max: 300 }), { minLength: 2, maxLength: 10 }), (seed, steps) => {
        let state = seed;
        const draw = () => (state = (Math.imul(state, 1103515245) + 12345) & 0x7fffffff) % 1500;
        const b = host(0);
        const held = new Set<number>();
        const cidr = (i: number) => `198.18.${i >> 8}.${i & 255}/24`;
        for (const step of steps) {
          for (let k = 0; k < Math.abs(step); k++) {
            const i = draw();
            if (step < 0 && held.delete(i)) b.delAddress({ ifindex: 2, cidr: cidr(i) });
            else if (step > 0 && !held.has(i)) (b.address({ ifindex: 2, cidr: cidr(i) }), held.add(i));
          }
          const kernel = new Map<string, number>();
          for (const { rule: r, count } of b.mirror.rules.values()) kernel.set(kernelIdentity(r), (kernel.get(kernelIdentity(r)) ?? 0) + count);
          for (const change of computeChanges(plan(c, b.mirror), b.mirror, PROTO).flat()) {
            if (change.kind !== 'rule') continue;
            const identity = kernelIdentity(change.rule);
            if (change.op === 'add') {
              expect(kernel.get(identity) ?? 0, `EEXIST: ${describeRule(change.rule)}`).toBe(0);
              kernel.set(identity, 1);
              b.rule(change.rule);
            } else {
              kernel.set(identity, kernel.get(identity)! - 1);
              b.delRule(change.rule);
            }
          }
          for (const change of computeChanges(plan(c, b.mirror), b.mirror, PROTO).flat()) {
            if (change.kind === 'route') void (change.op === 'delete' ? b.delRoute(change.route) : b.route(change.route));
          }
          expect(computeChanges(plan(c, b.mirror), b.mirror, PROTO).filter((phase) => phase.some((change) => change.kind === 'rule'))).toEqual([]);
        }
      }),
      { numRuns: 40 },
    );
  });

  it("fits rule.priority's range in the config: P-5 after the local table, the landing before main", () => {
    expect(priorityRange(6).first).toBe(1);
    expect(priorityRange(32603).last).toBe(32765);
    expect(parseConfig('rule: {priority: 32603}\n', 'c.yaml').rule.priority).toBe(32603);
    expect(() => parseConfig('rule: {priority: 32604}\n', 'c.yaml')).toThrow(/6\.\.32603/);
  });
});
