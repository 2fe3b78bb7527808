// The churn test's operations: generated as plain data by fast-check (so failing sequences
// shrink), applied with iproute2 to a namespace where the real daemon runs, and judged
// against the independent model in churn-model.ts. An operation names NICs, addresses and
// rules by position ("the k-th NIC", modulo how many there are), so every shrunk sequence
// still means something; one that finds nothing to act on is a no-op.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import type { VerifyJson } from '../../src/commands/inspect.js';
import type { DaemonProcess, Lab } from './lab.js';
import {
  canonicalIp,
  configYaml,
  expectedState,
  networkOf,
  PROTO,
  readKernelObjects,
  readWorld,
  routeText,
  ruleText,
  withSkipLines,
  type ChurnConfig,
  type Expected,
  type ExpectedRoute,
  type ExpectedRule,
  type Family,
  type KernelObjects,
  type World,
} from './churn-model.js';

// ---------------------------------------------------------------------------------------
// Vocabulary

export const NAMES = ['eth0', 'eth1', 'ens3', 'ens4', 'n1', 'n2', 'wan0', 'x9'] as const;
/**
 * The NIC the barrier puts its markers on (198.19.0.0/16, used by nothing else): matched by
 * every include and no exclude of CONFIG_CHOICES, never pinned, no gateway, no operation
 * touches it, and without a marker it has no usable address, so the model wants nothing for it.
 */
const SYNC_NIC = 'esync';
const V4_SUBNETS = [
  { base: '198.18.1', len: 24, gateway: '198.18.1.1' },
  { base: '198.18.2', len: 24, gateway: '198.18.2.1' },
  { base: '198.18.3', len: 20, gateway: '198.18.0.1' }, // 198.18.0.0/20: around the two above
  { base: '198.51.100', len: 24, gateway: '198.51.100.1' },
] as const;
const V6_SUBNETS = [
  { base: '2001:db8:1:', len: 64, gateway: '2001:db8:1::1' },
  { base: '2001:db8:2:', len: 64, gateway: '2001:db8:2::1' },
  { base: '2001:db8:1:5:', len: 48, gateway: '2001:db8:1::1' }, // 2001:db8:1::/48: around the first
  { base: '2001:db8:3:', len: 64, gateway: '2001:db8:3::1' },
] as const;
const METRICS = [100, 200, 300] as const;
/** Before every priority of CONFIG_CHOICES (and their destination rules). */
const SHADOW_PRIORITY = 100;
/** The table of foreign routes flooded to provoke a receive overrun (compared by count only). */
export const FLOOD_TABLE = 90;
const FLOOD_ROUTES = 30_000;

export const CONFIG_CHOICES = {
  priority: [30000, 31000, 200],
  match: ['address', 'prefix'],
  include: [['*'], ['e*', 'n?', 'wan0', 'x9'], ['e*', 'wan*']],
  exclude: [[], ['n2'], ['ens*', 'x?']],
  pinned: [{}, { n1: 101 }, { eth1: 102, wan0: 103 }],
  gateways: [
    {},
    { eth0: { ipv4: '198.18.1.1' } },
    { ens3: { ipv4: '198.18.2.1', ipv6: 'fe80::1' } },
    // Outside every prefix this NIC can get: the kernel must refuse it, so it is not installed.
    { n1: { ipv4: '198.18.77.1' }, eth1: { ipv6: '2001:db8:2::1' } },
  ],
} as const;

export const configArb = (match?: ChurnConfig['match']): fc.Arbitrary<ChurnConfig> =>
  fc.record({
    priority: fc.constantFrom(...CONFIG_CHOICES.priority),
    match: match ? fc.constant(match) : fc.constantFrom(...CONFIG_CHOICES.match),
    include: fc.constantFrom(...CONFIG_CHOICES.include).map((x) => [...x]),
    exclude: fc.constantFrom(...CONFIG_CHOICES.exclude).map((x) => [...x]),
    pinned: fc.constantFrom(...CONFIG_CHOICES.pinned).map((x) => ({ ...x }) as Record<string, number>),
    gateways: fc.constantFrom(...CONFIG_CHOICES.gateways).map((x) => structuredClone(x) as ChurnConfig['gateways']),
  });

