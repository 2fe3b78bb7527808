// `npm run bench`: symroute side by side with iproute2 on the real kernel, in namespaces.
// One run measures every figure of BENCHMARKS.md as min / median / max over interleaved
// repetitions, each with its reference measured in the same run, prints them with PASS/MISS
// against the goals, and writes bench/results.json and the figures part of BENCHMARKS.md.
// Nothing here asserts: tests never judge time, this only reports. Run as root.
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { NetnsLab } from '../../src/lab/netns.js';
import { markdownProfile, summariseProfile, type ProfileSummary } from './cpu-profile.js';
import { CLI, Daemon, REPO, scheduling, threadCpuMs, type StageRecord } from './daemon.js';
import { Figures, markdownTable, percentile, spread, type Figure } from './figures.js';
import { addressKey, Monitor, realtimeMs, routeKey, ruleKey, spawnAndWait } from './monitor.js';
import {
  addBulkRoutes,
  buildWorld,
  deleting,
  eventAddress,
  ipBatch,
  ipBatchByFamily,
  nicIPv4,
  ownedObjects,
  type World,
} from './world.js';

const run = promisify(execFile);
const TABLE_BASE = 1000; // symroute's default table.base: NIC k's table is 1000 + ifindex
const BIG = 1000;
const COLD_START_REPS = { 100: 3, [BIG]: 3 } as const;
const EVENT_ROUNDS = 5;
const EVENTS_PER_ROUND = 10;
const FOREIGN_ROUTES = 100_000;
const FOREIGN_NICS = 10;
const FOREIGN_ROUNDS = 5;
const FOREIGN_EVENTS_PER_ROUND = 10;
const BURST_REPS = 3;
const PROFILED_EVENTS = 10;
const IDLE_WINDOWS = 3;
const IDLE_WINDOW_MS = 10_000;
const HELP_REPS = 10;

const dir = mkdtempSync(join(tmpdir(), 'symroute-bench-'));
const lab = new NetnsLab('srb');
const figures = new Figures();
const daemons: Daemon[] = [];
const monitors: Monitor[] = [];

function config(name: string, metrics: boolean): string {
  const path = join(dir, `${name}.yaml`);
  writeFileSync(path, metrics ? 'metrics:\n  listen: 127.0.0.1:9477\n' : 'metrics:\n  listen: false\n');
  return path;
}

function startDaemon(world: World, configPath: string, nodeArgs: string[] = []): Daemon {
  const daemon = new Daemon(world.ns, configPath, join(dir, `daemon-${daemons.length}.log`), nodeArgs);
  daemons.push(daemon);
  return daemon;
}

async function monitor(world: World): Promise<Monitor> {
  const m = await Monitor.start(world.ns, 'n0', join(dir, `monitor-${monitors.length}.txt`));
  monitors.push(m);
  return m;
}

const ms = (seconds: number) => seconds * 1000;
const tableOf = (world: World, k: number) => TABLE_BASE + world.ifindex[k]!;
const ratios = (a: readonly number[], b: readonly number[]) => a.map((x, i) => x / b[i]!);
const began = performance.now();
const section = (title: string) => console.log(`\n== ${title} (at ${((performance.now() - began) / 1000).toFixed(0)} s)`);

// ---------------------------------------------------------------------------------------
// symroute --help against node -e 0: whole processes, CPU from wait4(2).

async function startupCost(): Promise<void> {
  section('symroute --help vs node -e 0');
  const { stdout } = await run('python3', [
    join(REPO, 'test/bench/rusage.py'),
    String(HELP_REPS),
    JSON.stringify([process.execPath, CLI, '--help']),
    JSON.stringify([process.execPath, '-e', '0']),
  ]);
  const [help, bare] = JSON.parse(stdout) as Array<Array<{ wall: number; cpu: number }>>;
  // The same figure twice, once for CPU (user+sys) and once for wall time.
  for (const [what, key] of [['CPU (user+sys)', 'cpu'], ['wall', 'wall']] as const) {
    const symroute = help!.map((r) => ms(r[key]));
    const node = bare!.map((r) => ms(r[key]));
    figures.add({
      section: 'start-up',
      name: `\`symroute --help\`, ${what}`,
      unit: 'ms',
      symroute: spread(symroute),
      reference: { name: '`node -e 0`', figure: spread(node) },
      ratio: spread(ratios(symroute, node)),
      goal: { on: 'ratio', atMost: 2, text: '≤ 2× node -e 0' },
    });
  }
}

// ---------------------------------------------------------------------------------------
// Cold start: symroute's start-up convergence (from the end of its dumps to the last ACK,
// its own durationSeconds) against `ip -batch` of exactly the objects it installed, taking
// turns in the same namespace; each side starts from a kernel without them.

interface Owned {
  rules: string[];
  routes: string[];
}

