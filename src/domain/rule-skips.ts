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
// From TREE_MIN `from` rules of a family on, a packet from a managed source would still walk
// the `from` rules in front of its own one by one, so they become a decision tree instead.
// The sources' binary trie is cut into leaves of at most LEAF_MAX sources (a subtree whose
// parent holds more; never below a prefix that ends in it, so a prefix and those inside it
// stay together); each leaf's rules sit at a slot of their own, a priority that depends only
// on the leaf (a hash of where it starts, the next free slot on a clash, in a canonical
// order), so a source coming or going moves the rules of the leaf it splits or merges (the
// half that starts where the leaf did stays) and of a leaf whose slot that takes, never the
// others'. The leaves are cut the same way into branches of at most BRANCH_MAX leaves (over
// the leaves' covers), each at a slot of its own among BRANCH_SLOTS:
//
//   P-2       from <branch cover> goto P+2+2b   one per branch, to its slot b (to the slot s
//                                               of its leaf, for a branch of one leaf)
//   P-1       goto E                            every other source skips the tree
//   P+2+2b    from <leaf cover> goto P+34+2s    the leaves of the branch at slot b, to their slot s
//   P+3+2b    goto E                            a source in the branch but in no leaf
//   P+34+2s   from <address> lookup <table>     the `from` rules of the leaf at slot s
//   P+35+2s   goto E                            its lookup failed: past the others' slots
//   E         nop                               E = P+34+2·SLOTS = P+162: where the tree lands
//
// A skip passes over only rules that could not have matched (the sources of `from` rules are
// disjoint, each `from` rule's prefix lies in exactly one leaf, and that leaf's cover in
// exactly one branch), so the kernel decides exactly as without it; everything of others'
// before P-5 and after the landing is reached as before. A block gets its skip from SKIPPED_MIN rules on
// (below that, the skip costs about what it saves); the destination skip lands on the source
// covers, so it brings the source skip with it. Covers and the catch-alls sit at different
// priorities because the kernel keeps one priority's rules in the order they were added. The
// kernel resolves a goto only to an existing priority, and an unresolved goto is no rule at
// all: with its landing missing (deleted by hand), the walk is longer, never wrong. Pure: no I/O.
import type { Config } from '../config/config.js';
import { addressToBytes, bitOf, bytesToAddress, withBitSet, type Family } from '../net/ip.js';
import type { Rule } from './model.js';
import { ruleKey, type RuleKey } from './keys.js';
import { FR_ACT_GOTO, FR_ACT_NOP } from './constants.js';

/** A block of at least this many rules gets a skip. */
export const SKIPPED_MIN = 16;
/** Covers per block and family at most: the skip itself costs one evaluation per cover. */
export const COVERS_MAX = 4;
/**
 * From this many `from` rules of a family on, they are laid out as a tree: where it starts to
 * pay (the longest walk of 40 sources is 33 evaluations in the tree against 43 flat, of 48
 * 33 against 49; at 32 both are 34).
 */
export const TREE_MIN = 48;
/**
 * Sources per leaf of the tree at most (more only under a prefix that holds others). Not a
 * power of two: addresses come in aligned blocks, and a full /27 of 32 sources then sits in a
 * leaf with room for 16 more, so the next address does not split it (moving its rules).
 */
export const LEAF_MAX = 48;
/** Leaves per branch of the tree at most. */
export const BRANCH_MAX = 16;
/** Branch slots of the tree; branches beyond them share one (still exact, a longer walk). */
export const BRANCH_SLOTS = 16;
/** Leaf slots of the tree; leaves beyond them share one (still exact, a longer walk). */
export const SLOTS = 64;

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
    /** The tree (from TREE_MIN `from` rules on): branch slot b's leaf covers, and its exit after them. */
    branch: (b: number) => priority + 2 + 2 * b,
    /** Slot s's `from` rules, and its exit after them. */
    slot: (s: number) => priority + 2 + 2 * BRANCH_SLOTS + 2 * s,
    treeLanding: priority + 2 + 2 * BRANCH_SLOTS + 2 * SLOTS,
  } as const;
}