export type Op =
  | { op: 'addNic'; name: number; up: boolean; bridge: boolean }
  | { op: 'delNic'; nic: number }
  | { op: 'setUp'; nic: number; up: boolean }
  | { op: 'rename'; nic: number; name: number }
  | { op: 'addAddr4'; nic: number; subnet: number; host: number; kind: 'plain' | 'host32' | 'peer' | 'noprefixroute' }
  | { op: 'addAddr6'; nic: number; subnet: number; host: number; kind: 'plain' | 'host128' | 'peer' | 'deprecated' | 'noprefixroute' }
  | { op: 'delAddr'; nic: number; which: number }
  | { op: 'gw4'; nic: number; metric: number; via: 'subnet' | 'onlink'; subnet: number }
  | { op: 'gw6'; nic: number; metric: number; via: 'linklocal' | 'global'; subnet: number }
  | { op: 'gwMultipath'; family: Family; nics: [number, number]; metric: number; subnet: number }
  | { op: 'delDefault'; family: Family; metric: number }
  | { op: 'driftDelRule'; which: number }
  | { op: 'driftDelRoute'; which: number }
  | { op: 'driftReplaceRoute'; which: number }
  | { op: 'driftAddOwned'; kind: 'rule' | 'route'; n: number }
  | { op: 'foreignRule'; family: Family; priority: 'same' | 'lower' | 'higher'; n: number }
  | { op: 'foreignTwin'; which: number }
  | { op: 'shadow'; which: number }
  | { op: 'delForeignRule'; which: number }
  | { op: 'foreignRoute'; family: Family; table: 77 | 78; n: number }
  | { op: 'collide'; nic: number; family: Family; n: number }
  | { op: 'delForeignRoute'; which: number }
  | { op: 'reload'; config: ChurnConfig }
  | { op: 'flood' };

const idx = fc.nat({ max: 15 });
const small = fc.nat({ max: 3 });
const metric = fc.constantFrom(...METRICS);
const family = fc.constantFrom<Family>(4, 6);

/** Operations, weighted towards what changes the plan most (NICs and addresses). */
export function opArb(options: { flood: boolean }): fc.Arbitrary<Op> {
  const weighted: Array<{ weight: number; arbitrary: fc.Arbitrary<Op> }> = [
    { weight: 6, arbitrary: fc.record({ op: fc.constant('addNic'), name: fc.nat({ max: NAMES.length - 1 }), up: fc.constantFrom(true, true, true, true, false), bridge: fc.boolean() }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('delNic'), nic: idx }) },
    { weight: 3, arbitrary: fc.record({ op: fc.constant('setUp'), nic: idx, up: fc.boolean() }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('rename'), nic: idx, name: fc.nat({ max: NAMES.length - 1 }) }) },
    {
      weight: 6,
      arbitrary: fc.record({ op: fc.constant('addAddr4'), nic: idx, subnet: small, host: fc.nat({ max: 2 }), kind: fc.constantFrom('plain', 'plain', 'host32', 'peer', 'noprefixroute') }),
    },
    {
      weight: 4,
      arbitrary: fc.record({ op: fc.constant('addAddr6'), nic: idx, subnet: small, host: fc.nat({ max: 2 }), kind: fc.constantFrom('plain', 'plain', 'host128', 'peer', 'deprecated', 'noprefixroute') }),
    },
    { weight: 4, arbitrary: fc.record({ op: fc.constant('delAddr'), nic: idx, which: idx }) },
    { weight: 3, arbitrary: fc.record({ op: fc.constant('gw4'), nic: idx, metric, via: fc.constantFrom('subnet', 'subnet', 'onlink'), subnet: small }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('gw6'), nic: idx, metric, via: fc.constantFrom('linklocal', 'global'), subnet: small }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('gwMultipath'), family, nics: fc.tuple(idx, idx), metric, subnet: small }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('delDefault'), family, metric }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('driftDelRule'), which: idx }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('driftDelRoute'), which: idx }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('driftReplaceRoute'), which: idx }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('driftAddOwned'), kind: fc.constantFrom('rule', 'route'), n: idx }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('foreignRule'), family, priority: fc.constantFrom('same', 'lower', 'higher'), n: idx }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('foreignTwin'), which: idx }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('shadow'), which: idx }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('delForeignRule'), which: idx }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('foreignRoute'), family, table: fc.constantFrom(77 as const, 78 as const), n: idx }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('collide'), nic: idx, family, n: idx }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('delForeignRoute'), which: idx }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('reload'), config: configArb() }) },
  ];
  if (options.flood) weighted.push({ weight: 1, arbitrary: fc.constant({ op: 'flood' as const }) });
  return fc.oneof(...weighted) as fc.Arbitrary<Op>;
}

/**
 * The state found at start-up: a few NICs, each with an address, some with a second one in
 * the same subnet (the kernel makes it secondary: a VIP, common in production and otherwise
 * rare in a run), some with an IPv6 address and a gateway.
 */