async function coldStart(
  world: World,
  reps: number,
  configPath: string,
  keepLast: boolean,
  hosts = 'IPv4 + IPv6 + gateways',
): Promise<{ daemon?: Daemon; owned: Owned }> {
  section(`cold start, ${world.nics} NICs, ${hosts}`);
  const afterDumps: number[] = [];
  const total: number[] = [];
  const reference: number[] = [];
  let owned: Owned | undefined;
  const assertClean = async () => {
    const left = await ownedObjects(world.ns);
    if (left.rules.length + left.routes.length > 0) throw new Error(`${left.rules.length} rules, ${left.routes.length} routes left over`);
  };
  const symroute = async (keep: boolean) => {
    const daemon = startDaemon(world, configPath);
    await daemon.running(120_000);
    afterDumps.push(ms(daemon.durations[0]!));
    total.push(daemon.runningAt! - daemon.spawnedAt);
    const now = await ownedObjects(world.ns);
    owned ??= now;
    if (JSON.stringify(now) !== JSON.stringify(owned)) throw new Error('symroute installed different objects in two runs');
    if (keep) return daemon;
    await daemon.stop();
    await ipBatchByFamily(world.ns, deleting([...owned.rules, ...owned.routes]), dir, 'cold-del');
    await assertClean();
    return undefined;
  };
  const ipBatchReference = async () => {
    const lines = [...owned!.rules, ...owned!.routes];
    reference.push(await ipBatchByFamily(world.ns, lines, dir, 'cold-add'));
    const installed = await ownedObjects(world.ns);
    if (JSON.stringify(installed) !== JSON.stringify(owned)) throw new Error('ip -batch installed different objects than symroute');
    await ipBatchByFamily(world.ns, deleting(lines), dir, 'cold-del');
    await assertClean();
  };
  // Pairs in turn: symroute first in the first pair (the reference replays what it made),
  // then reference first, so the last run can be a daemon that stays.
  let kept: Daemon | undefined;
  for (let rep = 0; rep < reps; rep++) {
    const keep = keepLast && rep === reps - 1;
    if (rep === 0 && !keep) {
      await symroute(false);
      await ipBatchReference();
    } else {
      if (rep === 0) await symroute(false); // a single kept run still needs the objects first
      await ipBatchReference();
      kept = await symroute(keep);
    }
  }
  const pairs = reference.length;
  const objects = `${owned!.rules.length} rules + ${owned!.routes.length} routes`;
  figures.add({
    section: `cold start, ${world.nics} NICs (${hosts}: ${objects})`,
    name: 'after the dumps: symroute start-up convergence vs `ip -batch` of the same objects',
    unit: 'ms',
    symroute: spread(afterDumps),
    reference: { name: '`ip -batch`', figure: spread(reference) },
    ratio: spread(ratios(afterDumps.slice(-pairs), reference)),
    goal: { on: 'ratio', atMost: 1.1, text: '≤ 1.1× ip -batch' },
  });
  figures.add({
    section: `cold start, ${world.nics} NICs (${hosts}: ${objects})`,
    name: 'whole start: spawn to "running" (node, config, dumps, convergence)',
    unit: 'ms',
    symroute: spread(total),
  });
  return { ...(kept ? { daemon: kept } : {}), owned: owned! };
}

// ---------------------------------------------------------------------------------------
// One event: a NIC gets an address, so the desired state gains a rule, and a route unless
// the address lies inside a prefix the NIC already has. symroute's latency from outside runs
// from `ip monitor` seeing the address to it seeing the rule and the route; in-process it is
// the daemon's own durationSeconds. The reference is what a script would do per event: fork
// `ip rule add` (and `ip route add`), timed from just before the first fork to `ip monitor`
// seeing what they added.
//
// Prefix shapes, each NIC holding an IPv4 /28 and an IPv6 /64: equal (a /28 of its own),
// wider (a /24 around its /28: around 16 NICs' /28s on the 1000-NIC host), narrower (a /32
// inside its /28: a rule only), IPv6 equal (a /64 of its own) and IPv6 narrower (a /128
// inside its /64: a rule only).

interface Side {
  readonly world: World;
  readonly monitor: Monitor;
  readonly space: 'wide' | 'narrow';
  next: number;
}

interface SymSide extends Side {
  readonly daemon: Daemon;
}

type PrefixShape = 'equal' | 'wider' | 'narrower' | 'ipv6-equal' | 'ipv6-narrower';
const SHAPES: readonly PrefixShape[] = ['equal', 'wider', 'narrower', 'ipv6-equal', 'ipv6-narrower'];
const SHAPE_TITLES: Record<PrefixShape, string> = {
  equal: 'equal, an IPv4 /28 of its own (1 rule + 1 route)',
  wider: "wider, an IPv4 /24 around the NICs' /28s (1 rule + 1 route)",
  narrower: 'narrower, an IPv4 /32 inside its /28 (1 rule)',
  'ipv6-equal': 'IPv6 equal, a /64 of its own (1 rule + 1 route)',
  'ipv6-narrower': 'IPv6 narrower, a /128 inside its /64 (1 rule)',
};

interface ShapedEvent {
  readonly family: 4 | 6;
  readonly cidr: string;
  readonly address: string;
  /** The connected route symroute adds to the NIC's table, if any. */
  readonly subnet?: string;
}

const toInt = (address: string) => address.split('.').reduce((n, octet) => n * 256 + Number(octet), 0);
const toText = (n: number) => [24, 16, 8, 0].map((shift) => (n >>> shift) & 255).join('.');

/** The address NIC k gets for `shape`, in iproute2's spelling (the monitor matches text). */
function shapeEvent(k: number, shape: PrefixShape, space: Side['space']): ShapedEvent {
  const own = toInt(nicIPv4(k).address) - 2; // the NIC's /28
  const hex = k.toString(16);
  switch (shape) {
    case 'equal':
      return { family: 4, ...eventAddress(k, space) };
    case 'narrower':
      return { family: 4, cidr: `${toText(own + 9)}/32`, address: toText(own + 9) };
    case 'wider': {
      const around = own - (own % 256); // the /24 holding it; .250 is no NIC's address (theirs are 16m + 2)
      return { family: 4, cidr: `${toText(around + 250)}/24`, address: toText(around + 250), subnet: `${toText(around)}/24` };
    }
    case 'ipv6-equal':
      return { family: 6, cidr: `2001:db8:${hex}:1::2/64`, address: `2001:db8:${hex}:1::2`, subnet: `2001:db8:${hex}:1::/64` };
    case 'ipv6-narrower': {
      const address = k === 0 ? '2001:db8::9' : `2001:db8:${hex}::9`; // inet_ntop folds two or more zero groups
      return { family: 6, cidr: `${address}/128`, address };
    }
  }
}

