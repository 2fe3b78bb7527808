// A binary trie of prefixes, keyed by the address's bits, holding owners at the node where
// each prefix ends. "Which prefixes are equal to, around or inside this one" walks the
// prefix's own bits (the ones around it end on that path) and then the subtree below it (the
// ones inside): time in proportion to the prefix length plus what is found, never to how
// many prefixes are held. One trie per address family.
import { bitOf } from '../net/ip.js';

// A class with every field set from the start, and fields cleared rather than deleted: V8
// turns an object whose property is deleted into a slow dictionary, and every later walk
// through that node with it.
class TrieNode<T> {
  zero: TrieNode<T> | undefined = undefined;
  one: TrieNode<T> | undefined = undefined;
  /** Owners of the prefix that ends here. */
  owners: Set<T> | undefined = undefined;
}


export class PrefixTrie<T> {
  private readonly root = new TrieNode<T>();

  /** `network` as bytes (4 or 16), `length` its prefix length. */
  add(network: Uint8Array, length: number, owner: T): void {
    let node = this.root;
    for (let bit = 0; bit < length; bit++) {
      node = bitOf(network, bit) ? (node.one ??= new TrieNode()) : (node.zero ??= new TrieNode());
    }
    (node.owners ??= new Set()).add(owner);
  }

  delete(network: Uint8Array, length: number, owner: T): void {
    const path: TrieNode<T>[] = [this.root];
    for (let bit = 0; bit < length; bit++) {
      const next = bitOf(network, bit) ? path.at(-1)!.one : path.at(-1)!.zero;
      if (!next) return;
      path.push(next);
    }
    const end = path.at(-1)!;
    end.owners?.delete(owner);
    if (end.owners?.size === 0) end.owners = undefined;
    // Prune the branch that now leads nowhere, bottom up.
    for (let bit = length - 1; bit >= 0; bit--) {
      const node = path[bit + 1]!;
      if (node.owners || node.zero || node.one) break;
      if (bitOf(network, bit)) path[bit]!.one = undefined;
      else path[bit]!.zero = undefined;
    }
  }

  /** Owners of every prefix equal to, around (shorter, containing) or inside (longer) this one. */
  overlapping(network: Uint8Array, length: number): Set<T> {
    const found = new Set<T>();
    let node: TrieNode<T> | undefined = this.root;
    // Owners only where a prefix ends: an IPv6 /64 is 64 nodes, nearly all without.
    for (let bit = 0; node && bit < length; bit++) {
      if (node.owners) for (const owner of node.owners) found.add(owner);
      node = bitOf(network, bit) ? node.one : node.zero;
    }
    const below: TrieNode<T>[] = node ? [node] : [];
    for (let next = below.pop(); next; next = below.pop()) {
      if (next.owners) for (const owner of next.owners) found.add(owner);
      if (next.zero) below.push(next.zero);
      if (next.one) below.push(next.one);
    }
    return found;
  }
}
