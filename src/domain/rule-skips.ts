// What every packet pays for symroute's rules. The kernel walks policy rules one by one, for
// every locally sent and every forwarded packet, so 1000 `from` rules and 200 pods' `to`
// rules would cost each packet 1200 rule evaluations. Rules that cannot match are skipped
// instead: a `goto` jumps to the first rule of a later priority. Per family, around
// rule.priority P:
//
//   P-5  to <destination cover> goto P-3   one per cover of the destination rules' prefixes
//   P-4  goto P-2                          every other destination skips them
//   P-3  to <prefix> lookup main           the destination rules (destinations.ts)
//   P-2  from <source cover> goto P        one per cover of the `from` rules' sources
//   P-1  goto P+1                          every other source skips them
//   P    from <address> lookup <table>     the `from` rules (interface-plan.ts)
//   P+1  nop                               where the skip lands; what follows is walked as before
//
// A skip passes over only rules that could not have matched, so the kernel decides exactly
// as without it; everything of others' before P-5 and after P+1 is reached as before. A
// block gets its skip from SKIPPED_MIN rules on (below that, the skip costs about what it
// saves); the destination skip lands on the source covers, so it brings the source skip
// with it. Covers and the catch-all sit at different priorities because the kernel keeps
// one priority's rules in the order they were added. The kernel resolves a goto only to an
// existing priority, and an unresolved goto is no rule at all: with its landing missing
// (deleted by hand), the walk is linear again, never wrong. Pure: no I/O.
import type { Config } from '../config/config.js';
import { addressToBytes, bytesToAddress, type Family } from '../net/ip.js';
import type { Rule } from './model.js';
import { FR_ACT_GOTO, FR_ACT_NOP } from './constants.js';

/** A block of at least this many rules gets a skip. */
export const SKIPPED_MIN = 16;
/** Covers per block and family at most: the skip itself costs one evaluation per cover. */
export const COVERS_MAX = 4;

/** Every priority symroute's rules use, for rule.priority P. */
export function rulePriorities(priority: number) {
  return {
    destinationCovers: priority - 5,
    destinationSkip: priority - 4,
    destinations: priority - 3,
    sourceCovers: priority - 2,
    sourceSkip: priority - 1,
    sources: priority,
    landing: priority + 1,
  } as const;
}

/** The lowest and highest priority symroute's rules use, for rule.priority P. */
export const priorityRange = (priority: number): { readonly first: number; readonly last: number } => ({
  first: rulePriorities(priority).destinationCovers,
  last: rulePriorities(priority).landing,
});

/**
 * A goto without selectors: it sends every packet past a block, so it is added only after
 * the covers that let the block's packets in, and deleted before them (diff.ts).
 */
export const skipsEverything = (rule: Rule): boolean => rule.action === FR_ACT_GOTO && rule.srcLength === 0 && rule.dstLength === 0;

interface CoverNode {
  zero?: CoverNode;
  one?: CoverNode;
  /** Prefixes ending here. */
  ends: number;
  /** Prefixes ending here or below. */
  count: number;
}

export interface Cover {
  readonly network: Uint8Array;
  readonly length: number;
}

const bitOf = (bytes: Uint8Array, bit: number): number => (bytes[bit >> 3]! >> (7 - (bit & 7))) & 1;

/**
 * Prefixes (with repeats) in a binary trie, to cover them with a few prefixes: the cover of
 * a subtree is the longest prefix its members share. Starting from the cover of all of
 * them, the cover whose two branches' covers leave out the most addresses is split into
 * those, until there are `limit` of them or no split leaves anything out, so the covers
 * hold few addresses that are not the prefixes' (greedily: not always the fewest).
 * Adding, deleting and covering cost the prefix length (times the limit), not the number held.
 */
export class CoverTrie {
  private readonly root: CoverNode = { ends: 0, count: 0 };

  constructor(private readonly bytes: 4 | 16) {}

  get size(): number {
    return this.root.count;
  }

  add(network: Uint8Array, length: number): void {
    let node = this.root;
    node.count++;
    for (let bit = 0; bit < length; bit++) {
      node = bitOf(network, bit) ? (node.one ??= { ends: 0, count: 0 }) : (node.zero ??= { ends: 0, count: 0 });
      node.count++;
    }
    node.ends++;
  }

  /** Removes one copy of the prefix; false if it was not held. */
  delete(network: Uint8Array, length: number): boolean {
    const path = [this.root];
    for (let bit = 0; bit < length; bit++) {
      const next = bitOf(network, bit) ? path[bit]!.one : path[bit]!.zero;
      if (!next) return false;
      path.push(next);
    }
    if (path[length]!.ends === 0) return false;
    path[length]!.ends--;
    for (const node of path) node.count--;
    for (let bit = length - 1; bit >= 0; bit--) {
      if (path[bit + 1]!.count > 0) break;
      if (bitOf(network, bit)) delete path[bit]!.one;
      else delete path[bit]!.zero;
    }
    return true;
  }