/** What symroute adds for the event, as `ip` arguments (checked against it once, see checkShapes). */
function objectArgs(world: World, k: number, event: ShapedEvent): string[][] {
  const table = String(tableOf(world, k));
  const family = `-${event.family}`;
  const rule = [family, 'rule', 'add', 'from', event.address, 'lookup', table, 'pref', '30000', 'proto', '83'];
  if (!event.subnet) return [rule];
  const via = event.family === 4 ? ['scope', 'link', 'src', event.address] : ['src', event.address, 'metric', '1024'];
  return [rule, [family, 'route', 'add', event.subnet, 'dev', `n${k}`, 'table', table, 'proto', '83', ...via]];
}

const addressArgs = (event: ShapedEvent, verb: 'add' | 'del', k: number) => [
  'addr',
  verb,
  event.cidr,
  'dev',
  `n${k}`,
  ...(verb === 'add' && event.family === 6 ? ['nodad'] : []),
];

const eventKeys = (world: World, k: number, event: ShapedEvent) => [
  ruleKey(event.address),
  ...(event.subnet ? [routeKey(event.subnet, tableOf(world, k))] : []),
];

interface EventSample {
  /** ms from `ip monitor` seeing the address (symroute) or from the first fork (reference) to it seeing all objects. */
  readonly outside: number;
  /** symroute's own durationSeconds, ms. */
  readonly inProcess?: number;
  /** The daemon's stage times (µs) of the two convergences (address added, removed). */
  readonly stages?: readonly StageRecord[];
  /** CPU of the daemon's main thread per convergence, µs (schedstat, the add and the delete halved). */
  readonly cpuUs?: number;
}

async function symrouteEvent(side: SymSide, shape: PrefixShape = 'equal'): Promise<EventSample> {
  const { world, monitor: m, daemon } = side;
  const k = side.next++ % world.nics;
  const event = shapeEvent(k, shape, side.space);
  const keys = [addressKey(event.cidr), ...eventKeys(world, k, event)];
  const cursors = keys.map((key) => m.seenCount(key));
  const converged = daemon.durations.length;
  const cpuBefore = threadCpuMs(daemon.pid);
  await spawnAndWait('ip', ['-n', world.ns, ...addressArgs(event, 'add', k)]);
  const [address, ...objects] = await Promise.all(keys.map((key, i) => m.next(key, false, cursors[i]!)));
  const inProcess = ms(await daemon.convergence(converged));
  // Undo, and wait for symroute to have undone its part too.
  await spawnAndWait('ip', ['-n', world.ns, ...addressArgs(event, 'del', k)]);
  await Promise.all(keys.slice(1).map((key, i) => m.next(key, true, cursors[i + 1]!)));
  await daemon.convergence(converged + 1);
  return {
    outside: Math.max(...objects.map((seen) => seen.at)) - address!.at,
    inProcess,
    stages: daemon.stages.slice(converged, converged + 2),
    cpuUs: ((threadCpuMs(daemon.pid) - cpuBefore) * 1000) / 2,
  };
}

async function forkingIpEvent(side: Side, shape: PrefixShape = 'equal'): Promise<EventSample> {
  const { world, monitor: m } = side;
  const k = side.next++ % world.nics;
  const event = shapeEvent(k, shape, side.space);
  const keys = eventKeys(world, k, event);
  const cursors = keys.map((key) => m.seenCount(key));
  const objects = objectArgs(world, k, event);
  await spawnAndWait('ip', ['-n', world.ns, ...addressArgs(event, 'add', k)]);
  const started = realtimeMs();
  for (const args of objects) await spawnAndWait('ip', ['-n', world.ns, ...args]);
  const seen = await Promise.all(keys.map((key, i) => m.next(key, false, cursors[i]!)));
  const outside = Math.max(...seen.map((s) => s.at)) - started;
  const undo = [...objects.map((args) => args.slice(1).join(' ').replace(/^(rule|route) add /, '$1 del ')), addressArgs(event, 'del', k).join(' ')];
  await ipBatch(world.ns, undo, dir, 'event-undo', [`-${event.family}`]);
  return { outside };
}

/** Each shape once on `side`: what symroute added must be what the reference adds. */
async function checkShapes(side: SymSide): Promise<void> {
  for (const shape of SHAPES) {
    const k = side.next % side.world.nics;
    const before = await ownedObjects(side.world.ns);
    const { daemon } = side;
    const converged = daemon.durations.length;
    const event = shapeEvent(k, shape, side.space);
    await spawnAndWait('ip', ['-n', side.world.ns, ...addressArgs(event, 'add', k)]);
    await daemon.convergence(converged);
    const after = await ownedObjects(side.world.ns);
    const added = [...after.rules, ...after.routes].filter((line) => !before.rules.includes(line) && !before.routes.includes(line));
    const expected = objectArgs(side.world, k, event).map((args) => args.join(' '));
    await spawnAndWait('ip', ['-n', side.world.ns, ...addressArgs(event, 'del', k)]);
    await daemon.convergence(converged + 1);
    if (JSON.stringify(added.sort()) !== JSON.stringify(expected.sort())) {
      throw new Error(`${shape}: symroute added ${JSON.stringify(added)}, the reference would add ${JSON.stringify(expected)}`);
    }
  }
}