/** The lowest and highest priority symroute's rules use, for rule.priority P. */
export const priorityRange = (priority: number): { readonly first: number; readonly last: number } => ({
  first: rulePriorities(priority).destinationCovers,
  last: rulePriorities(priority).treeLanding,
});

/**
 * A goto without selectors: it sends every packet past a block, so it is added only after
 * the covers that let the block's packets in, and deleted before them (diff.ts).
 */
export const skipsEverything = (rule: Rule): boolean => rule.action === FR_ACT_GOTO && rule.srcLength === 0 && rule.dstLength === 0;

/**
 * A rule as the kernel tells rules apart when one is added with NLM_F_EXCL: by everything but
 * a goto's target, so `from <cover> goto A pref X` is refused (EEXIST) while `from <cover>
 * goto B pref X` is there. A layout that sends a cover elsewhere must delete the old rule
 * before it adds the new one (diff.ts).
 */
export const kernelIdentity = (rule: Rule): RuleKey => {
  const { goto: _target, ...rest } = rule;
  return ruleKey(rest);
};

// A class with every field set from the start, and fields cleared rather than deleted: V8
// turns an object whose property is deleted into a slow dictionary (prefix-trie.ts).
class CoverNode<T = unknown> {
  zero: CoverNode<T> | undefined = undefined;
  one: CoverNode<T> | undefined = undefined;
  /** Prefixes ending here. */
  ends = 0;
  /** Prefixes ending here or below. */
  count = 0;
  /** What was added with the prefixes ending here. */
  items: T[] | undefined = undefined;
}

export interface Cover {
  readonly network: Uint8Array;
  readonly length: number;
}


/**
 * Prefixes (with repeats) in a binary trie, to cover them with a few prefixes: the cover of
 * a subtree is the longest prefix its members share. Starting from the cover of all of
 * them, the cover whose two branches' covers leave out the most addresses is split into
 * those, until there are `limit` of them or no split leaves anything out, so the covers
 * hold few addresses that are not the prefixes' (greedily: not always the fewest).
 * Adding, deleting and covering cost the prefix length (times the limit), not the number held.
 */
export class CoverTrie<T = never> {
  private readonly root = new CoverNode<T>();

  constructor(private readonly bytes: 4 | 16) {}

  get size(): number {
    return this.root.count;
  }

  /** Adds one copy of the prefix, with `item` if given (leaves() hands it back). */
  add(network: Uint8Array, length: number, item?: T): void {
    let node = this.root;
    node.count++;
    for (let bit = 0; bit < length; bit++) {
      node = bitOf(network, bit) ? (node.one ??= new CoverNode()) : (node.zero ??= new CoverNode());
      node.count++;
    }
    node.ends++;
    if (item !== undefined) (node.items ??= []).push(item);
  }

  /** Removes one copy of the prefix (the one added with `item`, if given); false if it was not held. */
  delete(network: Uint8Array, length: number, item?: T): boolean {
    const path: CoverNode<T>[] = [this.root];
    for (let bit = 0; bit < length; bit++) {
      const next = bitOf(network, bit) ? path[bit]!.one : path[bit]!.zero;
      if (!next) return false;
      path.push(next);
    }
    const end = path[length]!;
    if (end.ends === 0) return false;
    if (item !== undefined) {
      const at = end.items?.indexOf(item) ?? -1;
      if (at < 0) return false;
      end.items!.splice(at, 1);
    }
    end.ends--;
    for (const node of path) node.count--;
    for (let bit = length - 1; bit >= 0; bit--) {
      if (path[bit + 1]!.count > 0) break;
      if (bitOf(network, bit)) path[bit]!.one = undefined;
      else path[bit]!.zero = undefined;
    }
    return true;
  }

