// Destinations that stay on the main table whatever the source address: the config's
// `exceptions`, and every prefix main routes through excluded plumbing (container bridges,
// pod veths, VM taps, overlay and VPN tunnels). Without them a reply from a NIC's address to
// a container follows the NIC's `from` rule out to its gateway instead of into the bridge.
//
// One `to <prefix> lookup main` rule per prefix, one priority above symroute's `from` rules.
// Not `lookup main suppress_prefixlength 0`: that would hand every reply to any more
// specific route in main (a static route via NIC 1 would steal NIC 2's replies), and NICs
// sharing a subnet would all answer through the first of them. Pure: no I/O.
import { isPlumbingName, type Config } from '../config/config.js';
import { addressToBytes, networkOf, type Family } from './ip.js';
import type { MirrorView } from './mirror.js';
import type { Route, Rule } from './model.js';
import { FR_ACT_TO_TBL, RT_TABLE_MAIN, RTN_UNICAST } from './constants.js';

/** Priority of the destination rules: just above (before) symroute's `from` rules. */
export const destinationPriority = (config: Config): number => config.rule.priority - 1;

/**
 * Whether the mirror must keep this main-table route: its device is plumbing whose prefixes
 * get a rule. (Other main routes, but the defaults gateways are learned from, are not kept.)
 */
export function isPlumbingRoute(config: Config, route: Route, linkName: string | undefined): boolean {
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

/** Equal, inside or around. */
const overlaps = (a: Prefix, b: Prefix): boolean => {
  const common = Math.min(a.length, b.length);
  return a.family === b.family && networkOf(a.network, common) === networkOf(b.network, common);
};

const isLinkLocalPrefix = (dst: string): boolean => {
  const bytes = addressToBytes(dst);
  return bytes[0] === 0xfe && (bytes[1]! & 0xc0) === 0x80;
};

/**
 * The rules, sorted and without duplicates, for the families that have `from` rules (with
 * none there is nothing to rank above, so nothing is installed).
 */
export function destinationRules(
  config: Config,
  mirror: MirrorView,
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
  for (const route of mirror.routes.values()) {
    if (route.oif === undefined || !isPlumbingRoute(config, route, mirror.links.get(route.oif)?.name)) continue;
    const prefix = { family: route.family, network: route.dst, length: route.dstLength };
    // An excluded NIC in a managed NIC's subnet (Case 2 with one NIC left out) must not take
    // that subnet's replies away from the managed NICs.
    if (!managedPrefixes.some((managed) => overlaps(managed, prefix))) add(prefix);
  }
  return [...prefixes.keys()].sort().map((key) => {
    const { family, network: dst, length: dstLength } = prefixes.get(key)!;
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