const perRound = (rounds: readonly (readonly number[])[], p: number) => rounds.map((samples) => percentile(samples, p));
/** Per round, `pick` of each sample that has it. */
const roundsOf = (rounds: readonly (readonly EventSample[])[], pick: (s: EventSample) => number | undefined) =>
  rounds.map((samples) => samples.map(pick).filter((v): v is number => v !== undefined));

/** Runs `rounds` rounds; in each, every stream takes `events` turns, one event at a time in turn. Per stream, per round, the samples. */
async function interleavedEvents(streams: ReadonlyArray<() => Promise<EventSample>>, rounds: number, events: number): Promise<EventSample[][][]> {
  const results: EventSample[][][] = streams.map(() => []);
  for (let round = 0; round < rounds; round++) {
    for (const r of results) r.push([]);
    for (let e = 0; e < events; e++) {
      for (const [i, stream] of streams.entries()) results[i]![round]!.push(await stream());
    }
  }
  return results;
}

const FORK_NAME = { 1: 'fork `ip rule add`', 2: 'fork `ip rule add` + `ip route add`' } as const;

/**
 * The matrix: every shape on the 1-NIC and the 1000-NIC host, symroute and the forking
 * script each, all in the same rounds, one event at a time in turn.
 */
async function eventMatrix(one: { sym: SymSide; ref: Side }, big: { sym: SymSide; ref: Side }): Promise<void> {
  section(`events by prefix shape, 1 and ${BIG} NICs, vs forking ip`);
  await checkShapes(one.sym);
  const streams = SHAPES.flatMap((shape) => [
    () => symrouteEvent(one.sym, shape),
    () => forkingIpEvent(one.ref, shape),
    () => symrouteEvent(big.sym, shape),
    () => forkingIpEvent(big.ref, shape),
  ]);
  const results = await interleavedEvents(streams, EVENT_ROUNDS, EVENTS_PER_ROUND);
  for (const [s, shape] of SHAPES.entries()) {
    const [sym1, ref1, symBig, refBig] = results.slice(4 * s, 4 * s + 4) as [EventSample[][], EventSample[][], EventSample[][], EventSample[][]];
    const title = `event by prefix shape: ${SHAPE_TITLES[shape]}`;
    const inProcess1 = roundsOf(sym1, (e) => e.inProcess);
    const inProcessBig = roundsOf(symBig, (e) => e.inProcess);
    for (const p of [50, 99]) {
      figures.add({
        section: title,
        name: `in-process p${p} (symroute_convergence_seconds), ${BIG} NICs ÷ 1 NIC`,
        unit: 'ms',
        symroute: spread(perRound(inProcessBig, p)),
        reference: { name: '1 NIC', figure: spread(perRound(inProcess1, p)) },
        ratio: spread(ratios(perRound(inProcessBig, p), perRound(inProcess1, p))),
        ...(p === 50 ? { goal: { on: 'ratio', atMost: 1.2, text: '≤ 1.2× of 1 NIC' } as const } : {}),
        ...(p === 99 && shape === 'equal' ? { goal: { on: 'symroute', atMost: 1, text: `p99 ≤ 1 ms (${BIG} NICs)` } as const } : {}),
      });
    }
    for (const [nics, samples] of [[1, inProcess1], [BIG, inProcessBig]] as const) {
      figures.add({
        section: title,
        name: `in-process p99 ÷ p50 (per round), ${nics} NIC${nics > 1 ? 's' : ''}`,
        unit: '×',
        symroute: spread(ratios(perRound(samples, 99), perRound(samples, 50))),
        goal: { on: 'symroute', atMost: 2, text: 'p99 ≤ 2× p50' },
      });
    }
    const objects = objectArgs(one.ref.world, 0, shapeEvent(0, shape, one.ref.space)).length as 1 | 2;
    for (const [nics, sym, ref] of [[1, sym1, ref1], [BIG, symBig, refBig]] as const) {
      for (const p of [50, 99]) {
        const outside = perRound(roundsOf(sym, (e) => e.outside), p);
        const fork = perRound(roundsOf(ref, (e) => e.outside), p);
        figures.add({
          section: title,
          name: `from outside p${p}, ${nics} NIC${nics > 1 ? 's' : ''} (ip monitor: address seen → all seen)`,
          unit: 'ms',
          symroute: spread(outside),
          reference: { name: FORK_NAME[objects], figure: spread(fork) },
          ratio: spread(ratios(outside, fork)),
          ...(p === 50 ? { goal: { on: 'ratio', atMost: 0.2, text: '≥ 5× faster (≤ 0.2×)' } as const } : {}),
        });
      }
    }
    if (shape === 'equal') eventStages(sym1, symBig);
  }
}

/**
 * CPU per event by stage, from the daemon's own stage times (stageMicros of its convergence
 * lines, main-thread time; see src/control/stages.ts) and the main thread's CPU from
 * schedstat around each event, per convergence (an address added, or removed): medians of
 * the per-round medians, 1000 NICs against 1 NIC.
 */