  /**
   * The fewest prefixes that hold exactly the addresses of the prefixes held, in address
   * order: a subtree is one prefix where a prefix ends at its root, or both its halves are
   * whole. 198.19.1.0 .. 198.19.1.199 as /32s are 198.19.1.0/25, .128/26 and .192/29.
   */
  union(): Cover[] {
    const whole = new Map<CoverNode<T>, boolean>();
    const isWhole = (node: CoverNode<T> | undefined): boolean => {
      if (!node) return false;
      let known = whole.get(node);
      if (known === undefined) whole.set(node, (known = node.ends > 0 || (isWhole(node.zero) && isWhole(node.one))));
      return known;
    };
    const found: Cover[] = [];
    this.cut(isWhole, (_node, network, length) => found.push({ network, length }));
    return found;
  }

  /**
   * The leaves of a tree over the prefixes held: the subtrees holding at most `max` of them
   * whose parent holds more, or where a prefix ends (a prefix and those inside it stay in
   * one leaf), in address order, each with its prefix (where it starts), its cover (the
   * longest prefix its members share) and its items. Costs the nodes above the leaves.
   */
  leaves(max: number): Leaf<T>[] {
    const found: Leaf<T>[] = [];
    this.cut(
      (node) => node.count <= max || node.ends > 0,
      (node, network, length) => {
        const cover = narrowest(node, network, length);
        found.push({ network, length, cover: { network: cover.network, length: cover.length }, items: () => itemsUnder(node) });
      },
    );
    return found;
  }

  /**
   * Walks down from the root in address order and hands each node where `stop` holds to
   * `take`, with the prefix it is at, instead of going below it.
   */
  private cut(stop: (node: CoverNode<T>) => boolean, take: (node: CoverNode<T>, network: Uint8Array, length: number) => void): void {
    const walk = (node: CoverNode<T> | undefined, network: Uint8Array, length: number) => {
      if (!node) return;
      if (stop(node)) return take(node, network, length);
      walk(node.zero, network, length + 1);
      walk(node.one, withBitSet(network, length), length + 1);
    };
    if (this.root.count > 0) walk(this.root, new Uint8Array(this.bytes), 0);
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
        const halves: [Covered, Covered] = [
          narrowest(cover.node.zero!, cover.network, cover.length + 1),
          narrowest(cover.node.one!, withBitSet(cover.network, cover.length), cover.length + 1),
        ];
        const gain = size(cover.length) - size(halves[0].length) - size(halves[1].length);
        if (gain > 0 && (!best || gain > best.gain)) best = { at, gain, halves };
      });
      if (!best) break;
      frontier.splice(best.at, 1, ...best.halves);
    }
    return frontier.map(({ network, length }) => ({ network, length }));
  }
}

export interface Leaf<T> {
  /** Where the leaf starts: its identity. */
  readonly network: Uint8Array;
  readonly length: number;
  readonly cover: Cover;
  readonly items: () => T[];
}

function itemsUnder<T>(node: CoverNode<T>): T[] {
  const items: T[] = [];
  const walk = (at: CoverNode<T> | undefined) => {
    if (!at) return;
    if (at.items) items.push(...at.items);
    walk(at.zero);
    walk(at.one);
  };
  walk(node);
  return items;
}

interface Covered {
  readonly node: CoverNode<unknown>;
  readonly network: Uint8Array;
  readonly length: number;
}

/**
 * The cover of the subtree at `node` (reached by `length` bits of `network`): down while
 * no prefix ends and only one branch holds any.
 */
