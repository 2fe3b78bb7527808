// Destinations that stay on the main table whatever the source address: the config's
// `exceptions`, and every prefix main routes through excluded plumbing (container bridges,
// pod veths, VM taps, overlay and VPN tunnels). Without them a reply from a NIC's address to
// a container follows the NIC's `from` rule out to its gateway instead of into the bridge.
//
// `to <prefix> lookup main` rules, ahead of symroute's `from` rules (rule-skips.ts has the
// whole layout): one per prefix of the union of those prefixes, so pods numbered in a row
// are one rule per block, not one per /32.
// Not `lookup main suppress_prefixlength 0`: that would hand every reply to any more
// specific route in main (a static route via NIC 1 would steal NIC 2's replies), and NICs
// sharing a subnet would all answer through the first of them. Pure: no I/O.
import type { Config } from '../config/config.js';
import { isPlumbingName } from './interface-names.js';
import { addressToBytes, bytesToAddress, type Family } from '../net/ip.js';
import type { Route, Rule } from './model.js';
import { FR_ACT_TO_TBL, RT_TABLE_MAIN, RTN_UNICAST } from './constants.js';
import { CoverTrie, rulePriorities } from './rule-skips.js';

/** Priority of the destination rules: ahead of symroute's `from` rules and their skip. */
export const destinationPriority = (config: Pick<Config, 'rule'>): number => rulePriorities(config.rule.priority).destinations;

/**
 * Whether the mirror must keep this main-table route: its device is plumbing whose prefixes
 * get a rule. (Other main routes, but the defaults gateways are learned from, are not kept.)
 */
/** The part of the config that decides which main routes are plumbing's. */
export interface PlumbingScope {
  readonly containerRoutes: boolean;
  readonly interfaces: Pick<Config['interfaces'], 'exclude'>;
}

export function isPlumbingRoute(config: PlumbingScope, route: Route, linkName: string | undefined): boolean {
  return (
    config.containerRoutes &&
    route.table === RT_TABLE_MAIN &&
    route.dstLength > 0 &&
    route.type === RTN_UNICAST &&
    !route.srcLength &&
    linkName !== undefined &&
    isPlumbingName(config, linkName) &&
    // Every IPv6 device has fe80::/64 in main; link-local traffic is scoped by its device anyway.
    !(route.family === 6 && isLinkLocalPrefix(route.dst))
  );
}

export interface Prefix {
  readonly family: Family;
  readonly network: string;
  readonly length: number;
}

/** A prefix as the range of addresses it holds. */
function range(prefix: Prefix): { start: bigint; end: bigint } {
  const bits = prefix.family === 4 ? 32 : 128;
  const start = addressToBytes(prefix.network).reduce((n, byte) => (n << 8n) | BigInt(byte), 0n);
  return { start, end: start + (1n << BigInt(bits - prefix.length)) - 1n };
}

/** Prefixes to test others against (equal, inside or around), by binary search: pods can be many. */
class PrefixSet {
  private readonly byFamily = new Map<Family, { starts: bigint[]; maxEnds: bigint[] }>();

  constructor(prefixes: readonly Prefix[]) {
    for (const family of [4, 6] as const) {
      const ranges = prefixes.filter((p) => p.family === family).map(range).sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
      const maxEnds: bigint[] = [];
      for (const r of ranges) maxEnds.push(maxEnds.length > 0 && maxEnds.at(-1)! > r.end ? maxEnds.at(-1)! : r.end);
      this.byFamily.set(family, { starts: ranges.map((r) => r.start), maxEnds });
    }
  }

  overlaps(prefix: Prefix): boolean {
    const { starts, maxEnds } = this.byFamily.get(prefix.family)!;
    const { start, end } = range(prefix);
    // The last range starting at or before this one's end; some range up to it reaching this one's start overlaps.
    let low = 0;
    let high = starts.length - 1;
    let last = -1;
    while (low <= high) {
      const middle = (low + high) >> 1;
      if (starts[middle]! <= end) {
        last = middle;
        low = middle + 1;
      } else high = middle - 1;
    }
    return last >= 0 && maxEnds[last]! >= start;
  }
}

const isLinkLocalPrefix = (dst: string): boolean => {
  const bytes = addressToBytes(dst);
  return bytes[0] === 0xfe && (bytes[1]! & 0xc0) === 0x80;
};

/**
 * The rules for the config's exceptions and these routes (each one isPlumbingRoute), their
 * prefixes merged into the fewest that hold the same addresses, sorted, for the families that
 * have `from` rules (with none there is nothing to rank above, so nothing is installed).
 */
export function destinationRules(
  config: Config,
  plumbingRoutes: Iterable<Route>,
  sourceRuleFamilies: ReadonlySet<Family>,
  managedPrefixes: readonly Prefix[],
): Rule[] {
  const prefixes = new Map<string, Prefix>();
  const add = (prefix: Prefix) => {
    if (sourceRuleFamilies.has(prefix.family)) prefixes.set(`${prefix.network}/${prefix.length}`, prefix);
  };
  for (const exception of config.exceptions) {
    const [network = '', length] = exception.split('/');
    add({ family: network.includes(':') ? 6 : 4, network, length: Number(length) });
  }
  const managed = new PrefixSet(managedPrefixes);
  for (const route of plumbingRoutes) {
    const prefix = { family: route.family, network: route.dst, length: route.dstLength };
    // An excluded NIC in a managed NIC's subnet (Case 2 with one NIC left out) must not take
    // that subnet's replies away from the managed NICs.
    if (!managed.overlaps(prefix)) add(prefix);
  }
  // All of them lead to main: their union as the fewest prefixes matches exactly the same
  // destinations, in fewer rules for every packet to walk (pods numbered in a row: a block).
  const tries = { 4: new CoverTrie(4), 6: new CoverTrie(16) };
  for (const prefix of prefixes.values()) tries[prefix.family].add(addressToBytes(prefix.network), prefix.length);
  const merged = new Map<string, Prefix>();
  for (const family of [4, 6] as const) {
    for (const { network, length } of tries[family].union()) merged.set(`${bytesToAddress(network)}/${length}`, { family, network: bytesToAddress(network), length });
  }
  return [...merged.keys()].sort().map((key) => {
    const { family, network: dst, length: dstLength } = merged.get(key)!;
    return {
      family,
      priority: destinationPriority(config),
      table: RT_TABLE_MAIN,
      action: FR_ACT_TO_TBL,
      protocol: config.protocol,
      srcLength: 0,
      dst,
      dstLength,
      tos: 0,
    };
  });
}