function eventStages(one: EventSample[][], big: EventSample[][]): void {
  const title = `CPU per event by stage (an address in a /28 of its own added or removed; the daemon's own stage times), ${BIG} NICs against 1 NIC`;
  const perConvergence = (rounds: EventSample[][], pick: (stages: StageRecord) => number) =>
    rounds.map((samples) => percentile(samples.flatMap((s) => (s.stages ?? []).map(pick)), 50));
  const rows: Array<[string, (stages: StageRecord) => number]> = [
    ...STAGE_NAMES.map((stage) => [stage, (stages: StageRecord) => stages[stage] ?? 0] as [string, (stages: StageRecord) => number]),
    ['all stages', (stages: StageRecord) => Object.values(stages).reduce((sum, us) => sum + us, 0)],
  ];
  const staged = Object.keys(one[0]?.[0]?.stages?.[0] ?? {}).length > 0;
  if (!staged) console.log('  (this build logs no stage times)');
  for (const [name, pick] of staged ? rows : []) {
    const [small, large] = [perConvergence(one, pick), perConvergence(big, pick)];
    figures.add({
      section: title,
      name,
      unit: 'µs',
      symroute: spread(large),
      reference: { name: '1 NIC', figure: spread(small) },
    });
  }
  const cpu = (rounds: EventSample[][]) => perRound(roundsOf(rounds, (e) => e.cpuUs), 50);
  figures.add({
    section: title,
    name: 'main thread CPU per convergence (schedstat: stages, verification, timers, GC)',
    unit: 'µs',
    symroute: spread(cpu(big)),
    reference: { name: '1 NIC', figure: spread(cpu(one)) },
  });
}

const STAGE_NAMES = ['receive', 'plan', 'diff', 'apply', 'host', 'report'] as const;

// ---------------------------------------------------------------------------------------
// 100k routes in main and 100k in a foreign table: the same events on a host with them and
// on one without, taking turns; memory of the two daemons.

async function foreignRoutes(withRoutes: SymSide, without: SymSide): Promise<void> {
  section(`${FOREIGN_ROUTES} main + ${FOREIGN_ROUTES} foreign-table routes vs none, ${FOREIGN_NICS} NICs`);
  const [bulk, bare] = await interleavedEvents([() => symrouteEvent(withRoutes), () => symrouteEvent(without)], FOREIGN_ROUNDS, FOREIGN_EVENTS_PER_ROUND);
  const title = `${FOREIGN_ROUTES / 1000}k routes in main + ${FOREIGN_ROUTES / 1000}k in a foreign table, ${FOREIGN_NICS} NICs`;
  const goal = { on: 'ratio', atMost: 1.1, text: '≤ 1.1× of none' } as const;
  for (const [name, pick] of [
    ['event in-process p50', (r: EventSample[][]) => perRound(roundsOf(r, (e) => e.inProcess), 50)],
    ['event in-process p99', (r: EventSample[][]) => perRound(roundsOf(r, (e) => e.inProcess), 99)],
    ['event from outside p50', (r: EventSample[][]) => perRound(roundsOf(r, (e) => e.outside), 50)],
  ] as const) {
    figures.add({
      section: title,
      name,
      unit: 'ms',
      symroute: spread(pick(bulk!)),
      reference: { name: 'no extra routes', figure: spread(pick(bare!)) },
      ratio: spread(ratios(pick(bulk!), pick(bare!))),
      ...(name.endsWith('p50') ? { goal } : {}),
    });
  }
  const [withRss, withoutRss] = [withRoutes.daemon.memory().rss, without.daemon.memory().rss];
  figures.add({
    section: title,
    name: 'RSS after the events',
    unit: 'MiB',
    symroute: spread([withRss]),
    reference: { name: 'no extra routes', figure: spread([withoutRss]) },
  });
  figures.add({
    section: title,
    name: 'RSS the routes add',
    unit: 'MiB',
    symroute: spread([withRss - withoutRss]),
    goal: { on: 'symroute', atMost: 30, text: '≤ +30 MiB' },
  });
}

// ---------------------------------------------------------------------------------------
// A burst: every NIC of the big host gets an address in a new subnet in one `ip -batch`.
// symroute: from `ip monitor` seeing the last address to it seeing the last rule or route.
// Reference: `ip -batch` of the same rules and routes, after the same addresses landed.

