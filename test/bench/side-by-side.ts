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
import { CLI, Daemon, REPO, scheduling } from './daemon.js';
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
const COLD_START_REPS = { 100: 5, [BIG]: 3 } as const;
const EVENT_ROUNDS = 5;
const EVENTS_PER_ROUND = 20;
const FOREIGN_ROUTES = 100_000;
const FOREIGN_NICS = 10;
const FOREIGN_ROUNDS = 5;
const FOREIGN_EVENTS_PER_ROUND = 10;
const BURST_REPS = 3;
const PROFILED_EVENTS = 10;
const IDLE_WINDOWS = 3;
const IDLE_WINDOW_MS = 10_000;
const HELP_REPS = 15;

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

async function coldStart(world: World, reps: number, configPath: string, keepLast: boolean): Promise<{ daemon?: Daemon; owned: Owned }> {
  section(`cold start, ${world.nics} NICs`);
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
    section: `cold start, ${world.nics} NICs (IPv4 + IPv6 + gateways: ${objects})`,
    name: 'after the dumps: symroute start-up convergence vs `ip -batch` of the same objects',
    unit: 'ms',
    symroute: spread(afterDumps),
    reference: { name: '`ip -batch`', figure: spread(reference) },
    ratio: spread(ratios(afterDumps.slice(-pairs), reference)),
    goal: { on: 'ratio', atMost: 1.1, text: '≤ 1.1× ip -batch' },
  });
  figures.add({
    section: `cold start, ${world.nics} NICs (IPv4 + IPv6 + gateways: ${objects})`,
    name: 'whole start: spawn to "running" (node, config, dumps, convergence)',
    unit: 'ms',
    symroute: spread(total),
  });
  return { ...(kept ? { daemon: kept } : {}), owned: owned! };
}

// ---------------------------------------------------------------------------------------
// One event: a NIC gets an address in a new subnet, so the desired state gains a rule and
// a route. symroute's latency from outside runs from `ip monitor` seeing the address to it
// seeing both the rule and the route; in-process it is the daemon's own durationSeconds.
// The reference is what a script would do per event: fork `ip rule add` and `ip route add`,
// timed from just before the first fork to `ip monitor` seeing both.

interface Side {
  readonly world: World;
  readonly monitor: Monitor;
  readonly space: 'wide' | 'narrow';
  next: number;
}

interface SymSide extends Side {
  readonly daemon: Daemon;
}

async function symrouteEvent(side: SymSide): Promise<{ outside: number; inProcess: number }> {
  const { world, monitor: m, daemon } = side;
  const k = side.next++ % world.nics;
  const event = eventAddress(k, side.space);
  const table = tableOf(world, k);
  const keys = [addressKey(event.cidr), ruleKey(event.address), routeKey(event.subnet, table)] as const;
  const cursors = keys.map((key) => m.seenCount(key));
  const converged = daemon.durations.length;
  await spawnAndWait('ip', ['-n', world.ns, 'addr', 'add', event.cidr, 'dev', `n${k}`]);
  const [address, rule, route] = await Promise.all(keys.map((key, i) => m.next(key, false, cursors[i]!)));
  const inProcess = ms(await daemon.convergence(converged));
  // Undo, and wait for symroute to have undone its part too.
  await spawnAndWait('ip', ['-n', world.ns, 'addr', 'del', event.cidr, 'dev', `n${k}`]);
  await Promise.all(keys.slice(1).map((key, i) => m.next(key, true, cursors[i + 1]!)));
  await daemon.convergence(converged + 1);
  return { outside: Math.max(rule!.at, route!.at) - address!.at, inProcess };
}

async function forkingIpEvent(side: Side): Promise<number> {
  const { world, monitor: m } = side;
  const k = side.next++ % world.nics;
  const event = eventAddress(k, side.space);
  const table = String(tableOf(world, k));
  const keys = [ruleKey(event.address), routeKey(event.subnet, table)];
  const cursors = keys.map((key) => m.seenCount(key));
  await spawnAndWait('ip', ['-n', world.ns, 'addr', 'add', event.cidr, 'dev', `n${k}`]);
  const started = realtimeMs();
  await spawnAndWait('ip', ['-n', world.ns, 'rule', 'add', 'from', event.address, 'lookup', table, 'pref', '30000', 'proto', '83']);
  await spawnAndWait('ip', ['-n', world.ns, 'route', 'add', event.subnet, 'dev', `n${k}`, 'table', table, 'proto', '83', 'scope', 'link', 'src', event.address]);
  const seen = await Promise.all(keys.map((key, i) => m.next(key, false, cursors[i]!)));
  const outside = Math.max(...seen.map((s) => s.at)) - started;
  await ipBatch(world.ns, [
    `rule del from ${event.address} lookup ${table} pref 30000 proto 83`,
    `route del ${event.subnet} dev n${k} table ${table} proto 83 scope link src ${event.address}`,
    `addr del ${event.cidr} dev n${k}`,
  ], dir, 'event-undo');
  return outside;
}

