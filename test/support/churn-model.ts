// An independent model of what symroute must keep in the kernel, written from the README
// ("What it keeps", "Details that matter in production") and NOT from src/planner.ts: the
// churn and crash tests compare the kernel against it. Its input is the kernel's own
// interface state as `ip -json` reports it (links, addresses, default routes in main) plus
// the config; its output is every rule and route symroute must own, as normalised text.
// Reading the interfaces back from the kernel (rather than predicting them) lets the kernel's
// own side effects — secondaries deleted with their primary, IPv6 addresses gone on link
// down, routes flushed with an address — stay the kernel's business.
import { spawn } from 'node:child_process';

export const PROTO = 83;
const TABLE_BASE = 1000;
const MAIN = 254;
const LOCAL = 255;

// ---------------------------------------------------------------------------------------
// Addresses as numbers

export type Family = 4 | 6;
const bits = (family: Family): number => (family === 4 ? 32 : 128);

export function parseIp(text: string): { family: Family; value: bigint } {
  if (text.includes(':')) {
    const [head, tail] = text.split('::') as [string, string | undefined];
    const groups = (s: string | undefined) => (s ? s.split(':') : []);
    const left = groups(head);
    const right = groups(tail);
    const all = tail === undefined ? left : [...left, ...Array(8 - left.length - right.length).fill('0'), ...right];
    if (all.length !== 8) throw new Error(`not an IPv6 address: ${text}`);
    return { family: 6, value: all.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n) };
  }
  const parts = text.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !(p >= 0 && p <= 255))) throw new Error(`not an IPv4 address: ${text}`);
  return { family: 4, value: parts.reduce((acc, p) => (acc << 8n) | BigInt(p), 0n) };
}

/** The address as inet_ntop prints it (IPv6: longest run of two or more zero groups as ::). */
export function formatIp(family: Family, value: bigint): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => String((value >> s) & 255n)).join('.');
  const groups = Array.from({ length: 8 }, (_, i) => Number((value >> BigInt(112 - 16 * i)) & 0xffffn));
  let best = { start: -1, length: 0 };
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > best.length) best = { start: i, length: j - i };
    i = j;
  }
  const hex = (gs: number[]) => gs.map((g) => g.toString(16)).join(':');
  if (best.length < 2) return hex(groups);
  return `${hex(groups.slice(0, best.start))}::${hex(groups.slice(best.start + best.length))}`;
}

const mask = (family: Family, length: number): bigint =>
  ((1n << BigInt(length)) - 1n) << BigInt(bits(family) - length);

export function networkOf(address: string, length: number): string {
  const { family, value } = parseIp(address);
  return formatIp(family, value & mask(family, length));
}

export function prefixContains(network: string, length: number, address: string): boolean {
  const a = parseIp(address);
  const n = parseIp(network);
  return a.family === n.family && (a.value & mask(a.family, length)) === (n.value & mask(n.family, length));
}

const compareIp = (a: string, b: string): number => {
  const [x, y] = [parseIp(a).value, parseIp(b).value];
  return x < y ? -1 : x > y ? 1 : 0;
};

export const canonicalIp = (text: string): string => {
  const { family, value } = parseIp(text);
  return formatIp(family, value);
};

const isLinkLocal6 = (address: string): boolean => prefixContains('fe80::', 10, address);

// ---------------------------------------------------------------------------------------
// Config

export interface ChurnConfig {
  priority: number;
  match: 'address' | 'prefix';
  include: string[];
  exclude: string[];
  pinned: Record<string, number>;
  gateways: Record<string, { ipv4?: string; ipv6?: string }>;
}

/** Where each churn daemon serves metrics, in its own namespace. */
export const METRICS_PORT = 9477;