async function burst(sym: SymSide, ref: Side): Promise<void> {
  section(`burst of ${BIG} addresses`);
  const { world: symWorld, monitor: m, daemon } = sym;
  const afterLast: number[] = [];
  const inProcess: number[] = [];
  const reference: number[] = [];
  const complaints: number[] = [];
  const addressLines = (world: World, verb: 'add' | 'del') =>
    Array.from({ length: world.nics }, (_, k) => `addr ${verb} ${eventAddress(k).cidr} dev n${k}`);
  const objectLines = (world: World) =>
    Array.from({ length: world.nics }, (_, k) => {
      const event = eventAddress(k);
      const table = tableOf(world, k);
      return [
        `-4 rule add from ${event.address} lookup ${table} pref 30000 proto 83`,
        `-4 route add ${event.subnet} dev n${k} table ${table} proto 83 scope link src ${event.address}`,
      ];
    }).flat();
  const baselineRules = (await ownedObjects(ref.world.ns)).rules.length;
  for (let rep = 0; rep < BURST_REPS; rep++) {
    // symroute
    const keys = Array.from({ length: symWorld.nics }, (_, k) => {
      const event = eventAddress(k);
      return [addressKey(event.cidr), ruleKey(event.address), routeKey(event.subnet, tableOf(symWorld, k))] as const;
    });
    const cursors = keys.map((ks) => ks.map((key) => m.seenCount(key)));
    const converged = daemon.durations.length;
    const complained = daemon.complaints.length;
    await ipBatch(symWorld.ns, addressLines(symWorld, 'add'), dir, 'burst-add');
    let lastAddress = 0;
    let lastObject = 0;
    for (const [k, ks] of keys.entries()) {
      const [a, r, ro] = await Promise.all(ks.map((key, i) => m.next(key, false, cursors[k]![i]!)));
      lastAddress = Math.max(lastAddress, a!.at);
      lastObject = Math.max(lastObject, r!.at, ro!.at);
    }
    afterLast.push(lastObject - lastAddress);
    await daemon.convergence(converged);
    await settle(daemon);
    inProcess.push(ms(Math.max(...daemon.durations.slice(converged))));
    complaints.push(daemon.complaints.length - complained);
    const removed = daemon.durations.length;
    await ipBatch(symWorld.ns, addressLines(symWorld, 'del'), dir, 'burst-del');
    for (const [k, ks] of keys.entries()) await Promise.all(ks.slice(1).map((key, i) => m.next(key, true, cursors[k]![i + 1]!)));
    await daemon.convergence(removed);
    await settle(daemon);
    // reference
    await ipBatch(ref.world.ns, addressLines(ref.world, 'add'), dir, 'burst-add');
    const lines = objectLines(ref.world);
    reference.push(await ipBatchByFamily(ref.world.ns, lines, dir, 'burst-objects'));
    const installed = await ownedObjects(ref.world.ns);
    const expected = baselineRules + lines.filter((line) => line.includes(' rule ')).length;
    if (installed.rules.length !== expected) throw new Error(`reference burst: ${installed.rules.length} rules, expected ${expected}`);
    await ipBatchByFamily(ref.world.ns, deleting(lines), dir, 'burst-objects-del');
    await ipBatch(ref.world.ns, addressLines(ref.world, 'del'), dir, 'burst-del');
  }
  const title = `burst: ${BIG} NICs each get an address in a new subnet in one \`ip -batch\` (${BIG} rules + ${BIG} routes)`;
  figures.add({
    section: title,
    name: 'converged after the last address landed (ip monitor) vs `ip -batch` of the same rules and routes',
    unit: 'ms',
    symroute: spread(afterLast),
    reference: { name: '`ip -batch`', figure: spread(reference) },
    ratio: spread(ratios(afterLast, reference)),
    goal: { on: 'ratio', atMost: 1.2, text: '≤ 1.2× ip -batch' },
  });
  figures.add({ section: title, name: 'in-process: first address read → last ACK', unit: 'ms', symroute: spread(inProcess) });
  figures.add({
    section: title,
    name: 'warn/error log lines per burst (nobody else wrote anything)',
    unit: 'lines',
    symroute: spread(complaints),
    goal: { on: 'symroute', atMost: 0, text: 'none' },
  });
}

/** Waits until the daemon has logged no convergence for 300 ms (a verify pass may follow). */
async function settle(daemon: Daemon): Promise<void> {
  for (;;) {
    const count = daemon.durations.length;
    await new Promise((resolve) => setTimeout(resolve, 300));
    if (daemon.durations.length === count) return;
  }
}

// ---------------------------------------------------------------------------------------
// Idle: wake-ups and CPU of converged daemons with nothing happening, next to a bare Node.js
// process kept alive by one far-away timer, all measured over the same windows.