// ---------------------------------------------------------------------------------------
// Event cost by prefix shape, 1 and 1000 NICs (each NIC holds a /28): an address whose prefix
// is wider than the NICs' (a /24 around 16 of their /28s at 1000 NICs), equal (a /28 of its
// own: the event above), or narrower (a /32 inside the NIC's own /28: a rule, no route).

type PrefixShape = 'wider' | 'equal' | 'narrower';
const SHAPE_ROUNDS = 5;
const SHAPE_EVENTS_PER_ROUND = 10;

const toInt = (address: string) => address.split('.').reduce((n, octet) => n * 256 + Number(octet), 0);
const toText = (n: number) => [24, 16, 8, 0].map((shift) => (n >>> shift) & 255).join('.');

/** The address NIC k gets for `shape`, and the connected route symroute adds for it (none for a /32). */
function shapeEvent(k: number, shape: PrefixShape): { cidr: string; address: string; subnet?: string } {
  if (shape === 'equal') return eventAddress(k);
  const own = toInt(nicIPv4(k).address) - 2; // the NIC's /28
  if (shape === 'narrower') return { cidr: `${toText(own + 9)}/32`, address: toText(own + 9) };
  const around = own - (own % 256); // the /24 holding it; .250 is no NIC's address (theirs are 16m + 2)
  return { cidr: `${toText(around + 250)}/24`, address: toText(around + 250), subnet: `${toText(around)}/24` };
}

/** One shaped event on `side`: in-process convergence (ms), the change then undone. */
async function shapedEvent(side: SymSide, shape: PrefixShape): Promise<number> {
  const { world, monitor: m, daemon } = side;
  const k = side.next++ % world.nics;
  const event = shapeEvent(k, shape);
  const keys = [ruleKey(event.address), ...(event.subnet ? [routeKey(event.subnet, tableOf(world, k))] : [])];
  const cursors = keys.map((key) => m.seenCount(key));
  const converged = daemon.durations.length;
  await spawnAndWait('ip', ['-n', world.ns, 'addr', 'add', event.cidr, 'dev', `n${k}`]);
  await Promise.all(keys.map((key, i) => m.next(key, false, cursors[i]!)));
  const inProcess = ms(await daemon.convergence(converged));
  await spawnAndWait('ip', ['-n', world.ns, 'addr', 'del', event.cidr, 'dev', `n${k}`]);
  await Promise.all(keys.map((key, i) => m.next(key, true, cursors[i]!)));
  await daemon.convergence(converged + 1);
  return inProcess;
}

async function prefixShapes(one: SymSide, big: SymSide): Promise<void> {
  section(`event by prefix shape, 1 and ${BIG} NICs`);
  const shapes: PrefixShape[] = ['wider', 'equal', 'narrower'];
  const results = await interleavedEvents(
    shapes.flatMap((shape) => [one, big].map((side) => async () => ({ outside: 0, inProcess: await shapedEvent(side, shape) }))),
    SHAPE_ROUNDS,
    SHAPE_EVENTS_PER_ROUND,
  );
  const what = { wider: 'a /24 around the NICs\' /28s (1 rule + 1 route)', equal: 'a /28 of its own (1 rule + 1 route)', narrower: 'a /32 inside its /28 (1 rule)' };
  for (const [i, shape] of shapes.entries()) {
    const [small, large] = [results[2 * i]!, results[2 * i + 1]!];
    const title = `event by prefix shape: ${shape}, ${what[shape]}`;
    for (const p of [50, 99]) {
      figures.add({
        section: title,
        name: `in-process p${p}, ${BIG} NICs ÷ 1 NIC`,
        unit: 'ms',
        symroute: spread(perRound(large.inProcess, p)),
        reference: { name: '1 NIC', figure: spread(perRound(small.inProcess, p)) },
        ratio: spread(ratios(perRound(large.inProcess, p), perRound(small.inProcess, p))),
        ...(p === 50 ? { goal: { on: 'ratio', atMost: 1.2, text: '≤ 1.2× of 1 NIC' } as const } : {}),
      });
    }
  }
}

interface EventRounds {
  readonly outside: number[][]; // per round, per event
  readonly inProcess: number[][];
}

const perRound = (rounds: number[][], p: number) => rounds.map((samples) => percentile(samples, p));

