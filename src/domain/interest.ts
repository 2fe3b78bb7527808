// Which routes symroute needs to know about, decided from a route's table and protocol
// alone: the two numbers the kernel adapter can read from a raw message without decoding
// the rest, so that a full routing table in some other table costs almost nothing.
//
// A route matters when it is symroute's own (any table: it may have to be removed), when it
// is in main (gateways and reachability are learned there), or when it is in a table
// symroute uses or could use: a pinned table, or base + ifindex of any link the kernel has
// (a link's table must be free of foreign routes before symroute writes into it, whether or
// not the link is managed yet). Of the local table (the kernel's own) only the IPv6 routes
// of type local matter: they say which addresses the kernel delivers (Mirror.delivers).
// Pure: no I/O.
import type { Config } from '../config/config.js';
import { RT_TABLE_LOCAL, RT_TABLE_MAIN, RTN_LOCAL } from './constants.js';
import type { PlumbingScope } from './destinations.js';
import type { Family } from '../net/ip.js';

/** What of a route decides whether it matters: the kernel adapter reads it undecoded. */
export interface RouteTag {
  readonly family: Family;
  readonly table: number;
  readonly protocol: number;
  readonly type: number;
}

/** The part of the config that decides which tables matter. */
export type TableScope = Pick<Config, 'protocol' | 'table'>;

/** Everything the config decides about what is mirrored: the tables, and which main routes. */
export interface MirrorScope {
  readonly tables: TableScope;
  readonly plumbing: PlumbingScope;
}

/** What of `config` the mirror depends on: the watcher reads nothing else of it. */
export function mirrorScope(config: Config): MirrorScope {
  return {
    tables: { protocol: config.protocol, table: config.table },
    plumbing: { containerRoutes: config.containerRoutes, interfaces: { exclude: config.interfaces.exclude } },
  };
}

/** Whether the mirror must be dumped again for `next`: it would hold other routes. */
export const mirrorsDiffer = (a: MirrorScope, b: MirrorScope): boolean => JSON.stringify(a) !== JSON.stringify(b);

export class RouteInterest {
  private readonly wanted: Set<number>;

  /** `ifindexes`: the links known so far; more are added with cover(). */
  constructor(
    private readonly scope: TableScope,
    ifindexes: Iterable<number> = [],
  ) {
    this.wanted = new Set(Object.values(scope.table.pinned));
    for (const ifindex of ifindexes) this.wanted.add(this.tableOf(ifindex));
  }

  /** The tables besides main whose routes matter, whoever's they are. */
  get tables(): ReadonlySet<number> {
    return this.wanted;
  }

  /** symroute's own protocol: its routes matter in every table. */
  get protocol(): number {
    return this.scope.protocol;
  }

  /** Whether a route with this tag (its table a u32) can matter to symroute. */
  matters({ family, table, protocol, type }: RouteTag): boolean {
    if (table === RT_TABLE_LOCAL) return family === 6 && type === RTN_LOCAL;
    return protocol === this.scope.protocol || table === RT_TABLE_MAIN || this.wanted.has(table);
  }

  /**
   * A link with this index is known: its table matters from now on. Returns that table if
   * it did not matter before (its routes were passed over until now and must be fetched),
   * else undefined. Tables are never given up: a link's table may hold foreign routes long
   * after the link is gone, and a table that stops mattering would go stale in the mirror.
   */
  cover(ifindex: number): number | undefined {
    const table = this.tableOf(ifindex);
    if (this.wanted.has(table)) return undefined;
    this.wanted.add(table);
    return table;
  }

  private tableOf(ifindex: number): number {
    return this.scope.table.base + ifindex;
  }
}
