// The benchmark's hosts: a namespace with N NICs, each with an IPv4 and an IPv6 address and a
// learned default route per family in the main table (as DHCP and router advertisements
// leave them), built in one `ip -batch`. NICs are ifb devices: real netdevs that need no
// peer, come up with carrier and skip IPv6 DAD (IFF_NOARP), so 1000 of them take a second.
// Also: the `ip -batch` reference, generated from what symroute itself installed so both
// sides write exactly the same objects.
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { NetnsLab } from '../../src/lab/netns.js';

const run = promisify(execFile);
const PROTOCOL = '83';

const ipv4 = (n: number): string => [24, 16, 8, 0].map((shift) => (n >>> shift) & 255).join('.');
const BASE_198_18 = (198 << 24) + (18 << 16); // 198.18.0.0/15, the benchmark range

/** NIC k's own /28 in 198.18.0.0/18: gateway .1, address .2. */
export const nicIPv4 = (k: number) => ({ gateway: ipv4(BASE_198_18 + 16 * k + 1), address: ipv4(BASE_198_18 + 16 * k + 2) });
export const nicIPv6 = (k: number) => ({ gateway: `2001:db8:${k.toString(16)}::1`, address: `2001:db8:${k.toString(16)}::2` });

/**
 * A second address for NIC k in a subnet of its own (so symroute adds a rule AND a route):
 * the k-th /28 of 198.19.0.0/16 (up to 4096 NICs), or of 198.18.63.0/24 for hosts whose
 * 198.18.64.0+ is taken by bulk routes (up to 16 NICs).
 */
export function eventAddress(k: number, space: 'wide' | 'narrow' = 'wide'): { cidr: string; address: string; subnet: string } {
  const base = space === 'wide' ? (198 << 24) + (19 << 16) : BASE_198_18 + (63 << 8);
  if (space === 'narrow' && k >= 16) throw new Error('the narrow event space has 16 subnets');
  const network = base + 16 * k;
  return { cidr: `${ipv4(network + 2)}/28`, address: ipv4(network + 2), subnet: `${ipv4(network)}/28` };
}

export interface World {
  readonly ns: string;
  readonly nics: number;
  /** ifindex of NIC k (`n<k>`). */
  readonly ifindex: readonly number[];
}

export async function ip(ns: string, ...args: string[]): Promise<string> {
  const { stdout } = await run('ip', ['-n', ns, ...args], { maxBuffer: 1 << 30 });
  return stdout;
}

/** Runs `ip -n ns [options] -batch` on `lines`; returns its wall time in ms (process start to exit). */
export async function ipBatch(ns: string, lines: readonly string[], dir: string, name: string, options: string[] = []): Promise<number> {
  if (lines.length === 0) return 0;
  const file = join(dir, `${ns}-${name}.batch`);
  writeFileSync(file, `${lines.join('\n')}\n`);
  const started = performance.now();
  await run('ip', ['-n', ns, ...options, '-batch', file], { maxBuffer: 1 << 30 });
  return performance.now() - started;
}

/**
 * Family-tagged `ip` lines (`-4 rule add …`) as the fewest `ip -batch` runs: batch lines take
 * no options, and `ip rule` does not infer IPv6 from the address, so one run per family.
 * Returns the summed wall time in ms.
 */
export async function ipBatchByFamily(ns: string, lines: readonly string[], dir: string, name: string, options: string[] = []): Promise<number> {
  let ms = 0;
  for (const family of ['-4', '-6']) {
    const ofFamily = lines.filter((line) => line.startsWith(`${family} `)).map((line) => line.slice(3));
    ms += await ipBatch(ns, ofFamily, dir, `${name}${family}`, [family, ...options]);
  }
  return ms;
}

/** What a host's NICs hold: both families (or IPv4 only), with a learned default route per family (or none). */
export interface WorldShape {
  readonly ipv6: boolean;
  readonly gateways: boolean;
}

export const FULL: WorldShape = { ipv6: true, gateways: true };