/** Runs `rounds` rounds; in each, every stream takes `events` turns, one event at a time in turn. */
async function interleavedEvents(
  streams: ReadonlyArray<() => Promise<{ outside: number; inProcess?: number }>>,
  rounds: number,
  events: number,
): Promise<EventRounds[]> {
  const results: EventRounds[] = streams.map(() => ({ outside: [], inProcess: [] }));
  for (let round = 0; round < rounds; round++) {
    for (const r of results) r.outside.push([]), r.inProcess.push([]);
    for (let e = 0; e < events; e++) {
      for (const [i, stream] of streams.entries()) {
        const sample = await stream();
        results[i]!.outside[round]!.push(sample.outside);
        if (sample.inProcess !== undefined) results[i]!.inProcess[round]!.push(sample.inProcess);
      }
    }
  }
  return results;
}

async function eventLatency(small: { sym: SymSide; ref: Side }, big: { sym: SymSide; ref: Side }): Promise<void> {
  section(`event latency, 1 and ${BIG} NICs, vs forking ip`);
  const [sym1, ref1, symBig, refBig] = await interleavedEvents(
    [
      () => symrouteEvent(small.sym),
      async () => ({ outside: await forkingIpEvent(small.ref) }),
      () => symrouteEvent(big.sym),
      async () => ({ outside: await forkingIpEvent(big.ref) }),
    ],
    EVENT_ROUNDS,
    EVENTS_PER_ROUND,
  );
  for (const [nics, sym, ref] of [[1, sym1!, ref1!], [BIG, symBig!, refBig!]] as const) {
    const title = `event: an address in a new subnet (1 rule + 1 route), ${nics} NIC${nics > 1 ? 's' : ''}`;
    for (const p of [50, 99]) {
      figures.add({
        section: title,
        name: `in-process p${p} (symroute_convergence_seconds)`,
        unit: 'ms',
        symroute: spread(perRound(sym.inProcess, p)),
        ...(p === 99 ? { goal: { on: 'symroute', atMost: 1, text: 'p99 ≤ 1 ms' } as const } : {}),
      });
    }
    for (const p of [50, 99]) {
      figures.add({
        section: title,
        name: `from outside p${p} (ip monitor: address seen → rule and route seen)`,
        unit: 'ms',
        symroute: spread(perRound(sym.outside, p)),
        reference: { name: 'fork `ip rule add` + `ip route add`', figure: spread(perRound(ref.outside, p)) },
        ratio: spread(ratios(perRound(sym.outside, p), perRound(ref.outside, p))),
        ...(p === 50 ? { goal: { on: 'ratio', atMost: 0.2, text: '≥ 5× faster (≤ 0.2×)' } as const } : {}),
      });
    }
  }
  const title = `event: ${BIG} NICs against 1 NIC (same rounds)`;
  for (const p of [50, 99]) {
    figures.add({
      section: title,
      name: `in-process p${p}, ${BIG} NICs ÷ 1 NIC`,
      unit: 'ms',
      symroute: spread(perRound(symBig!.inProcess, p)),
      reference: { name: '1 NIC', figure: spread(perRound(sym1!.inProcess, p)) },
      ratio: spread(ratios(perRound(symBig!.inProcess, p), perRound(sym1!.inProcess, p))),
      ...(p === 50 ? { goal: { on: 'ratio', atMost: 1.2, text: '≤ 1.2× of 1 NIC' } as const } : {}),
    });
  }
}

// ---------------------------------------------------------------------------------------
// 100k routes in main and 100k in a foreign table: the same events on a host with them and
// on one without, taking turns; memory of the two daemons.

async function foreignRoutes(withRoutes: SymSide, without: SymSide): Promise<void> {
  section(`${FOREIGN_ROUTES} main + ${FOREIGN_ROUTES} foreign-table routes vs none, ${FOREIGN_NICS} NICs`);
  const [bulk, bare] = await interleavedEvents([() => symrouteEvent(withRoutes), () => symrouteEvent(without)], FOREIGN_ROUNDS, FOREIGN_EVENTS_PER_ROUND);
  const title = `${FOREIGN_ROUTES / 1000}k routes in main + ${FOREIGN_ROUTES / 1000}k in a foreign table, ${FOREIGN_NICS} NICs`;
  const goal = { on: 'ratio', atMost: 1.1, text: '≤ 1.1× of none' } as const;
  for (const [name, pick] of [
    ['event in-process p50', (r: EventRounds) => perRound(r.inProcess, 50)],
    ['event in-process p99', (r: EventRounds) => perRound(r.inProcess, 99)],
    ['event from outside p50', (r: EventRounds) => perRound(r.outside, 50)],
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

const VERIFY_REPS = 5;

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
  await eventLatency({ sym: oneSide, ref: { world: oneRef, monitor: await monitor(oneRef), space: 'wide', next: 0 } }, { sym: bigSide, ref: bigRefSide });
  await prefixShapes(oneSide, bigSide);

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
    `load average ${(results.machine.loadAverageAtStart as number[]).join(' / ')} at start. ${judged - misses} of ${judged} goals met.`,
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