async function idle(served: Daemon, quiet: Daemon, servedWorld: World): Promise<void> {
  section('idle');
  // A scrape first, so collectors measured at scrape time have run.
  await run('ip', ['netns', 'exec', servedWorld.ns, 'curl', '-sf', '-o', '/dev/null', 'http://127.0.0.1:9477/metrics']);
  const bare = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 2 ** 31 - 1)'], { stdio: 'ignore' });
  try {
    // Let the work before (and V8's memory reducer, which runs once the heap stops growing) end.
    await new Promise((resolve) => setTimeout(resolve, 5000));
    const pids = { served: served.pid, quiet: quiet.pid, bare: bare.pid! };
    const wakeups: Record<keyof typeof pids, number[]> = { served: [], quiet: [], bare: [] };
    const cpu: Record<keyof typeof pids, number[]> = { served: [], quiet: [], bare: [] };
    for (let window = 0; window < IDLE_WINDOWS; window++) {
      const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, scheduling(pid)]));
      await new Promise((resolve) => setTimeout(resolve, IDLE_WINDOW_MS));
      for (const [k, pid] of Object.entries(pids) as Array<[keyof typeof pids, number]>) {
        const after = scheduling(pid);
        wakeups[k].push((after.wakeups - before[k]!.wakeups) / (IDLE_WINDOW_MS / 1000));
        cpu[k].push((after.cpuMs - before[k]!.cpuMs) * (60_000 / IDLE_WINDOW_MS));
      }
    }
    const reference = { name: 'bare `node` with one timer', figure: spread(wakeups.bare) };
    const goal = { on: 'symroute', atMost: 1, text: '≤ 1 wake-up/s' } as const;
    const title = `idle (${IDLE_WINDOWS} windows of ${IDLE_WINDOW_MS / 1000} s; all threads)`;
    figures.add({ section: title, name: `wake-ups, ${BIG} NICs, metrics served (after a scrape)`, unit: '/s', symroute: spread(wakeups.served), reference, goal });
    figures.add({ section: title, name: 'wake-ups, 1 NIC, metrics.listen: false', unit: '/s', symroute: spread(wakeups.quiet), reference, goal });
    const cpuReference = { name: 'bare `node` with one timer', figure: spread(cpu.bare) };
    figures.add({ section: title, name: `CPU, ${BIG} NICs, metrics served`, unit: 'ms/min', symroute: spread(cpu.served), reference: cpuReference });
    figures.add({ section: title, name: 'CPU, 1 NIC, metrics.listen: false', unit: 'ms/min', symroute: spread(cpu.quiet), reference: cpuReference });
    const memory = served.memory();
    const bareRss = Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${bare.pid}/status`, 'utf8'))![1]) / 1024;
    const memoryTitle = `memory, ${BIG} NICs, after cold start, events and bursts`;
    figures.add({ section: memoryTitle, name: 'RSS', unit: 'MiB', symroute: spread([memory.rss]), reference: { name: 'bare `node`', figure: spread([bareRss]) } });
    figures.add({ section: memoryTitle, name: 'peak RSS (VmHWM)', unit: 'MiB', symroute: spread([memory.peak]) });
  } finally {
    bare.kill();
  }
}

// ---------------------------------------------------------------------------------------
// Where the time goes: one more daemon on the big host under --cpu-prof, through a cold
// start, a round of events and a burst.

async function profile(world: World, owned: Owned, worldMonitor: Monitor): Promise<ProfileSummary> {
  section('profile (--cpu-prof)');
  const profileDir = join(dir, 'profile');
  mkdirSync(profileDir);
  const daemon = startDaemon(world, config('profiled', false), ['--cpu-prof', `--cpu-prof-dir=${profileDir}`]);
  await daemon.running(120_000);
  const sym: SymSide = { world, monitor: worldMonitor, daemon, space: 'wide', next: 0 };
  for (let e = 0; e < PROFILED_EVENTS; e++) await symrouteEvent(sym);
  await burstOnce(sym);
  await daemon.stop('SIGTERM'); // the profile is written on a clean exit
  await ipBatchByFamily(world.ns, deleting([...owned.rules, ...owned.routes]), dir, 'profile-del');
  const [file] = readdirSync(profileDir).filter((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error('node wrote no .cpuprofile');
  return summariseProfile(join(profileDir, file), REPO);
}

/** One symroute burst and its undoing, without figures (for the profile). */
async function burstOnce(sym: SymSide): Promise<void> {
  const { world, monitor: m, daemon } = sym;
  const keys = Array.from({ length: world.nics }, (_, k) => {
    const event = eventAddress(k);
    return [ruleKey(event.address), routeKey(event.subnet, tableOf(world, k))] as const;
  });
  const cursors = keys.map((ks) => ks.map((key) => m.seenCount(key)));
  const lines = (verb: string) => Array.from({ length: world.nics }, (_, k) => `addr ${verb} ${eventAddress(k).cidr} dev n${k}`);
  await ipBatch(world.ns, lines('add'), dir, 'profile-burst-add');
  for (const [k, ks] of keys.entries()) await Promise.all(ks.map((key, i) => m.next(key, false, cursors[k]![i]!)));
  await settle(daemon);
  await ipBatch(world.ns, lines('del'), dir, 'profile-burst-del');
  for (const [k, ks] of keys.entries()) await Promise.all(ks.map((key, i) => m.next(key, true, cursors[k]![i]!)));
  await settle(daemon);
}

// ---------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------
// Reply-path verification at 1000 NICs: `symroute verify` (dump, plan, every lookup) against
// `ip -batch` of the very same `route get` lines, whole processes, interleaved.

const VERIFY_REPS = 3;

async function verifyCost(world: World): Promise<void> {
  section(`reply-path verification, ${world.nics} NICs`);
  const verifyOnce = async () => {
    const started = performance.now();
    const { stdout } = await run('ip', ['netns', 'exec', world.ns, process.execPath, CLI, 'verify', '--json', '--config', config('verify', false)], {
      maxBuffer: 1 << 30,
    }).catch((error: { stdout: string }) => ({ stdout: error.stdout }));
    return { ms: performance.now() - started, answer: JSON.parse(stdout) as { ok: boolean; paths: Array<{ direction: string; address: string; peer: string; ifname: string; ok: boolean }> } };
  };
  const { answer } = await verifyOnce();
  const lines = answer.paths.map((p) =>
    p.direction === 'egress' ? `route get ${p.peer} from ${p.address}` : `route get ${p.address} from ${p.peer} iif ${p.ifname}`,
  );
  console.log(`  ${answer.paths.length} lookups, ${answer.paths.filter((p) => !p.ok).length} broken`);
  const sym: number[] = [];
  const ref: number[] = [];
  for (let i = 0; i < VERIFY_REPS; i++) {
    sym.push((await verifyOnce()).ms);
    ref.push(await ipBatch(world.ns, lines, dir, 'verify', ['-force']));
  }
  figures.add({
    section: `reply-path verification, ${world.nics} NICs (IPv4 + IPv6 + gateways: ${answer.paths.length} lookups)`,
    name: 'symroute verify (dump, plan, all lookups) vs ip -batch of the same route gets',
    unit: 'ms',
    symroute: spread(sym),
    reference: { name: 'ip -batch', figure: spread(ref) },
    ratio: spread(ratios(sym, ref)),
  });
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const load = loadavg();
  await startupCost();

  const quietConfig = config('quiet', false);
  const servedConfig = config('served', true);

  const hundred = await buildWorld(lab, 'c', 100, dir);
  await coldStart(hundred, COLD_START_REPS[100], quietConfig, false);

  const big = await buildWorld(lab, 'b', BIG, dir);
  const bigRef = await buildWorld(lab, 'B', BIG, dir);
  const { daemon: bigDaemon, owned: bigOwned } = await coldStart(big, COLD_START_REPS[BIG], servedConfig, true);
  const ipv4Only = await buildWorld(lab, 'v', BIG, dir, { ipv6: false, gateways: false });
  await coldStart(ipv4Only, COLD_START_REPS[BIG], quietConfig, false, 'IPv4 only, no gateways');
  await run('ip', ['netns', 'del', ipv4Only.ns]);
  await verifyCost(big);
  // The reference host holds the same objects symroute keeps on the big host.
  await ipBatchByFamily(bigRef.ns, [...bigOwned.rules, ...bigOwned.routes], dir, 'baseline');

  const one = await buildWorld(lab, 'o', 1, dir);
  const oneRef = await buildWorld(lab, 'O', 1, dir);
  const oneDaemon = startDaemon(one, quietConfig);
  await oneDaemon.running();
  const oneOwned = await ownedObjects(one.ns);
  await ipBatchByFamily(oneRef.ns, [...oneOwned.rules, ...oneOwned.routes], dir, 'baseline');

  const bigMonitor = await monitor(big);
  const bigSide: SymSide = { world: big, monitor: bigMonitor, daemon: bigDaemon!, space: 'wide', next: 0 };
  const bigRefSide: Side = { world: bigRef, monitor: await monitor(bigRef), space: 'wide', next: 0 };
  const oneSide: SymSide = { world: one, monitor: await monitor(one), daemon: oneDaemon, space: 'wide', next: 0 };
  const oneRefSide: Side = { world: oneRef, monitor: await monitor(oneRef), space: 'wide', next: 0 };
  await eventMatrix({ sym: oneSide, ref: oneRefSide }, { sym: bigSide, ref: bigRefSide });

  await burst(bigSide, bigRefSide);
  await idle(bigDaemon!, oneDaemon, big);

  const foreign = await buildWorld(lab, 'f', FOREIGN_NICS, dir);
  await addBulkRoutes(foreign, 'main', 0, FOREIGN_ROUTES, dir);
  await addBulkRoutes(foreign, '500', 1, FOREIGN_ROUTES, dir);
  const plain = await buildWorld(lab, 'p', FOREIGN_NICS, dir);
  const foreignDaemon = startDaemon(foreign, quietConfig);
  const plainDaemon = startDaemon(plain, quietConfig);
  await Promise.all([foreignDaemon.running(120_000), plainDaemon.running()]);
  await foreignRoutes(
    { world: foreign, monitor: await monitor(foreign), daemon: foreignDaemon, space: 'narrow', next: 0 },
    { world: plain, monitor: await monitor(plain), daemon: plainDaemon, space: 'narrow', next: 0 },
  );
  await Promise.all([foreignDaemon.stop(), plainDaemon.stop(), oneDaemon.stop()]);

  await bigDaemon!.stop();
  await ipBatchByFamily(big.ns, deleting([...bigOwned.rules, ...bigOwned.routes]), dir, 'big-del');
  const where = await profile(big, bigOwned, bigMonitor);

  const seconds = (performance.now() - began) / 1000;
  const machine = {
    // What was measured: the commit the build baked into dist/ (scripts/write-build-info.mjs).
    build: (JSON.parse(readFileSync(join(REPO, 'dist/build-info.json'), 'utf8')) as { commit: string }).commit,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    kernel: release(),
    node: process.version,
    loadAverageAtStart: load.map((l) => Number(l.toFixed(2))),
    loadAverageAtEnd: loadavg().map((l) => Number(l.toFixed(2))),
  };
  writeResults({ startedAt: startedAt.toISOString(), seconds, machine, figures: figures.all, profile: where });
  console.log(`\nbench took ${seconds.toFixed(0)} s; wrote bench/results.json and BENCHMARKS.md`);
}

function writeResults(results: {
  startedAt: string;
  seconds: number;
  machine: Record<string, unknown>;
  figures: readonly Figure[];
  profile: ProfileSummary;
}): void {
  mkdirSync(join(REPO, 'bench'), { recursive: true });
  writeFileSync(join(REPO, 'bench/results.json'), `${JSON.stringify(results, null, 2)}\n`);
  const misses = results.figures.filter((f) => f.verdict === 'MISS').length;
  const judged = results.figures.filter((f) => f.verdict).length;
  const generated = [
    BEGIN,
    `Measured ${results.startedAt.slice(0, 16).replace('T', ' ')} UTC by \`npm run bench\` (${results.seconds.toFixed(0)} s), symroute built from ${String(results.machine.build).slice(0, 7)}:`,
    `${results.machine.cpus} × ${results.machine.cpuModel}, Linux ${results.machine.kernel}, Node.js ${results.machine.node},`,
    `load average (1 / 5 / 15 min) ${(results.machine.loadAverageAtStart as number[]).join(' / ')} at start, ${(results.machine.loadAverageAtEnd as number[]).join(' / ')} at the end. ${judged - misses} of ${judged} goals met.`,
    '',
    markdownTable(results.figures),
    '',
    `### Profile: self time of a daemon under \`--cpu-prof\` (${BIG} NICs: cold start, ${PROFILED_EVENTS} events, one burst; ${results.profile.busyMs.toFixed(0)} ms busy)`,
    '',
    markdownProfile(results.profile),
    END,
  ].join('\n');
  const path = join(REPO, 'BENCHMARKS.md');
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    text = `# Benchmarks\n\n${BEGIN}\n${END}\n`;
  }
  const begin = text.indexOf(BEGIN);
  const end = text.indexOf(END);
  if (begin < 0 || end < begin) throw new Error(`BENCHMARKS.md lacks the ${BEGIN} … ${END} markers`);
  writeFileSync(path, text.slice(0, begin) + generated + text.slice(end + END.length));
}

const BEGIN = '<!-- figures: written by npm run bench -->';
const END = '<!-- end of figures -->';

try {
  await main();
} finally {
  await Promise.all(monitors.map((m) => m.stop()));
  await Promise.all(daemons.map((d) => d.stop('SIGKILL')));
  await lab.removeNamespaces();
  rmSync(dir, { recursive: true, force: true });
}