export const prologueArb: fc.Arbitrary<Op[]> = fc
  .array(
    fc.record({
      name: fc.nat({ max: NAMES.length - 1 }),
      subnet: small,
      secondary: fc.boolean(),
      v6: fc.option(small, { nil: undefined }),
      gateway: fc.option(metric, { nil: undefined }),
    }),
    { minLength: 1, maxLength: 4 },
  )
  .map((nics) =>
    nics.flatMap((n, k): Op[] => [
      { op: 'addNic', name: n.name, up: true, bridge: k % 2 === 0 },
      { op: 'addAddr4', nic: k, subnet: n.subnet, host: 0, kind: 'plain' },
      ...(n.secondary ? [{ op: 'addAddr4' as const, nic: k, subnet: n.subnet, host: 1, kind: 'plain' as const }] : []),
      ...(n.v6 !== undefined ? [{ op: 'addAddr6' as const, nic: k, subnet: n.v6, host: 0, kind: 'plain' as const }] : []),
      ...(n.gateway !== undefined ? [{ op: 'gw4' as const, nic: k, metric: n.gateway, via: 'subnet' as const, subnet: n.subnet }] : []),
    ]),
  );

// ---------------------------------------------------------------------------------------
// A run: one namespace, one daemon, a sequence of operations

export interface ChurnCounters {
  operations: number;
  commands: number;
  refused: number;
  overruns: number;
}

export class ChurnRun {
  readonly log: string[] = [];
  private daemon!: DaemonProcess;
  private ns!: string;
  private peer!: string;
  private configPath!: string;
  /** The config the daemon runs: the file, or a copy of the one it kept when it rejected a reload. */
  private effectiveConfigPath!: string;
  private expected!: Expected;
  private world!: World;
  private baselineForeignRules: string[] = [];
  /**
   * Foreign rules and routes the test added and still has, as the model prints them. A
   * `shadow` is a prohibit rule before symroute's: a planted reply-path fault, for every
   * source inside its selector.
   */
  private readonly foreignRules: Array<{ text: string; del: string[]; shadow?: { family: Family; src: string; srclen: number } }> = [];
  private readonly foreignRoutes: Array<{ table: number; text: string; del: string[] }> = [];
  private peerCounter = 0;
  /** A reply-path fault (a shadow) was planted at some point. */
  private plantedFaults = false;
  /** Sync markers used so far (each barrier a new address). */
  private markers = 0;

  constructor(
    private readonly lab: Lab,
    private config: ChurnConfig,
    readonly counters: ChurnCounters,
    private readonly settleMs = 10_000,
  ) {}

