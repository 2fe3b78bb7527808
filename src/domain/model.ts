// The kernel objects symroute reasons about, in a form independent of the wire format, and
// their ip(8)-style descriptions (their keys: keys.ts). Shared by the watcher, planner and reconciler.
import type { Family } from '../net/ip.js';
import { FR_ACT_GOTO, FR_ACT_NOP } from './constants.js';

export interface Link {
  readonly index: number;
  readonly name: string;
  readonly up: boolean; // IFF_UP: administratively up
  readonly loopback: boolean;
}

export interface Address {
  readonly family: Family;
  readonly ifindex: number;
  readonly address: string; // the local address (IFA_LOCAL, else IFA_ADDRESS)
  readonly prefixLength: number;
  readonly peer?: string; // point-to-point: the remote end, whose prefix is the connected one
  readonly scope: number;
  readonly flags: number; // IFA_F_*, full 32 bits
}

export interface Nexthop {
  readonly ifindex: number;
  readonly gateway?: string;
}

export interface Route {
  readonly family: Family;
  readonly table: number;
  readonly dst: string; // network address; 0.0.0.0 / :: for default
  readonly dstLength: number;
  /** Source-specific routes (IPv6 `from`): symroute never makes them, but must not mistake them. */
  readonly src?: string;
  readonly srcLength?: number;
  readonly metric: number;
  readonly protocol: number;
  readonly scope: number;
  readonly type: number;
  readonly oif?: number;
  readonly gateway?: string;
  /** `onlink`: the gateway is reachable on the device although no prefix covers it. */
  readonly onlink?: true;
  readonly prefsrc?: string;
  readonly nexthops?: readonly Nexthop[];
}

export interface Rule {
  readonly family: Family;
  readonly priority: number;
  readonly table: number;
  readonly action: number;
  /** FR_ACT_GOTO's target: the kernel jumps to the first rule of this priority. */
  readonly goto?: number;
  readonly protocol: number;
  readonly src?: string;
  readonly srcLength: number;
  readonly dst?: string;
  readonly dstLength: number;
  // Selectors symroute never sets; carried so a foreign look-alike never matches ours.
  readonly iifname?: string;
  readonly oifname?: string;
  readonly fwmark?: number;
  readonly tos: number;
}

const prefixText = (address: string | undefined, length: number, family: Family): string => {
  if (length === 0) return 'default';
  const full = family === 4 ? 32 : 128;
  return length === full ? address! : `${address}/${length}`;
};

/** `default via 198.18.3.1 dev s3 table 1004` — names come from `linkName`. */
export function describeRoute(route: Route, linkName: (ifindex: number) => string): string {
  const parts = [prefixText(route.dst, route.dstLength, route.family)];
  if (route.gateway) parts.push(`via ${route.gateway}`);
  if (route.oif !== undefined) parts.push(`dev ${linkName(route.oif)}`);
  if (route.onlink) parts.push('onlink');
  for (const nexthop of route.nexthops ?? []) {
    parts.push(`nexthop${nexthop.gateway ? ` via ${nexthop.gateway}` : ''} dev ${linkName(nexthop.ifindex)}`);
  }
  parts.push(`table ${route.table}`);
  if (route.family === 4 && route.scope === 253) parts.push('scope link');
  if (route.prefsrc) parts.push(`src ${route.prefsrc}`);
  if (route.metric) parts.push(`metric ${route.metric}`);
  return parts.join(' ');
}

// The kernel's own tables, named as ip(8) names them.
const TABLE_NAMES = new Map([
  [253, 'default'],
  [254, 'main'],
  [255, 'local'],
]);

/** `from 198.18.193.10 lookup 1002 pref 30000` */
export function describeRule(rule: Rule): string {
  const parts = [`from ${rule.srcLength ? prefixText(rule.src, rule.srcLength, rule.family) : 'all'}`];
  if (rule.dstLength) parts.push(`to ${prefixText(rule.dst, rule.dstLength, rule.family)}`);
  if (rule.iifname) parts.push(`iif ${rule.iifname}`);
  if (rule.oifname) parts.push(`oif ${rule.oifname}`);
  if (rule.fwmark !== undefined) parts.push(`fwmark ${rule.fwmark}`);
  if (rule.action === FR_ACT_GOTO) parts.push(`goto ${rule.goto}`);
  else if (rule.action === FR_ACT_NOP) parts.push('nop');
  else parts.push(`lookup ${TABLE_NAMES.get(rule.table) ?? rule.table}`);
  parts.push(`pref ${rule.priority}`);
  return parts.join(' ');
}