export function configYaml(config: ChurnConfig): string {
  const list = (items: string[]) => `[${items.map((i) => JSON.stringify(i)).join(', ')}]`;
  const lines = [
    'interfaces:',
    `  include: ${list(config.include)}`,
    `  exclude: ${list(config.exclude)}`,
    'table:',
    `  base: ${TABLE_BASE}`,
  ];
  const pinned = Object.entries(config.pinned);
  if (pinned.length) lines.push('  pinned:', ...pinned.map(([name, table]) => `    ${name}: ${table}`));
  lines.push('rule:', `  priority: ${config.priority}`, `  match: ${config.match}`);
  const gateways = Object.entries(config.gateways);
  if (gateways.length) {
    lines.push('gateways:');
    for (const [name, gw] of gateways) {
      lines.push(`  ${name}:`);
      if (gw.ipv4) lines.push(`    ipv4: ${gw.ipv4}`);
      if (gw.ipv6) lines.push(`    ipv6: "${gw.ipv6}"`);
    }
  }
  // The model covers the per-NIC tables and `from` rules; the `to <prefix> lookup main` rules
  // for container plumbing are judged with real traffic in containers.test.ts. Metrics on the
  // namespace's own loopback: the churn reads the daemon's reply-path verdicts there.
  lines.push(`protocol: ${PROTO}`, 'container_routes: false', 'metrics:', `  listen: 127.0.0.1:${METRICS_PORT}`, '');
  return lines.join('\n');
}