  /** Builds the namespaces, applies `prologue` (the state found at start-up), starts the daemon. */
  async start(prologue: readonly Op[] = []): Promise<void> {
    this.ns = await this.lab.namespace('h');
    this.peer = await this.lab.namespace('p');
    // No DAD and no router advertisements: addresses are usable the moment they are added.
    await this.lab.sysctl(this.ns, 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0', 'net.ipv6.conf.default.accept_ra=0');
    await this.lab.bridge(this.peer, 'br0');
    this.baselineForeignRules = (await readKernelObjects(this.ns)).foreignRules;
    await this.refresh();
    for (const op of prologue) {
      this.log.push(`${JSON.stringify(op)}    # before the daemon starts`);
      await this.perform(op);
      await this.refresh();
    }
    // The sync NIC (see barrier): managed under every config, addressed only by the barrier.
    await this.lab.ip(this.ns, 'link', 'add', SYNC_NIC, 'type', 'veth', 'peer', 'name', 'qsync', 'netns', this.peer);
    await this.lab.ip(this.peer, 'link', 'set', 'qsync', 'up');
    await this.lab.ip(this.ns, 'link', 'set', SYNC_NIC, 'up');
    this.log.push(`# sync NIC ${SYNC_NIC} added and up`);
    await this.refresh();
    this.configPath = this.lab.writeConfig(configYaml(this.config), 'churn.yaml');
    this.effectiveConfigPath = this.configPath;
    this.log.push(`# config:\n${configYaml(this.config)}`);
    this.daemon = await this.lab.startConverged(this.ns, this.configPath);
    await this.refresh();
    await this.settle('start');
    await this.expectReplyPaths('start');
  }

  /**
   * The kernel's verdict on every reply path (`symroute verify`) against the faults planted
   * now: an egress path is broken exactly when a shadow covers its source, and then refused;
   * an ingress path only then (rp_filter, when on, makes that same lookup); a NIC whose table
   * holds a foreign route is reported as a collision. The daemon's own verdict, its
   * symroute_reply_path_ok per NIC and family after its passes, must come to the same; and
   * it never warned of a broken path in a run that planted no shadow.
   */
  private async expectReplyPaths(after: string): Promise<void> {
    const verify = await this.lab.runCli(this.ns, ['verify', '--json', '--config', this.effectiveConfigPath]);
    const paths = (JSON.parse(verify.stdout) as VerifyJson).paths;
    const shadows = this.foreignRules.flatMap((f) => (f.shadow ? [f.shadow] : []));
    const collided = new Set(this.foreignRoutes.map((r) => r.table));
    const wrong: string[] = [];
    for (const p of paths) {
      const family: Family = p.family === 'ipv4' ? 4 : 6;
      const shadowed = shadows.some((s) => s.family === family && networkOf(p.address, s.srclen) === s.src);
      const what = `${p.ifname} ${p.direction} ${p.address} - ${p.peer}: ${p.ok ? 'ok' : `${p.reason}: ${p.detail}`}`;
      if (p.reason === 'table_collision') {
        if (!collided.has(p.table!)) wrong.push(`${what} (no foreign route in table ${p.table})`);
      } else if (p.direction === 'egress' ? !p.ok !== shadowed || (!p.ok && p.reason !== 'egress_prohibited') : !p.ok && !shadowed) {
        wrong.push(`${what} (${shadowed ? 'a shadow covers it' : 'no fault planted for it'})`);
      }
    }
    if (wrong.length > 0) throw new Error(`reply paths after ${after} do not match the faults planted:\n  ${wrong.join('\n  ')}`);
    const want = [...new Set(paths.filter((p) => !p.ok).map((p) => `${p.ifname} ${p.family}`))].sort();
    const deadline = Date.now() + this.settleMs;
    for (;;) {
      const series = await this.lab.metricSeries(this.ns, 'symroute_reply_path_ok{');
      const got = Object.entries(series)
        .filter(([, ok]) => ok === 0)
        .map(([name]) => name.replace(/^.*ifname="([^"]+)",family="([^"]+)".*$/, '$1 $2'))
        .sort();
      if (JSON.stringify(got) === JSON.stringify(want)) break;
      if (Date.now() > deadline) throw new Error(`after ${after} the daemon reports broken reply paths on [${got.join(', ')}], the kernel on [${want.join(', ')}]`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const reported = this.daemon.messages().filter((m) => m.startsWith('reply path broken'));
    if (!this.plantedFaults && reported.length > 0) throw new Error(`the daemon reported reply paths broken with no fault planted: ${reported.join('; ')}`);
  }

  /** The daemon's log, last lines first cut, for failure messages. */
  daemonLog(lines = 150): string {
    return this.daemon ? this.daemon.lines.slice(-lines).join('\n') : '(no daemon)';
  }

  overruns(): number {
    return this.daemon ? this.daemon.messages().filter((m) => m.includes('dumping kernel state again (enobufs)')).length : 0;
  }

  async stop(): Promise<void> {
    if (this.daemon) {
      this.counters.overruns += this.overruns();
      await this.daemon.stop('SIGTERM');
    }
  }

  private async refresh(): Promise<void> {
    this.world = await readWorld(this.ns);
    this.expected = expectedState(this.config, this.world, this.foreignTables(), this.expected);
  }

  private foreignTables(): Set<number> {
    return new Set(this.foreignRoutes.map((r) => r.table));
  }

  /** The NICs the operations act on, in creation order (lo and the sync NIC excluded). */
  private nics() {
    return this.world.links.filter((l) => l.name !== 'lo' && l.name !== SYNC_NIC);
  }
  private nic(k: number) {
    const nics = this.nics();
    return nics.length ? nics[k % nics.length] : undefined;
  }
  private frozenTable(name: string): boolean {
    const table = this.expected.tables.get(name);
    return table !== undefined && this.expected.frozen.has(table);
  }
  private unfrozenRules(): ExpectedRule[] {
    return this.expected.rules.filter((r) => !this.expected.frozen.has(r.table));
  }
  private unfrozenRoutes(): ExpectedRoute[] {
    return this.expected.routes.filter((r) => !this.expected.frozen.has(r.table));
  }

  /** Runs one `ip` command; a refusal is logged and makes the operation a no-op. */
  private async ip(...args: string[]): Promise<boolean> {
    this.counters.commands++;
    try {
      await this.lab.ip(this.ns, ...args);
      this.log.push(`  ip ${args.join(' ')}`);
      return true;
    } catch (error) {
      this.counters.refused++;
      const reason = String((error as { stderr?: string }).stderr ?? error).trim().split('\n')[0];
      this.log.push(`  ip ${args.join(' ')}    # refused: ${reason}`);
      return false;
    }
  }

  async apply(op: Op): Promise<void> {
    this.counters.operations++;
    this.log.push(`${JSON.stringify(op)}`);
    const t0 = Date.now();
    await this.perform(op);
    const t1 = Date.now();
    await this.refresh();
    const t2 = Date.now();
    await this.settle(JSON.stringify(op));
    const t3 = Date.now();
    await this.barrier(JSON.stringify(op));
    await this.expectReplyPaths(JSON.stringify(op));
    if (process.env.CHURN_DEBUG) this.log.push(`  # ms: perform ${t1 - t0} refresh ${t2 - t1} settle ${t3 - t2} barrier ${Date.now() - t3}`);
  }

  private async perform(op: Op): Promise<void> {
    switch (op.op) {
      case 'addNic': {
        const taken = new Set(this.nics().map((l) => l.name));
        const name = [...NAMES.slice(op.name), ...NAMES.slice(0, op.name)].find((n) => !taken.has(n));
        if (!name) return;
        const peerName = `q${++this.peerCounter}`;
        if (!(await this.ip('link', 'add', name, 'type', 'veth', 'peer', 'name', peerName, 'netns', this.peer))) return;
        await this.lab.ip(this.peer, 'link', 'set', peerName, 'up');
        if (op.bridge) await this.lab.ip(this.peer, 'link', 'set', peerName, 'master', 'br0');
        if (op.up) await this.ip('link', 'set', name, 'up');
        return;
      }
      case 'delNic': {
        const nic = this.nic(op.nic);
        if (nic) await this.ip('link', 'del', nic.name);
        return;
      }
      case 'setUp': {
        const nic = this.nic(op.nic);
        if (nic) await this.ip('link', 'set', nic.name, op.up ? 'up' : 'down');
        return;
      }
      case 'rename': {
        const nic = this.nic(op.nic);
        const name = NAMES[op.name]!;
        // Renaming takes the link down and up again, which would move what a collision froze.
        if (!nic || nic.name === name || this.frozenTable(nic.name) || this.nics().some((l) => l.name === name)) return;
        // The kernel renames only a down link; udev and admins do down, rename, up.
        if (nic.up) await this.ip('link', 'set', nic.name, 'down');
        await this.ip('link', 'set', nic.name, 'name', name);
        if (nic.up) await this.ip('link', 'set', name, 'up');
        return;
      }
      case 'addAddr4': {
        const nic = this.nic(op.nic);
        if (!nic) return;
        const host = 10 + ((nic.ifindex * 3 + op.host) % 240);
        const subnet = V4_SUBNETS[op.subnet % V4_SUBNETS.length]!;
        const args = ['addr', 'add'];
        if (op.kind === 'host32') args.push(`198.18.8.${host}/32`);
        else if (op.kind === 'peer') args.push(`198.18.9.${host}`, 'peer', '198.18.9.1/32');
        else args.push(`${subnet.base}.${host}/${subnet.len}`);
        if (op.kind === 'noprefixroute') args.push('noprefixroute');
        await this.ip(...args, 'dev', nic.name);
        return;
      }
      case 'addAddr6': {
        const nic = this.nic(op.nic);
        if (!nic) return;
        // Host parts made of decimal digits only, so that every ordering of them agrees.
        const host = `${1 + (nic.ifindex % 9)}${1 + op.host}`;
        const subnet = V6_SUBNETS[op.subnet % V6_SUBNETS.length]!;
        const args = ['-6', 'addr', 'add'];
        if (op.kind === 'host128') args.push(`2001:db8:8::${host}/128`);
        else if (op.kind === 'peer') args.push(`2001:db8:9::${host}`, 'peer', '2001:db8:9::1/128');
        else args.push(`${subnet.base}:${host}/${subnet.len}`);
        if (op.kind === 'noprefixroute') args.push('noprefixroute');
        if (op.kind === 'deprecated') args.push('preferred_lft', '0');
        await this.ip(...args, 'dev', nic.name, 'nodad');
        return;
      }
      case 'delAddr': {
        const nic = this.nic(op.nic);
        // Removing an address flushes routes that use it, also in a table a collision froze.
        if (!nic || this.frozenTable(nic.name)) return;
        const addresses = this.world.addresses.filter((a) => a.ifindex === nic.ifindex && !a.local.startsWith('fe80:'));
        const a = addresses[op.which % Math.max(addresses.length, 1)];
        if (!a) return;
        const local = a.peer ? [a.local, 'peer', `${a.peer}/${a.prefixlen}`] : [`${a.local}/${a.prefixlen}`];
        await this.ip(`-${a.family}`, 'addr', 'del', ...local, 'dev', nic.name);
        return;
      }
      case 'gw4': {
        const nic = this.nic(op.nic);
        if (!nic) return;
        const via = op.via === 'onlink' ? ['198.18.7.1', 'dev', nic.name, 'onlink'] : [V4_SUBNETS[op.subnet % 4]!.gateway, 'dev', nic.name];
        await this.ip('-4', 'route', 'replace', 'default', 'via', ...via, 'metric', String(op.metric));
        return;
      }
      case 'gw6': {
        const nic = this.nic(op.nic);
        if (!nic) return;
        const gateway = op.via === 'linklocal' ? 'fe80::1' : V6_SUBNETS[op.subnet % 4]!.gateway;
        await this.ip('-6', 'route', 'replace', 'default', 'via', gateway, 'dev', nic.name, 'metric', String(op.metric));
        return;
      }
      case 'gwMultipath': {
        const [a, b] = [this.nic(op.nics[0]), this.nic(op.nics[1])];
        if (!a || !b || a.name === b.name) return; // one path per NIC, so each NIC's gateway is unambiguous
        const gw = (k: number) => (op.family === 4 ? V4_SUBNETS[(op.subnet + k) % 4]!.gateway : `fe80::${k + 1}`);
        await this.ip(`-${op.family}`, 'route', 'replace', 'default', 'metric', String(op.metric),
          'nexthop', 'via', gw(0), 'dev', a.name, 'nexthop', 'via', gw(1), 'dev', b.name);
        return;
      }
      case 'delDefault':
        await this.ip(`-${op.family}`, 'route', 'del', 'default', 'metric', String(op.metric));
        return;
      case 'driftDelRule': {
        const rule = pick(this.unfrozenRules(), op.which);
        if (rule) await this.ip(...ruleArgs('del', rule));
        return;
      }
      case 'driftDelRoute': {
        const route = pick(this.unfrozenRoutes(), op.which);
        if (route) await this.ip(...routeArgs('del', route.spec));
        return;
      }
      case 'driftReplaceRoute': {
        // Still symroute's (same protocol), but not what it wants: a gateway route gets a
        // wrong on-link gateway, a connected route loses its source address.
        const route = pick(this.unfrozenRoutes(), op.which);
        if (!route) return;
        const s = route.spec;
        const changed = s.gateway
          ? { ...s, gateway: s.family === 4 ? '198.18.7.254' : 'fe80::99', onlink: s.family === 4 }
          : { ...s, prefsrc: undefined };
        await this.ip(...routeArgs('replace', changed));
        return;
      }
      case 'driftAddOwned': {
        // Something symroute owns but does not want (a leftover of an earlier run): it goes.
        if (op.kind === 'rule') {
          await this.ip('rule', 'add', 'from', `198.18.77.${op.n}`, 'lookup', '1077', 'pref', String(this.config.priority), 'proto', String(PROTO));
        } else {
          await this.ip('route', 'add', 'unreachable', `198.18.77.${op.n}/32`, 'table', '1500', 'proto', String(PROTO));
        }
        return;
      }
      case 'foreignRule': {
        const priority = { same: this.config.priority, lower: 100, higher: 32000 }[op.priority];
        const src = op.family === 4 ? `203.0.113.${op.n}` : `2001:db8:ff::${op.n}`;
        const spec = { family: op.family, priority, src: canonicalIp(src), srclen: op.family === 4 ? 32 : 128, table: 77 };
        if (await this.ip(`-${op.family}`, 'rule', 'add', 'from', src, 'lookup', '77', 'pref', String(priority))) {
          this.foreignRules.push({ text: ruleText(spec), del: [`-${op.family}`, 'rule', 'del', 'from', src, 'lookup', '77', 'pref', String(priority)] });
        }
        return;
      }
      case 'foreignTwin': {
        // Same selector, priority and table as one of symroute's rules, another protocol.
        const rule = pick(this.unfrozenRules(), op.which);
        if (!rule) return;
        const twin = { ...rule.spec, protocol: 4 };
        const args = ruleArgs('add', { ...rule, spec: twin });
        if (await this.ip(...args)) this.foreignRules.push({ text: ruleText(twin), del: ruleArgs('del', { ...rule, spec: twin }) });
        return;
      }
      case 'shadow': {
        // `prohibit` with the selector of one of symroute's rules, before all of them: every
        // reply from inside it is refused, whichever NIC holds the source.
        const rule = pick(this.unfrozenRules(), op.which);
        if (!rule) return;
        const { family, src, srclen } = rule.spec;
        const before = new Set((await readKernelObjects(this.ns)).foreignRules);
        if (!(await this.ip(`-${family}`, 'rule', 'add', 'from', `${src}/${srclen}`, 'prohibit', 'pref', String(SHADOW_PRIORITY)))) return;
        const [text] = (await readKernelObjects(this.ns)).foreignRules.filter((t) => !before.has(t));
        this.plantedFaults = true;
        this.foreignRules.push({
          text: text!,
          del: [`-${family}`, 'rule', 'del', 'from', `${src}/${srclen}`, 'prohibit', 'pref', String(SHADOW_PRIORITY)],
          shadow: { family, src, srclen },
        });
        return;
      }
      case 'delForeignRule': {
        const k = this.foreignRules.length ? op.which % this.foreignRules.length : -1;
        if (k < 0) return;
        if (await this.ip(...this.foreignRules[k]!.del)) this.foreignRules.splice(k, 1);
        return;
      }
      case 'foreignRoute':
      case 'collide': {
        // A foreign route in a foreign table, or in the table of one of symroute's NICs.
        let table: number = op.op === 'foreignRoute' ? op.table : 0;
        if (op.op === 'collide') {
          const nic = this.nic(op.nic);
          if (!nic) return;
          table = this.expected.tables.get(nic.name) ?? 1000 + nic.ifindex;
        }
        const dst = op.family === 4 ? `203.0.113.${op.n + 100}/32` : `2001:db8:ff::${op.n + 100}/128`;
        const spec = { family: op.family, table, type: 'unreachable', dst: canonicalIp(dst.split('/')[0]!), dstlen: op.family === 4 ? 32 : 128 };
        if (await this.ip(`-${op.family}`, 'route', 'add', 'unreachable', dst, 'table', String(table))) {
          this.foreignRoutes.push({ table, text: routeText(spec), del: [`-${op.family}`, 'route', 'del', 'unreachable', dst, 'table', String(table)] });
        }
        return;
      }
      case 'delForeignRoute': {
        const k = this.foreignRoutes.length ? op.which % this.foreignRoutes.length : -1;
        if (k < 0) return;
        if (await this.ip(...this.foreignRoutes[k]!.del)) this.foreignRoutes.splice(k, 1);
        return;
      }
      case 'reload': {
        writeFileSync(this.configPath, configYaml(op.config));
        this.log.push(`  config:\n${configYaml(op.config).replace(/^/gm, '    ')}`);
        this.daemon.child.kill('SIGHUP');
        // README, "Collisions up front": foreign rules at any priority symroute's rules take
        // (rule.priority - 5 .. rule.priority + 1) get the reload rejected, and the running config stays.
        const taken = this.want().foreignRules.filter((text) => {
          const priority = Number(/ pref (\d+) /.exec(text)?.[1]);
          return priority >= op.config.priority - 5 && priority <= op.config.priority + 1;
        });
        if (taken.length) {
          this.log.push(`  # rejected: foreign rules at the priorities of rule.priority ${op.config.priority}: ${taken.join('; ')}`);
          // The file is ahead of the daemon now.
          this.effectiveConfigPath = this.lab.writeConfig(configYaml(this.config), 'effective.yaml');
        } else {
          this.config = op.config;
          this.effectiveConfigPath = this.configPath;
        }
        return;
      }
      case 'flood': {
        // Freeze the daemon while the kernel floods its socket: a real receive overrun. One
        // of its rules is deleted among the lost notifications, so a missed overrun shows.
        const file = join(this.lab.dir, 'flood.batch');
        // In 198.18.128.0/17, which nothing else uses (test addresses stay in the documentation ranges).
        const lines = Array.from({ length: FLOOD_ROUTES }, (_, i) => `route add unreachable 198.18.${128 + (i >> 8)}.${i & 255}/32 table ${FLOOD_TABLE}`);
        writeFileSync(file, `${lines.join('\n')}\n`);
        process.kill(this.daemon.child.pid!, 'SIGSTOP');
        try {
          await this.ip('-batch', file);
          const rule = pick(this.unfrozenRules(), 0);
          if (rule) await this.ip(...ruleArgs('del', rule));
        } finally {
          process.kill(this.daemon.child.pid!, 'SIGCONT');
        }
        await this.settle('the flood', 4 * this.settleMs);
        // And away again while it runs (30,000 more notifications), so later reads stay small.
        while ((await this.lab.ip(this.ns, 'route', 'show', 'table', String(FLOOD_TABLE))).trim()) {
          await this.ip('route', 'flush', 'table', String(FLOOD_TABLE));
        }
        return;
      }
    }
  }

  /** What the kernel must hold now: the model's rules and routes, and the foreign objects. */
  private want(): KernelObjects {
    return {
      ownedRules: withSkipLines(this.expected.rules.map((r) => r.text)),
      ownedRoutes: this.expected.routes.map((r) => r.text).sort(),
      foreignRules: [...this.baselineForeignRules, ...this.foreignRules.map((r) => r.text)].sort(),
      foreignRoutes: this.foreignRoutes.map((r) => r.text).sort(),
    };
  }

  /** Polls the kernel until it equals the model; fails with the difference after settleMs. */
  private async settle(after: string, timeoutMs = this.settleMs): Promise<void> {
    const want = this.want();
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const got = await readKernelObjects(this.ns, [FLOOD_TABLE]);
      const diff = difference(want, got);
      if (!diff) return;
      if (this.daemon.child.exitCode !== null || this.daemon.child.signalCode !== null) {
        throw new Error(`the daemon exited (${this.daemon.child.exitCode ?? this.daemon.child.signalCode}) after ${after}\n${diff}\nstderr: ${this.daemon.stderr}`);
      }
      if (Date.now() > deadline) throw new Error(`kernel != model ${timeoutMs / 1000} s after ${after}:\n${diff}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /**
   * Makes sure the daemon has seen everything so far, then compares again: a late wrong
   * write (a duplicate, a touched foreign object) shows here. It adds a marker address to the
   * sync NIC and waits until the marker's rule and route are there, then removes it and waits
   * until they are gone: the daemon reads every notification from one socket, in order, so a
   * pass that saw the marker saw every earlier event. Each barrier uses a new address, so no
   * object of symroute's is ever removed twice (removing the same rule after every operation
   * would look like a fight with another manager and make its repairs back off).
   */
  private async barrier(after: string): Promise<void> {
    const k = this.markers++;
    const marker = `198.19.${(k >> 6) & 255}.${(k & 63) * 4 + 1}`;
    await this.ip('addr', 'add', `${marker}/30`, 'dev', SYNC_NIC);
    await this.refresh();
    // Proves nothing unless the model wants something for it (the sync NIC is always managed).
    if (!this.expected.rules.some((r) => r.spec.src === marker || r.spec.src === networkOf(marker, 30))) {
      throw new Error(`the model expects no rule for the sync marker ${marker} on ${SYNC_NIC}: the barrier would prove nothing`);
    }
    await this.settle(`${after} (and the sync marker ${marker} added)`);
    await this.ip('addr', 'del', `${marker}/30`, 'dev', SYNC_NIC);
    await this.refresh();
    await this.settle(`${after} (and the sync marker ${marker} removed)`);
  }
}

function pick<T>(items: T[], k: number): T | undefined {
  return items.length ? items[k % items.length] : undefined;
}

function ruleArgs(verb: 'add' | 'del', rule: ExpectedRule): string[] {
  const s = rule.spec;
  return [
    `-${s.family}`, 'rule', verb, 'from', `${s.src}/${s.srclen}`, 'lookup', String(s.table), 'pref', String(s.priority),
    ...(s.protocol !== undefined ? ['proto', String(s.protocol)] : []),
  ];
}

function routeArgs(verb: 'del' | 'replace', s: ExpectedRoute['spec']): string[] {
  return [
    `-${s.family}`, 'route', verb, `${s.dst}/${s.dstlen}`,
    ...(s.gateway ? ['via', s.gateway] : []),
    ...(s.dev ? ['dev', s.dev] : []),
    'table', String(s.table),
    ...(s.scope ? ['scope', s.scope] : []),
    ...(s.prefsrc ? ['src', s.prefsrc] : []),
    ...(s.onlink ? ['onlink'] : []),
    'proto', String(s.protocol), 'metric', String(s.metric ?? (s.family === 4 ? 0 : 1024)),
  ];
}

/** The difference between what must be and what is, as readable lines; undefined if none. */
export function difference(want: KernelObjects, got: KernelObjects): string | undefined {
  const lines: string[] = [];
  for (const key of ['ownedRules', 'ownedRoutes', 'foreignRules', 'foreignRoutes'] as const) {
    const missing = multisetMinus(want[key], got[key]);
    const extra = multisetMinus(got[key], want[key]);
    if (missing.length || extra.length) {
      lines.push(`${key}:`, ...missing.map((l) => `  missing ${l}`), ...extra.map((l) => `  extra   ${l}`));
    }
  }
  return lines.length ? lines.join('\n') : undefined;
}

function multisetMinus(a: string[], b: string[]): string[] {
  const counts = new Map<string, number>();
  for (const x of b) counts.set(x, (counts.get(x) ?? 0) + 1);
  return a.filter((x) => {
    const n = counts.get(x) ?? 0;
    if (n > 0) {
      counts.set(x, n - 1);
      return false;
    }
    return true;
  });
}
