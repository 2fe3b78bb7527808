// A binary trie of prefixes, keyed by the address's bits, holding owners at the node where
// each prefix ends. "Which prefixes are equal to, around or inside this one" walks the
// prefix's own bits (the ones around it end on that path) and then the subtree below it (the
// ones inside): time in proportion to the prefix length plus what is found, never to how
// many prefixes are held. One trie per address family.

interface TrieNode<T> {
  zero?: TrieNode<T>;
  one?: TrieNode<T>;
  /** Owners of the prefix that ends here. */
  owners?: Set<T>;
}

const bitOf = (bytes: Uint8Array, bit: number): number => (bytes[bit >> 3]! >> (7 - (bit & 7))) & 1;

export class PrefixTrie<T> {
  private readonly root: TrieNode<T> = {};

  /** `network` as bytes (4 or 16), `length` its prefix length. */
  add(network: Uint8Array, length: number, owner: T): void {
    let node = this.root;
    for (let bit = 0; bit < length; bit++) {
      node = bitOf(network, bit) ? (node.one ??= {}) : (node.zero ??= {});
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
    if (end.owners?.size === 0) delete end.owners;
    // Prune the branch that now leads nowhere, bottom up.
    for (let bit = length - 1; bit >= 0; bit--) {
      const node = path[bit + 1]!;
      if (node.owners || node.zero || node.one) break;
      if (bitOf(network, bit)) delete path[bit]!.one;
      else delete path[bit]!.zero;
    }
  }

  /** Owners of every prefix equal to, around (shorter, containing) or inside (longer) this one. */
  overlapping(network: Uint8Array, length: number): Set<T> {
    const found = new Set<T>();
    let node: TrieNode<T> | undefined = this.root;
    for (let bit = 0; node && bit < length; bit++) {
      for (const owner of node.owners ?? []) found.add(owner);
      node = bitOf(network, bit) ? node.one : node.zero;
    }
    const below: TrieNode<T>[] = node ? [node] : [];
    for (let next = below.pop(); next; next = below.pop()) {
      for (const owner of next.owners ?? []) found.add(owner);
      if (next.zero) below.push(next.zero);
      if (next.one) below.push(next.one);
    }
    return found;
  }
}