/** Shell-style whole-name glob: * ? [a-z] [!x]. */
export function globMatches(pattern: string, name: string): boolean {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 2);
      if (end < 0) return false;
      const body = pattern.slice(i + 1, end);
      re += body.startsWith('!') ? `[^${body.slice(1)}]` : `[${body}]`;
      i = end;
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`).test(name);
}

// ---------------------------------------------------------------------------------------
// The kernel's interface state, read with ip -json

export interface WorldLink {
  ifindex: number;
  name: string;
  up: boolean;
}
export interface WorldAddress {
  family: Family;
  ifindex: number;
  local: string;
  peer?: string;
  prefixlen: number;
  scope: string;
  secondary: boolean;
  tentative: boolean;
  dadfailed: boolean;
  deprecated: boolean;
}
export interface WorldDefault {
  family: Family;
  metric: number;
  protocol: string;
  /** One per path: a single-path route has one. */
  paths: Array<{ gateway?: string; ifindex?: number; onlink: boolean }>;
  multipath: boolean;
  typeUnicast: boolean;
  sourceSpecific: boolean;
}
/** A route in main through a device without a gateway (`ip route add 203.0.113.1 dev eth0`, a prefix route). */
export interface WorldDeviceRoute {
  family: Family;
  ifindex: number;
  network: string;
  length: number;
}
export interface World {
  links: WorldLink[];
  addresses: WorldAddress[];
  defaults: WorldDefault[];
  deviceRoutes: WorldDeviceRoute[];
}

interface JsonLink {
  ifindex: number;
  ifname: string;
  flags: string[];
  addr_info?: Array<Record<string, unknown>>;
}
type JsonRoute = Record<string, unknown> & {
  dst: string;
  dev?: string;
  gateway?: string;
  metric?: number;
  table?: string;
  protocol?: string;
  type?: string;
  flags?: string[];
  nexthops?: Array<{ gateway?: string; dev?: string; flags?: string[] }>;
};

/**
 * Runs `ip -N -json -<family> -batch` with `commands`, one spawn for all of them (on a loaded
 * machine each `ip` start costs tens of milliseconds), and returns each command's parsed JSON.
 */
export function ipJsonBatch(ns: string, family: Family, commands: string[]): Promise<unknown[][]> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['-n', ns, '-N', '-json', `-${family}`, '-batch', '-'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const lines = out.split('\n').filter((l) => l.trim());
      if (code !== 0 || lines.length !== commands.length) {
        reject(new Error(`ip -batch ${JSON.stringify(commands)} in ${ns}: exit ${code}, ${lines.length} outputs: ${err}`));
      } else resolve(lines.map((l) => JSON.parse(l) as unknown[]));
    });
    child.stdin.end(`${commands.join('\n')}\n`);
  });
}

export async function readWorld(ns: string): Promise<World> {
  const [[links4, a4, main4], [a6, main6]] = (await Promise.all([
    ipJsonBatch(ns, 4, ['link show', 'address show', 'route show table main']),
    ipJsonBatch(ns, 6, ['address show', 'route show table main']),
  ])) as [[JsonLink[], JsonLink[], JsonRoute[]], [JsonLink[], JsonRoute[]]];
  const v4 = main4.filter((r) => r.dst === 'default');
  const v6 = main6.filter((r) => r.dst === 'default');
  // `-4 address show` lists only links that have an IPv4 address: links come from `link show`.
  const addressesOf = (list: JsonLink[], ifindex: number) => list.find((x) => x.ifindex === ifindex)?.addr_info ?? [];
  const linkJson = links4.map((l) => ({ ...l, addr_info: [...addressesOf(a4, l.ifindex), ...addressesOf(a6, l.ifindex)] }));
  const links = linkJson.map((l) => ({ ifindex: l.ifindex, name: l.ifname, up: l.flags.includes('UP') }));
  const byName = new Map(links.map((l) => [l.name, l.ifindex]));
  const addresses: WorldAddress[] = linkJson.flatMap((l) =>
    (l.addr_info ?? []).map((a) => ({
      family: a.family === 'inet' ? (4 as const) : (6 as const),
      ifindex: l.ifindex,
      local: a.local as string,
      ...(a.address !== undefined && a.address !== a.local ? { peer: a.address as string } : {}),
      prefixlen: a.prefixlen as number,
      scope: scopeName(a.scope)!,
      secondary: a.secondary === true,
      tentative: a.tentative === true,
      dadfailed: a.dadfailed === true,
      deprecated: a.deprecated === true,
    })),
  );
  const defaults = [...v4.map((r) => [4, r] as const), ...v6.map((r) => [6, r] as const)].map(([family, r]) => ({
    family: family as Family,
    metric: r.metric ?? 0,
    protocol: r.protocol ?? 'boot',
    multipath: r.nexthops !== undefined,
    paths: (r.nexthops ?? [r]).map((p) => ({
      ...(p.gateway ? { gateway: p.gateway } : {}),
      ...(p.dev && byName.has(p.dev) ? { ifindex: byName.get(p.dev)! } : {}),
      onlink: (p.flags ?? []).includes('onlink'),
    })),
    typeUnicast: r.type === undefined || typeName(r.type) === 'unicast',
    sourceSpecific: r.src !== undefined && r.src !== 'all',
  }));
  const deviceRoutes = [...main4.map((r) => [4, r] as const), ...main6.map((r) => [6, r] as const)]
    .filter(([, r]) => r.dev && byName.has(r.dev) && !r.gateway && !r.nexthops && (r.type === undefined || typeName(r.type) === 'unicast'))
    .map(([family, r]) => {
      const [network, length] = r.dst === 'default' ? [family === 4 ? '0.0.0.0' : '::', 0] : r.dst.split('/');
      return { family: family as Family, ifindex: byName.get(r.dev!)!, network: network as string, length: length === undefined ? bits(family) : Number(length) };
    });
  return { links, addresses, defaults, deviceRoutes };
}

// `ip -N` prints scopes and route types as numbers.
const SCOPES: Record<string, string> = { '0': 'global', '200': 'site', '253': 'link', '254': 'host', '255': 'nowhere' };
const TYPES: Record<string, string> = { '1': 'unicast', '2': 'local', '3': 'broadcast', '4': 'anycast', '5': 'multicast', '6': 'blackhole', '7': 'unreachable', '8': 'prohibit', '9': 'throw' };
const scopeName = (scope: unknown): string | undefined => (scope === undefined ? undefined : (SCOPES[String(scope)] ?? String(scope)));
const typeName = (type: unknown): string | undefined => (type === undefined ? undefined : (TYPES[String(type)] ?? String(type)));

// ---------------------------------------------------------------------------------------
// Normalised text of rules and routes, both from the model and from `ip -N -json`

export interface RuleSpec {
  family: Family;
  priority: number;
  src: string; // address or network
  srclen: number;
  table: number;
  protocol?: number;
}
export const ruleText = (r: RuleSpec): string =>
  `v${r.family} pref ${r.priority} from ${r.src}/${r.srclen} lookup ${r.table} proto ${r.protocol ?? 'none'}`;

export interface RouteSpec {
  family: Family;
  table: number;
  type?: string; // unicast unless said
  dst: string;
  dstlen: number;
  gateway?: string;
  dev?: string;
  scope?: string; // global unless said
  prefsrc?: string;
  onlink?: boolean;
  protocol?: number | string;
  metric?: number;
}
export const routeText = (r: RouteSpec): string =>
  [
    `v${r.family} table ${r.table}`,
    r.type && r.type !== 'unicast' ? r.type : '',
    `${r.dst}/${r.dstlen}`,
    r.gateway ? `via ${r.gateway}` : '',
    r.dev && (!r.type || r.type === 'unicast') ? `dev ${r.dev}` : '',
    r.scope && r.scope !== 'global' ? `scope ${r.scope}` : '',
    r.prefsrc ? `src ${r.prefsrc}` : '',
    r.onlink ? 'onlink' : '',
    `proto ${r.protocol ?? 'boot'}`,
    `metric ${r.metric ?? (r.family === 4 ? 0 : 1024)}`,
  ]
    .filter(Boolean)
    .join(' ');

function ruleFromJson(family: Family, r: Record<string, unknown>): string {
  const known = new Set(['priority', 'src', 'srclen', 'table', 'protocol']);
  const extra = Object.keys(r)
    .filter((k) => !known.has(k))
    .sort()
    .map((k) => ` ${k}=${JSON.stringify(r[k])}`)
    .join('');
  const src = r.src === 'all' || r.src === undefined ? (family === 4 ? '0.0.0.0' : '::') : (r.src as string);
  const srclen = (r.srclen as number | undefined) ?? (r.src === 'all' || r.src === undefined ? 0 : bits(family));
  return (
    ruleText({
      family,
      priority: r.priority as number,
      src,
      srclen,
      table: Number(r.table),
      ...(r.protocol !== undefined ? { protocol: Number(r.protocol) } : {}),
    }) + extra
  );
}

function routeFromJson(family: Family, r: JsonRoute): string {
  const [dst, len] = r.dst === 'default' ? [family === 4 ? '0.0.0.0' : '::', 0] : r.dst.split('/');
  const text = routeText({
    family,
    table: r.table === undefined ? MAIN : Number(r.table),
    ...(r.type ? { type: typeName(r.type)! } : {}),
    dst: dst as string,
    dstlen: len === undefined ? bits(family) : Number(len),
    ...(r.gateway ? { gateway: r.gateway } : {}),
    ...(r.dev ? { dev: r.dev } : {}),
    ...(r.scope !== undefined ? { scope: scopeName(r.scope)! } : {}),
    ...(typeof r.prefsrc === 'string' ? { prefsrc: r.prefsrc } : {}),
    onlink: (r.flags ?? []).includes('onlink'),
    protocol: r.protocol ?? 'boot',
    metric: r.metric ?? 0,
  });
  return r.nexthops ? `${text} nexthops ${JSON.stringify(r.nexthops)}` : text;
}

/**
 * README, "What every packet pays": from 16 `from` rules of a family on, symroute adds rules
 * that let other sources skip them. Their covers are symroute's choice, so the model does not
 * predict them: both sides carry one line per family with a skip, and the kernel's side says
 * `sound` only if the skip is exactly the catch-all at P-1 (goto P+1), the nop at P+1 and
 * 1 to 4 covers at P-2 (goto P) that hold every `from` rule at P. (container_routes is off
 * here, so there is no destination skip.) From 48 on, the `from` rules form a tree, at
 * priorities of symroute's choice: sound if the catch-all goes to the tree's landing (P+162,
 * its one nop) and every `from` rule sits between P+1 and it where its source's walk through
 * the gotos (from P-2 on) reaches it; the kernel's side then shows those rules at P, as the
 * model has them.
 */
const SKIPPED_MIN = 16;
/** The tree's landing, above rule.priority (rule-skips.ts). */
const TREE_LANDING = 162;
const skipLine = (family: Family, priority: number, verdict: string) => `v${family} skip past pref ${priority}: ${verdict}`;

/** The model's rule texts, with the skip line of each family that has enough `from` rules. */
export function withSkipLines(ruleTexts: readonly string[]): string[] {
  const counts = new Map<string, number>();
  for (const text of ruleTexts) {
    const [, family, priority] = /^v(\d) pref (\d+) /.exec(text)!;
    counts.set(`${family} ${priority}`, (counts.get(`${family} ${priority}`) ?? 0) + 1);
  }
  const lines = [...ruleTexts];
  for (const [key, count] of counts) {
    const [family, priority] = key.split(' ').map(Number) as [Family, number];
    if (count >= SKIPPED_MIN) lines.push(skipLine(family, priority, 'sound'));
  }
  return lines.sort();
}

/** Whether a `from <cover>` (or `from all`) rule matches the prefix `src`/`length`. */
function covers(family: Family, rule: Record<string, unknown>, src: string, length: number): boolean {
  if (rule.src === 'all') return true;
  const coverLength = (rule.srclen as number | undefined) ?? bits(family); // ip omits a full length
  return coverLength <= length && networkOf(src, coverLength) === rule.src;
}

/**
 * The kernel's skip rules of one family (goto or nop), judged against its `from` rules; for
 * a sound tree, the priority its `from` rules are shown at (P).
 */
function skipLines(family: Family, skips: Array<Record<string, unknown>>, fromRules: Array<Record<string, unknown>>): { lines: string[]; treeAt?: number } {
  if (skips.length === 0) return { lines: [] };
  const catchAll = skips.filter((r) => r.goto !== undefined && r.src === 'all' && r.dst === undefined && r.priority === Math.min(...skips.filter((s) => s.src === 'all' && s.dst === undefined).map((s) => s.priority as number)));
  const priority = catchAll.length === 1 ? (catchAll[0]!.priority as number) + 1 : undefined;
  const raw = () => ({ lines: skips.map((r) => skipLine(family, priority ?? 0, `unexpected ${JSON.stringify(r)}`)) });
  if (priority !== undefined && catchAll[0]!.goto === priority + TREE_LANDING) return treeLines(family, priority, skips, fromRules) ?? raw();
  if (priority === undefined || catchAll[0]!.goto !== priority + 1 || skips.filter((r) => r.src === 'all' && r.goto !== undefined).length !== 1) return raw();
  const nops = skips.filter((r) => 'nop' in r);
  const coverRules = skips.filter((r) => r !== catchAll[0] && !('nop' in r));
  const sound =
    nops.length === 1 &&
    nops[0]!.priority === priority + 1 &&
    coverRules.length >= 1 &&
    coverRules.length <= 4 &&
    coverRules.every((c) => c.priority === priority - 2 && c.goto === priority && c.dst === undefined && c.src !== 'all') &&
    fromRules
      .filter((r) => r.priority === priority && r.src !== 'all')
      .every((r) => coverRules.some((c) => covers(family, c, r.src as string, (r.srclen as number | undefined) ?? bits(family))));
  return sound ? { lines: [skipLine(family, priority, 'sound')] } : raw();
}

/** A tree of `from` rules (P-1 goes to P+162): sound if each source's walk reaches its rule. */
function treeLines(family: Family, priority: number, skips: Array<Record<string, unknown>>, fromRules: Array<Record<string, unknown>>): { lines: string[]; treeAt: number } | undefined {
  const landing = priority + TREE_LANDING;
  const nops = skips.filter((r) => 'nop' in r);
  if (nops.length !== 1 || nops[0]!.priority !== landing) return undefined;
  const walk = [...skips].filter((r) => r.dst === undefined).sort((a, b) => (a.priority as number) - (b.priority as number));
  const reached = (rule: Record<string, unknown>) => {
    const at = rule.priority as number;
    if (at <= priority + 1 || at >= landing) return false;
    const length = (rule.srclen as number | undefined) ?? bits(family);
    let next = priority - 2;
    for (const skip of walk) {
      const skipAt = skip.priority as number;
      if (skipAt < next) continue;
      if (at >= next && at <= skipAt) return true;
      if (skip.goto !== undefined && covers(family, skip, rule.src as string, length)) {
        if ((skip.goto as number) <= skipAt) return false;
        next = skip.goto as number;
      }
    }
    return at >= next;
  };
  const sources = fromRules.filter((r) => r.src !== 'all');
  if (!sources.every(reached)) return undefined;
  return { lines: [skipLine(family, priority, 'sound')], treeAt: priority };
}

export interface KernelObjects {
  /** symroute's rules and routes (its protocol), anywhere, duplicates kept, sorted. */
  ownedRules: string[];
  ownedRoutes: string[];
  /** Every other rule, and every other route outside main, local and `ignoreTables`. */
  foreignRules: string[];
  foreignRoutes: string[];
}

export async function readKernelObjects(ns: string, ignoreTables: readonly number[] = []): Promise<KernelObjects> {
  const [[r4, t4], [r6, t6]] = (await Promise.all([
    ipJsonBatch(ns, 4, ['rule show', 'route show table all']),
    ipJsonBatch(ns, 6, ['rule show', 'route show table all']),
  ])) as [[Array<Record<string, unknown>>, JsonRoute[]], [Array<Record<string, unknown>>, JsonRoute[]]];
  const owned = (o: { protocol?: unknown }) => o.protocol === String(PROTO);
  const rules = [...r4.map((r) => [4, r] as const), ...r6.map((r) => [6, r] as const)];
  const routes = [...t4.map((r) => [4, r] as const), ...t6.map((r) => [6, r] as const)];
  const table = (r: JsonRoute) => (r.table === undefined ? MAIN : Number(r.table));
  const isSkip = (r: Record<string, unknown>) => r.goto !== undefined || 'nop' in r;
  const judged = new Map(
    ([4, 6] as const).map((f) => [
      f,
      skipLines(
        f,
        rules.filter(([family, r]) => family === f && owned(r) && isSkip(r)).map(([, r]) => r),
        rules.filter(([family, r]) => family === f && owned(r) && !isSkip(r)).map(([, r]) => r),
      ),
    ]),
  );
  const skips = [...judged.values()].flatMap((j) => j.lines);
  // A sound tree's `from` rules, shown at P as the model has them.
  const shown = (f: Family, r: Record<string, unknown>) => {
    const treeAt = judged.get(f)!.treeAt;
    return treeAt !== undefined && r.src !== 'all' ? { ...r, priority: treeAt } : r;
  };
  return {
    ownedRules: [...rules.filter(([, r]) => owned(r) && !isSkip(r)).map(([f, r]) => ruleFromJson(f, shown(f, r))), ...skips].sort(),
    ownedRoutes: routes.filter(([, r]) => owned(r)).map(([f, r]) => routeFromJson(f, r)).sort(),
    foreignRules: rules.filter(([, r]) => !owned(r)).map(([f, r]) => ruleFromJson(f, r)).sort(),
    foreignRoutes: routes
      .filter(([, r]) => !owned(r) && ![MAIN, LOCAL, ...ignoreTables].includes(table(r)))
      .map(([f, r]) => routeFromJson(f, r))
      .sort(),
  };
}

// ---------------------------------------------------------------------------------------
// The model

export interface ExpectedRule {
  table: number;
  text: string;
  spec: RuleSpec;
}
export interface ExpectedRoute {
  table: number;
  text: string;
  spec: RouteSpec;
}
export interface Expected {
  rules: ExpectedRule[];
  routes: ExpectedRoute[];
  /** Tables left alone because they hold a foreign route, with what is frozen in them. */
  frozen: Map<number, { rules: ExpectedRule[]; routes: ExpectedRoute[] }>;
  /** Per managed interface: its table (for the tests' own bookkeeping). */
  tables: Map<string, number>;
}

interface Prefix {
  family: Family;
  network: string;
  length: number;
  members: WorldAddress[];
}

/**
 * What symroute must own, given the config, the interfaces, the tables holding a foreign
 * route (`foreignTables`) and the previous expectation (a table that becomes a collision keeps
 * what it had: symroute stops touching it, rules into it included).
 */
export function expectedState(
  config: ChurnConfig,
  world: World,
  foreignTables: ReadonlySet<number>,
  previous?: Expected,
): Expected {
  // Managed: up, not lo, name in include and not in exclude.
  const managed = world.links
    .filter((l) => l.up && l.name !== 'lo')
    .filter((l) => config.include.some((g) => globMatches(g, l.name)) && !config.exclude.some((g) => globMatches(g, l.name)))
    .sort((a, b) => a.ifindex - b.ifindex);
  const tableOf = (l: WorldLink) => (Object.hasOwn(config.pinned, l.name) ? config.pinned[l.name]! : TABLE_BASE + l.ifindex);

  // Usable addresses: IPv4 global or site scope; IPv6 global, not tentative, failed or deprecated.
  const usable = (a: WorldAddress) =>
    a.family === 4
      ? a.scope === 'global' || a.scope === 'site'
      : a.scope === 'global' && !isLinkLocal6(a.local) && !a.tentative && !a.dadfailed && !a.deprecated;
  // The preferred address of a prefix (its route's src): a primary before secondaries, then the lowest.
  const preference = (a: WorldAddress, b: WorldAddress) => Number(a.secondary) - Number(b.secondary) || compareIp(a.local, b.local);

  /** Connected prefixes: each address's prefix (a peer's, for point-to-point); host addresses have none. */
  const prefixesOf = (addresses: WorldAddress[]): Prefix[] => {
    const prefixes = new Map<string, Prefix>();
    for (const a of [...addresses].sort(preference)) {
      if (!a.peer && a.prefixlen === bits(a.family)) continue;
      const network = networkOf(a.peer ?? a.local, a.prefixlen);
      const key = `${network}/${a.prefixlen}`;
      const p = prefixes.get(key) ?? { family: a.family, network, length: a.prefixlen, members: [] };
      p.members.push(a);
      prefixes.set(key, p);
    }
    return [...prefixes.values()];
  };

  interface Nic {
    link: WorldLink;
    table: number;
    families: Array<{ family: Family; addresses: WorldAddress[]; prefixes: Prefix[]; gateway?: { address: string; onlink: boolean } }>;
  }
  const nics: Nic[] = managed.map((link) => ({
    link,
    table: tableOf(link),
    families: ([4, 6] as const)
      .map((family) => {
        const addresses = world.addresses.filter((a) => a.ifindex === link.ifindex && a.family === family && usable(a));
        const prefixes = prefixesOf(addresses);
        const gateway = gatewayOf(config, world, link, family, prefixes);
        return { family, addresses, prefixes, ...(gateway ? { gateway } : {}) };
      })
      .filter((f) => f.addresses.length > 0),
  }));

  // Collisions: a managed interface's table holding a foreign route is left as it was when
  // the collision began — symroute stops touching it, rules into it included.
  const frozen: Expected['frozen'] = new Map();
  for (const nic of nics) {
    if (!foreignTables.has(nic.table)) continue;
    frozen.set(
      nic.table,
      previous?.frozen.get(nic.table) ?? {
        rules: (previous?.rules ?? []).filter((r) => r.table === nic.table),
        routes: (previous?.routes ?? []).filter((r) => r.table === nic.table),
      },
    );
  }

  const rules: ExpectedRule[] = [...frozen.values()].flatMap((f) => f.rules);
  const routes: ExpectedRoute[] = [...frozen.values()].flatMap((f) => f.routes);
  const route = (spec: RouteSpec): ExpectedRoute => ({ table: spec.table, text: routeText(spec), spec });
  const seenSources = new Set<string>();
  for (const nic of nics) {
    if (frozen.has(nic.table)) continue;
    for (const f of nic.families) {
      const metric = f.family === 4 ? 0 : 1024;
      for (const p of f.prefixes) {
        routes.push(
          route({
            family: f.family,
            table: nic.table,
            dst: p.network,
            dstlen: p.length,
            dev: nic.link.name,
            ...(f.family === 4 ? { scope: 'link' } : {}),
            prefsrc: p.members[0]!.local,
            protocol: PROTO,
            metric,
          }),
        );
      }
      if (f.gateway) {
        routes.push(
          route({
            family: f.family,
            table: nic.table,
            dst: f.family === 4 ? '0.0.0.0' : '::',
            dstlen: 0,
            gateway: f.gateway.address,
            dev: nic.link.name,
            onlink: f.gateway.onlink,
            protocol: PROTO,
            metric,
          }),
        );
      }
      // Rules: one per address, or (prefix mode) one per prefix of local (non-peer) addresses
      // that overlaps no other managed interface's prefix; the rest one per address.
      const sources: Array<{ src: string; len: number }> = [];
      if (config.match === 'address') {
        sources.push(...f.addresses.map((a) => ({ src: a.local, len: bits(f.family) })));
      } else {
        const covered = new Set<WorldAddress>();
        for (const p of prefixesOf(f.addresses.filter((a) => !a.peer))) {
          p.members.forEach((m) => covered.add(m));
          const overlaps = nics.some(
            (other) =>
              other !== nic &&
              other.families.some(
                (of) =>
                  of.family === f.family &&
                  of.prefixes.some((op) => {
                    const common = Math.min(op.length, p.length);
                    return networkOf(op.network, common) === networkOf(p.network, common);
                  }),
              ),
          );
          if (overlaps) sources.push(...p.members.map((m) => ({ src: m.local, len: bits(f.family) })));
          else sources.push({ src: p.network, len: p.length });
        }
        sources.push(...f.addresses.filter((a) => !covered.has(a)).map((a) => ({ src: a.local, len: bits(f.family) })));
      }
      for (const { src, len } of sources) {
        // One rule per source: the same address on two interfaces gets one, the lower ifindex's.
        const key = `${f.family}|${src}/${len}`;
        if (seenSources.has(key)) continue;
        seenSources.add(key);
        const spec = { family: f.family, priority: config.priority, src, srclen: len, table: nic.table, protocol: PROTO };
        rules.push({ table: nic.table, text: ruleText(spec), spec });
      }
    }
  }

  return {
    rules,
    routes,
    frozen,
    tables: new Map(nics.map((n) => [n.link.name, n.table])),
  };
}

/**
 * The gateway of an interface's table: configured, else the lowest-metric default route via
 * the interface in main (on-link stays on-link). It is installed only where the kernel can
 * take it: an IPv4 gateway inside one of the interface's connected prefixes, or on-link; an
 * IPv6 link-local gateway always, a global one inside a connected prefix; either behind a
 * device route of the interface in main (README, "A gateway the kernel would refuse": also
 * the prefix route of an address not usable itself, such as a deprecated IPv6 one).
 * Otherwise none.
 */
function gatewayOf(
  config: ChurnConfig,
  world: World,
  link: WorldLink,
  family: Family,
  prefixes: Prefix[],
): { address: string; onlink: boolean } | undefined {
  const configured = Object.hasOwn(config.gateways, link.name) ? config.gateways[link.name]![family === 4 ? 'ipv4' : 'ipv6'] : undefined;
  let gateway: { address: string; onlink: boolean } | undefined;
  if (configured) gateway = { address: canonicalIp(configured), onlink: false };
  else {
    let best: { address: string; onlink: boolean; metric: number } | undefined;
    for (const route of world.defaults) {
      if (route.family !== family || !route.typeUnicast || route.sourceSpecific || route.protocol === String(PROTO)) continue;
      const path = route.paths.find((p) => p.ifindex === link.ifindex && p.gateway);
      if (!path) continue;
      if (!best || route.metric < best.metric) {
        best = { address: path.gateway!, onlink: !route.multipath && path.onlink, metric: route.metric };
      }
    }
    if (best) gateway = { address: best.address, onlink: best.onlink };
  }
  if (!gateway) return undefined;
  const inPrefix =
    prefixes.some((p) => prefixContains(p.network, p.length, gateway!.address)) ||
    world.deviceRoutes.some((r) => r.family === family && r.ifindex === link.ifindex && prefixContains(r.network, r.length, gateway!.address));
  const installable = family === 4 ? gateway.onlink || inPrefix : isLinkLocal6(gateway.address) || inPrefix;
  return installable ? gateway : undefined;
}
