// The desired state's elections: which interface gets a table, which interface's rule stands
// for a source, and which interfaces' connected prefixes overlap. Each is kept current one
// interface at a time, and the lowest ifindex wins where several want the same thing.
import type { Family } from '../net/ip.js';
import { PrefixTrie } from './prefix-trie.js';
import { bump, mapDelete, mapSet, setAdd, setDelete } from './collections.js';
import type { OwnedPrefix } from './interface-plan.js';
import { ruleSource, type RuleSource } from './keys.js';
import type { Rule } from './model.js';

/** Per managed interface the table it wants; per table, who wants it. */
export class TableClaims {
  private readonly wanted = new Map<number, number>();
  private readonly claimants = new Map<number, Set<number>>();

  /**
   * `ifindex` now wants `table` (undefined: none). Returns the others that want the table it
   * left or the one it joins: who gets either may have changed.
   */
  claim(ifindex: number, table: number | undefined): number[] {
    const before = this.wanted.get(ifindex);
    if (before === table) return [];
    const affected = [before, table].flatMap((t) => (t === undefined ? [] : [...(this.claimants.get(t) ?? [])]));
    if (before !== undefined) setDelete(this.claimants, before, ifindex);
    if (table === undefined) this.wanted.delete(ifindex);
    else {
      setAdd(this.claimants, table, ifindex);
      this.wanted.set(ifindex, table);
    }
    return affected;
  }

  tableOf(ifindex: number): number | undefined {
    return this.wanted.get(ifindex);
  }

  /** Who gets a wanted table: the lowest ifindex that wants it. */
  owner(table: number): number {
    return Math.min(...this.claimants.get(table)!);
  }

  claimantsOf(table: number): Iterable<number> {
    return this.claimants.get(table) ?? [];
  }

  /** Every interface that wants a table. */
  interfaces(): IterableIterator<number> {
    return this.wanted.keys();
  }
}

/** A change of the rule elected for one source. */
export interface Election {
  readonly lost: Rule | undefined;
  readonly won: Rule | undefined;
}

/** Per rule source, the interfaces wanting a rule for it: the lowest ifindex's rule stands. */
export class RuleElection {
  private readonly claims = new Map<RuleSource, Map<number, Rule>>();
  private readonly winners = new Map<RuleSource, Rule>();
  /** Sources whose claims changed since the last election. */
  private readonly contested = new Set<RuleSource>();
  /** Winners per family. */
  private readonly families = new Map<Family, number>();

  claim(ifindex: number, rules: readonly Rule[]): void {
    for (const rule of rules) {
      this.contested.add(ruleSource(rule));
      mapSet(this.claims, ruleSource(rule), ifindex, rule);
    }
  }

  withdraw(ifindex: number, rules: readonly Rule[]): void {
    for (const rule of rules) {
      this.contested.add(ruleSource(rule));
      mapDelete(this.claims, ruleSource(rule), ifindex);
    }
  }

  /** Elects again where claims changed; returns the sources whose rule changed. */
  elect(): Election[] {
    const changes: Election[] = [];
    for (const source of this.contested) {
      const claims = this.claims.get(source);
      const won = claims && claims.size > 0 ? claims.get(Math.min(...claims.keys())) : undefined;
      const lost = this.winners.get(source);
      if (lost === won) continue;
      if (lost) bump(this.families, lost.family, -1);
      if (won) {
        this.winners.set(source, won);
        bump(this.families, won.family, 1);
      } else {
        this.winners.delete(source);
      }
      changes.push({ lost, won });
    }
    this.contested.clear();
    return changes;
  }

  /** Whether this rule is the one elected for its source. */
  won(rule: Rule): boolean {
    return this.winners.get(ruleSource(rule)) === rule;
  }

  /** The families some elected rule is of. */
  winningFamilies(): Set<Family> {
    return new Set(this.families.keys());
  }
}

/**
 * Connected prefixes and who holds them, to find those equal to, inside or around a prefix:
 * a trie per family (prefix-trie.ts), so the cost follows the prefix length and the matches,
 * not the number of prefixes held.
 */
export class PrefixOwners {
  private readonly byFamily: Record<Family, PrefixTrie<number>> = { 4: new PrefixTrie(), 6: new PrefixTrie() };

  add(prefix: OwnedPrefix, owner: number): void {
    this.byFamily[prefix.family].add(prefix.bits, prefix.length, owner);
  }

  delete(prefix: OwnedPrefix, owner: number): void {
    this.byFamily[prefix.family].delete(prefix.bits, prefix.length, owner);
  }

  overlapping(prefix: OwnedPrefix): Set<number> {
    return this.byFamily[prefix.family].overlapping(prefix.bits, prefix.length);
  }
}