  /**
   * The fewest prefixes that hold exactly the addresses of the prefixes held, in address
   * order: a subtree is one prefix where a prefix ends at its root, or both its halves are
   * whole. 198.19.1.0 .. 198.19.1.199 as /32s are 198.19.1.0/25, .128/26 and .192/29.
   */
  union(): Cover[] {
    const whole = new Map<CoverNode, boolean>();
    const isWhole = (node: CoverNode | undefined): boolean => {
      if (!node) return false;
      let known = whole.get(node);
      if (known === undefined) whole.set(node, (known = node.ends > 0 || (isWhole(node.zero) && isWhole(node.one))));
      return known;
    };
    const found: Cover[] = [];
    const walk = (node: CoverNode | undefined, network: Uint8Array, length: number) => {
      if (!node) return;
      if (isWhole(node)) return void found.push({ network, length });
      const one = Uint8Array.from(network);
      one[length >> 3]! |= 0x80 >> (length & 7);
      walk(node.zero, network, length + 1);
      walk(node.one, one, length + 1);
    };
    if (this.root.count > 0) walk(this.root, new Uint8Array(this.bytes), 0);
    return found;
  }

  /** At most `limit` prefixes that together hold every prefix held, in address order. */
  covers(limit: number): Cover[] {
    if (this.root.count === 0) return [];
    const bits = this.bytes * 8;
    const size = (length: number) => 2 ** (bits - length);
    const frontier = [narrowest(this.root, new Uint8Array(this.bytes), 0)];
    while (frontier.length < limit) {
      // Split the cover whose branches' covers leave out the most addresses (first on ties).
      let best: { at: number; gain: number; halves: [Covered, Covered] } | undefined;
      frontier.forEach((cover, at) => {
        if (cover.node.ends > 0) return; // a prefix ends here: it is its own cover
        const one = Uint8Array.from(cover.network);
        one[cover.length >> 3]! |= 0x80 >> (cover.length & 7);
        const halves: [Covered, Covered] = [narrowest(cover.node.zero!, cover.network, cover.length + 1), narrowest(cover.node.one!, one, cover.length + 1)];
        const gain = size(cover.length) - size(halves[0].length) - size(halves[1].length);
        if (gain > 0 && (!best || gain > best.gain)) best = { at, gain, halves };
      });
      if (!best) break;
      frontier.splice(best.at, 1, ...best.halves);
    }
    return frontier.map(({ network, length }) => ({ network, length }));
  }
}

interface Covered {
  readonly node: CoverNode;
  readonly network: Uint8Array;
  readonly length: number;
}

/**
 * The cover of the subtree at `node` (reached by `length` bits of `network`): down while
 * no prefix ends and only one branch holds any.
 */
function narrowest(node: CoverNode, network: Uint8Array, length: number): Covered {
  const bits = Uint8Array.from(network);
  let at = node;
  let depth = length;
  while (at.ends === 0 && !(at.zero && at.one)) {
    const next = at.zero ?? at.one!;
    if (next === at.one) bits[depth >> 3]! |= 0x80 >> (depth & 7);
    at = next;
    depth++;
  }
  return { node: at, network: bits, length: depth };
}

/**
 * The skip rules of the desired state, kept current as `from` rules are elected and the
 * destination rules change: the covers of each block, per family, and the rules they make.
 */
export class RuleSkips {
  private readonly sources: Record<Family, CoverTrie> = { 4: new CoverTrie(4), 6: new CoverTrie(16) };
  /** Per family, the covers of the destination rules when there are enough of them to skip. */
  private destinationCovers: Record<Family, readonly Cover[]> = { 4: [], 6: [] };

  constructor(private readonly config: Pick<Config, 'rule' | 'protocol'>) {}

  /** A `from` rule elected. */
  addSource(rule: Rule): void {
    this.sources[rule.family].add(addressToBytes(rule.src!), rule.srcLength);
  }

  /** A `from` rule no longer elected. */
  deleteSource(rule: Rule): void {
    this.sources[rule.family].delete(addressToBytes(rule.src!), rule.srcLength);
  }

  /** The destination rules, all of them. */
  setDestinations(rules: readonly Rule[]): void {
    const tries = { 4: new CoverTrie(4), 6: new CoverTrie(16) };
    for (const rule of rules) tries[rule.family].add(addressToBytes(rule.dst!), rule.dstLength);
    for (const family of [4, 6] as const) {
      this.destinationCovers[family] = tries[family].size >= SKIPPED_MIN ? tries[family].covers(COVERS_MAX) : [];
    }
  }

  /** The skip rules wanted now, both families. */
  rules(): Rule[] {
    return [4, 6].flatMap((family) => this.familyRules(family as Family));
  }

  private familyRules(family: Family): Rule[] {
    const at = rulePriorities(this.config.rule.priority);
    const sources = this.sources[family];
    const destinations = this.destinationCovers[family];
    const skipDestinations = destinations.length > 0 && sources.size > 0;
    if (!skipDestinations && sources.size < SKIPPED_MIN) return [];
    const rule = (priority: number, action: number, fields: Partial<Rule> = {}): Rule => ({
      family,
      priority,
      table: 0,
      action,
      protocol: this.config.protocol,
      srcLength: 0,
      dstLength: 0,
      tos: 0,
      ...fields,
    });
    const rules: Rule[] = [];
    if (skipDestinations) {
      for (const cover of destinations) {
        rules.push(rule(at.destinationCovers, FR_ACT_GOTO, { dst: bytesToAddress(cover.network), dstLength: cover.length, goto: at.destinations }));
      }
      rules.push(rule(at.destinationSkip, FR_ACT_GOTO, { goto: at.sourceCovers }));
    }
    for (const cover of sources.covers(COVERS_MAX)) {
      rules.push(rule(at.sourceCovers, FR_ACT_GOTO, { src: bytesToAddress(cover.network), srcLength: cover.length, goto: at.sources }));
    }
    rules.push(rule(at.sourceSkip, FR_ACT_GOTO, { goto: at.landing }), rule(at.landing, FR_ACT_NOP));
    return rules;
  }
}