function narrowest(node: CoverNode<unknown>, network: Uint8Array, length: number): Covered {
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

/** The `from` rules that moved in a layout, and the skip rules wanted now. */
export interface Layout {
  /** Placed `from` rules no longer wanted where they were; deleted before `added` are wanted. */
  readonly removed: readonly Rule[];
  readonly added: readonly Rule[];
  readonly skips: readonly Rule[];
}

/** One family's `from` rules (as elected) and where each is laid out. */
interface Sources {
  readonly trie: CoverTrie<Rule>;
  /** Each elected rule, as laid out: itself (at P), or moved to its leaf's slot. */
  readonly placed: Map<Rule, Rule>;
  /** Elected since the last layout, not laid out yet. */
  readonly pending: Set<Rule>;
  /** Placed rules of sources gone since the last layout. */
  removed: Rule[];
  /** The tree's leaves at the last layout, by leafKey, with their slot and length; none: the flat layout. */
  slots: Map<string, string> | undefined;
  /**
   * The family's skip rules at the last layout, kept while neither its sources nor its
   * destination covers change (undefined: to be made again): an event touches one family,
   * and the other's rules, the same objects, keep their keys.
   */
  skips: Rule[] | undefined;
  /** The skip rules of the last layout by what sets them apart: made again, they are reused. */
  made: Map<string, Rule>;
}

/**
 * The skip rules of the desired state, and where the `from` rules sit, kept current as
 * `from` rules are elected and the destination rules change: the covers of each block, per
 * family, the tree of the `from` rules where they are many, and the rules they make.
 */
export class RuleSkips {
  private readonly sources: Record<Family, Sources> = { 4: emptySources(4), 6: emptySources(16) };
  /** Per family, the covers of the destination rules when there are enough of them to skip. */
  private destinationCovers: Record<Family, readonly Cover[]> = { 4: [], 6: [] };

  constructor(private readonly config: Pick<Config, 'rule' | 'protocol'>) {}

  /** A `from` rule elected. */
  addSource(rule: Rule): void {
    const sources = this.sources[rule.family];
    sources.trie.add(addressToBytes(rule.src!), rule.srcLength, rule);
    sources.pending.add(rule);
    sources.skips = undefined;
  }

  /** A `from` rule no longer elected. */
  deleteSource(rule: Rule): void {
    const sources = this.sources[rule.family];
    sources.trie.delete(addressToBytes(rule.src!), rule.srcLength, rule);
    sources.skips = undefined;
    if (sources.pending.delete(rule)) return;
    const placed = sources.placed.get(rule);
    if (placed) sources.removed.push(placed);
    sources.placed.delete(rule);
  }

  /** An elected `from` rule as laid out (by the last layout()): at P, or at its leaf's slot. */
  placed(rule: Rule): Rule {
    return this.sources[rule.family].placed.get(rule) ?? rule;
  }

  /** The destination rules, all of them. */
  setDestinations(rules: readonly Rule[]): void {
    const tries = { 4: new CoverTrie(4), 6: new CoverTrie(16) };
    for (const rule of rules) tries[rule.family].add(addressToBytes(rule.dst!), rule.dstLength);
    for (const family of [4, 6] as const) {
      const covers = tries[family].size >= SKIPPED_MIN ? tries[family].covers(COVERS_MAX) : [];
      if (!sameCovers(covers, this.destinationCovers[family])) this.sources[family].skips = undefined;
      this.destinationCovers[family] = covers;
    }
  }

  /**
   * Lays the `from` rules elected so far out, both families: those that moved since the
   * last layout (each source's rule depends only on the sources there are now), and the
   * skip rules wanted now.
   */
  layout(): Layout {
    const removed: Rule[] = [];
    const added: Rule[] = [];
    const skips: Rule[] = [];
    for (const family of [4, 6] as const) {
      const sources = this.sources[family];
      if (sources.skips) {
        skips.push(...sources.skips);
        continue;
      }
      removed.push(...sources.removed);
      sources.removed = [];
      const move = (rule: Rule, priority: number) => {
        const before = sources.placed.get(rule);
        if (before?.priority === priority) return;
        if (before) removed.push(before);
        const after = priority === rule.priority ? rule : { ...rule, priority };
        sources.placed.set(rule, after);
        added.push(after);
      };
      const tree = sources.trie.size >= TREE_MIN ? this.tree(family) : undefined;
      if (!tree) {
        if (sources.slots) for (const rule of sources.placed.keys()) move(rule, rule.priority);
        for (const rule of sources.pending) move(rule, rule.priority);
        sources.slots = undefined;
      } else {
        const at = rulePriorities(this.config.rule.priority);
        const before = sources.slots;
        // Leaves at the slot and length they had: their rules stay where they are.
        const unmoved: number[] = [];
        tree.leaves.forEach((leaf, i) => {
          const slot = tree.slots[i]!;
          if (before?.get(leafKey(leaf)) === `${slot}/${leaf.length}`) unmoved.push(i);
          else for (const rule of leaf.items()) move(rule, at.slot(slot));
        });
        // A source elected into a leaf that stayed where it was.
        for (const rule of sources.pending) {
          if (sources.placed.has(rule)) continue;
          const i = unmoved.find((j) => holds(tree.leaves[j]!, rule))!;
          move(rule, at.slot(tree.slots[i]!));
        }
        sources.slots = new Map(tree.leaves.map((leaf, i) => [leafKey(leaf), `${tree.slots[i]!}/${leaf.length}`]));
      }
      sources.pending.clear();
      sources.skips = reuseSkips(sources, this.familySkips(family, tree));
      skips.push(...sources.skips);
    }
    return { removed, added, skips };
  }

  /** The tree of a family's `from` rules: its leaves in address order and the slot of each. */
  private tree(family: Family): { leaves: Leaf<Rule>[]; slots: number[] } {
    const leaves = this.sources[family].trie.leaves(LEAF_MAX);
    return { leaves, slots: slotsOf(leaves, SLOTS) };
  }

  private familySkips(family: Family, tree: { leaves: Leaf<Rule>[]; slots: number[] } | undefined): Rule[] {
    const at = rulePriorities(this.config.rule.priority);
    const sources = this.sources[family].trie;
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
    const from = (cover: Cover, priority: number, goto: number) =>
      rule(priority, FR_ACT_GOTO, { src: bytesToAddress(cover.network), srcLength: cover.length, goto });
    const rules: Rule[] = [];
    if (skipDestinations) {
      for (const cover of destinations) {
        rules.push(rule(at.destinationCovers, FR_ACT_GOTO, { dst: bytesToAddress(cover.network), dstLength: cover.length, goto: at.destinations }));
      }
      rules.push(rule(at.destinationSkip, FR_ACT_GOTO, { goto: at.sourceCovers }));
    }
    if (!tree) {
      for (const cover of sources.covers(COVERS_MAX)) rules.push(from(cover, at.sourceCovers, at.sources));
      rules.push(rule(at.sourceSkip, FR_ACT_GOTO, { goto: at.landing }), rule(at.landing, FR_ACT_NOP));
      return rules;
    }
    // The branches: the leaves' covers cut like the sources, each branch at a slot of its own.
    const leafCovers = new CoverTrie<number>(family === 4 ? 4 : 16);
    tree.leaves.forEach((leaf, i) => leafCovers.add(leaf.cover.network, leaf.cover.length, i));
    const branches = leafCovers.leaves(BRANCH_MAX);
    const branchSlots = slotsOf(branches, BRANCH_SLOTS);
    const exit = (priority: number) => rule(priority + 1, FR_ACT_GOTO, { goto: at.treeLanding });
    // A branch of one leaf (a source in a subnet of its own, say) is no branch: its cover goes
    // straight to the leaf's slot, so such a source costs its rule, its leaf's exit and a cover.
    const used = new Set<number>();
    branches.forEach((branch, b) => {
      const leaves = branch.items();
      if (leaves.length === 1) return void rules.push(from(branch.cover, at.sourceCovers, at.slot(tree.slots[leaves[0]!]!)));
      rules.push(from(branch.cover, at.sourceCovers, at.branch(branchSlots[b]!)));
      for (const i of leaves) rules.push(from(tree.leaves[i]!.cover, at.branch(branchSlots[b]!), at.slot(tree.slots[i]!)));
      used.add(branchSlots[b]!);
    });
    rules.push(rule(at.sourceSkip, FR_ACT_GOTO, { goto: at.treeLanding }));
    for (const slot of [...used].sort((a, b) => a - b)) rules.push(exit(at.branch(slot)));
    for (const slot of [...new Set(tree.slots)].sort((a, b) => a - b)) rules.push(exit(at.slot(slot)));
    rules.push(rule(at.treeLanding, FR_ACT_NOP));
    return rules;
  }
}

const emptySources = (bytes: 4 | 16): Sources => ({ trie: new CoverTrie<Rule>(bytes), placed: new Map(), pending: new Set(), removed: [], slots: undefined, skips: undefined, made: new Map() });

/**
 * The skip rules of a layout, each one the previous layout had too replaced by that object:
 * a leaf's cover and exit mostly stay when another leaf changes, and the same object keeps its
 * key (keys.ts) instead of having it made again. Not planner.ts's keepEqual: that makes the
 * old objects' keys again on every call, and a ruleKey per fresh rule would enter each into
 * keys.ts's WeakMap only for most to be dropped (together ~0.1 ms an event at 1000 NICs).
 */
function reuseSkips(sources: Sources, rules: readonly Rule[]): Rule[] {
  const made = new Map<string, Rule>();
  const reused = rules.map((rule) => {
    const apart = `${rule.priority}|${rule.action}|${rule.goto ?? ''}|${rule.src ?? ''}/${rule.srcLength}|${rule.dst ?? ''}/${rule.dstLength}`;
    const kept = sources.made.get(apart) ?? rule;
    made.set(apart, kept);
    return kept;
  });
  sources.made = made;
  return reused;
}

const sameCovers = (a: readonly Cover[], b: readonly Cover[]): boolean =>
  a.length === b.length && a.every((cover, i) => cover.length === b[i]!.length && cover.network.every((byte, at) => byte === b[i]!.network[at]));

/**
 * A leaf by where it starts, not its length: when a leaf splits, the half that starts where
 * it did keeps its key, and so its slot and rules; only the other half's rules move.
 */
const leafKey = (leaf: Leaf<unknown>): string => bytesToAddress(leaf.network);

/** Whether `prefix` lies inside `cover`. */
function inside(prefix: Cover, cover: Cover): boolean {
  if (prefix.length < cover.length) return false;
  for (let bit = 0; bit < cover.length; bit++) if (bitOf(prefix.network, bit) !== bitOf(cover.network, bit)) return false;
  return true;
}

const holds = (leaf: Leaf<unknown>, rule: Rule): boolean => inside({ network: addressToBytes(rule.src!), length: rule.srcLength }, leaf);

/**
 * Each leaf's (or branch's) slot among `count`, a pure function of the leaves there are: its home (a hash of where it
 * starts), or the next free slot after it, leaves taking theirs in the order of their homes
 * (then of their addresses). A leaf coming or going moves only leaves that ran into it.
 * With more leaves than slots, the rest share their home slot.
 */
function slotsOf(leaves: readonly Leaf<unknown>[], count: number): number[] {
  const homes = leaves.map((leaf) => hashOf(leaf) % count);
  const order = homes.map((_, i) => i).sort((a, b) => homes[a]! - homes[b]! || a - b);
  const taken = new Array<boolean>(count).fill(false);
  const slots = new Array<number>(leaves.length);
  let free = count;
  for (const i of order) {
    let slot = homes[i]!;
    if (free > 0) {
      while (taken[slot]) slot = (slot + 1) % count;
      taken[slot] = true;
      free--;
    }
    slots[i] = slot;
  }
  return slots;
}

/**
 * FNV-1a over where a leaf starts (not its length: leafKey), then murmur3's finaliser: FNV alone leaves the low bits of
 * neighbouring /26s equal, so the leaves of one /24 would all have one home.
 */
function hashOf(leaf: Leaf<unknown>): number {
  let hash = 0x811c9dc5;
  for (const byte of leaf.network) hash = Math.imul(hash ^ byte, 0x01000193);
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return hash >>> 0;
}