/** A namespace with `nics` NICs n0..n{nics-1}, dual stack and gateways learned in main unless `shape` says otherwise. */
export async function buildWorld(lab: NetnsLab, name: string, nics: number, dir: string, shape: WorldShape = FULL): Promise<World> {
  const ns = await lab.namespace(name);
  const lines: string[] = [];
  for (let k = 0; k < nics; k++) {
    const v4 = nicIPv4(k);
    const v6 = nicIPv6(k);
    lines.push(`link add n${k} type ifb`, `link set n${k} up`, `addr add ${v4.address}/28 dev n${k}`);
    if (shape.ipv6) lines.push(`addr add ${v6.address}/64 dev n${k} nodad`);
    if (shape.gateways) lines.push(`route add default via ${v4.gateway} dev n${k} metric ${100 + k}`);
    if (shape.gateways && shape.ipv6) lines.push(`route add default via ${v6.gateway} dev n${k} metric ${100 + k}`);
  }
  await ipBatch(ns, lines, dir, 'world');
  const links = JSON.parse(await ip(ns, '-json', 'link', 'show')) as Array<{ ifname: string; ifindex: number }>;
  const byName = new Map(links.map((l) => [l.ifname, l.ifindex]));
  return { ns, nics, ifindex: Array.from({ length: nics }, (_, k) => byName.get(`n${k}`)!) };
}

/** 100k-style bulk: `count` /32 routes from 198.18.64.0 up, in `table`, via n<nic>. */
export async function addBulkRoutes(world: World, table: string, nic: number, count: number, dir: string): Promise<void> {
  if (count > 114_688) throw new Error('198.18.64.0 .. 198.19.255.255 holds 114688 host routes');
  const lines: string[] = [];
  for (let i = 0; i < count; i++) lines.push(`route add ${ipv4(BASE_198_18 + (64 << 8) + i)}/32 dev n${nic} table ${table}`);
  await ipBatch(world.ns, lines, dir, `bulk-${table}`);
}

/** A rule as `ip -json rule show` prints it. */
export interface JsonRule {
  priority: number;
  src?: string;
  srclen?: number;
  dst?: string;
  dstlen?: number;
  table?: string;
  goto?: number;
  /** Present (null) on `not` rules and `nop` rules. */
  not?: null;
  nop?: null;
  protocol?: string;
}
interface JsonRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
  scope?: string;
  prefsrc?: string;
  metric?: number;
  flags?: string[];
}

/** What symroute owns in `ns`, as `ip` command lines that add it (sorted, family-tagged). */
export async function ownedObjects(ns: string): Promise<{ rules: string[]; routes: string[] }> {
  const rules: string[] = [];
  const routes: string[] = [];
  for (const family of ['-4', '-6']) {
    for (const r of JSON.parse(await ip(ns, '-json', family, 'rule', 'show')) as JsonRule[]) {
      if (r.protocol !== PROTOCOL) continue;
      // The `from` rules, `to … lookup main`, and the skip rules (goto, nop) of many-rule hosts.
      const words = [`${family} rule add`, ...('not' in r ? ['not'] : [])];
      words.push(`from ${r.srclen === undefined ? r.src : `${r.src}/${r.srclen}`}`);
      if (r.dst !== undefined) words.push(`to ${r.dstlen === undefined ? r.dst : `${r.dst}/${r.dstlen}`}`);
      words.push(r.goto !== undefined ? `goto ${r.goto}` : 'nop' in r ? 'nop' : `lookup ${r.table}`);
      rules.push(`${words.join(' ')} pref ${r.priority} proto ${PROTOCOL}`);
    }
    const tables = JSON.parse(await ip(ns, '-json', family, 'route', 'show', 'table', 'all', 'proto', PROTOCOL)) as Array<
      JsonRoute & { table?: string }
    >;
    for (const r of tables) {
      const words = [`${family} route add ${r.dst}`];
      if (r.gateway) words.push(`via ${r.gateway}`);
      if (r.dev) words.push(`dev ${r.dev}`);
      words.push(`table ${r.table ?? 'main'}`, `proto ${PROTOCOL}`);
      if (r.scope && r.scope !== 'global') words.push(`scope ${r.scope}`);
      if (r.prefsrc) words.push(`src ${r.prefsrc}`);
      if (r.metric !== undefined) words.push(`metric ${r.metric}`);
      if (r.flags?.includes('onlink')) words.push('onlink');
      routes.push(words.join(' '));
    }
  }
  return { rules: rules.sort(), routes: routes.sort() };
}

/** The same family-tagged lines with `add` turned into `del`. */
export const deleting = (lines: readonly string[]): string[] => lines.map((line) => line.replace(/^(-[46] (?:rule|route)) add /, '$1 del '));
