// `vite-node test/bench/ab-events.ts <other checkout>` (as root, both built; AB_SIZES,
// AB_ROUNDS and AB_EVENTS change the hosts' sizes, 1,1000, and the rounds, 5 of 10): this build's
// daemon against another build's (dist/cli.js under <other checkout>), event by event in the
// same rounds, on identical hosts of 1 and 1000 NICs: an address in a /28 of its own (equal)
// and a /24 around the NICs' /28s (wider), added and removed. Prints in-process and
// from-outside p50 and p99 (medians of per-round figures) and the main thread's CPU per
// convergence, each build's figure next to the other's: a before/after that the machine's
// load moves alike for both.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { NetnsLab } from '../../src/lab/netns.js';
import { CLI, Daemon, threadCpuMs } from './daemon.js';
import { percentile, spread } from './figures.js';
import { addressKey, Monitor, routeKey, ruleKey, spawnAndWait } from './monitor.js';
import { buildWorld, eventAddress, nicIPv4, type World } from './world.js';

const ROUNDS = Number(process.env.AB_ROUNDS ?? 5);
const EVENTS = Number(process.env.AB_EVENTS ?? 10);
const SIZES = (process.env.AB_SIZES ?? '1,1000').split(',').map(Number);
const other = resolve(process.argv[2] ?? '');
const dir = mkdtempSync(join(tmpdir(), 'symroute-ab-'));
const lab = new NetnsLab('sra');
const daemons: Daemon[] = [];
const monitors: Monitor[] = [];

type Shape = 'equal' | 'wider';
interface Host {
  readonly build: 'this' | 'other';
  readonly world: World;
  readonly daemon: Daemon;
  readonly monitor: Monitor;
  next: number;
}
interface Sample {
  readonly inProcess: number;
  readonly outside: number;
  readonly cpuUs: number;
  /** The daemon's receive and report stages (µs), the add's and the delete's halved. */
  readonly receiveUs: number;
  readonly reportUs: number;
}

const text = (n: number) => [24, 16, 8, 0].map((shift) => (n >>> shift) & 255).join('.');
const int = (a: string) => a.split('.').reduce((n, o) => n * 256 + Number(o), 0);

function event(k: number, shape: Shape): { cidr: string; address: string; subnet: string } {
  if (shape === 'equal') return eventAddress(k);
  const own = int(nicIPv4(k).address) - 2;
  const around = own - (own % 256);
  return { cidr: `${text(around + 250)}/24`, address: text(around + 250), subnet: `${text(around)}/24` };
}

async function host(name: string, nics: number, build: Host['build'], config: string): Promise<Host> {
  const world = await buildWorld(lab, name, nics, dir);
  const daemon = new Daemon(world.ns, config, join(dir, `${name}.log`), [], build === 'this' ? CLI : join(other, 'dist/cli.js'));
  daemons.push(daemon);
  await daemon.running(120_000);
  const monitor = await Monitor.start(world.ns, 'n0', join(dir, `${name}.monitor`));
  monitors.push(monitor);
  return { build, world, daemon, monitor, next: 0 };
}

async function once(h: Host, shape: Shape): Promise<Sample> {
  const k = h.next++ % h.world.nics;
  const e = event(k, shape);
  const table = 1000 + h.world.ifindex[k]!;
  const keys = [addressKey(e.cidr), ruleKey(e.address), routeKey(e.subnet, table)];
  const cursors = keys.map((key) => h.monitor.seenCount(key));
  const converged = h.daemon.durations.length;
  const cpu = threadCpuMs(h.daemon.pid);
  await spawnAndWait('ip', ['-n', h.world.ns, 'addr', 'add', e.cidr, 'dev', `n${k}`]);
  const [address, ...objects] = await Promise.all(keys.map((key, i) => h.monitor.next(key, false, cursors[i]!)));
  const inProcess = (await h.daemon.convergence(converged)) * 1000;
  await spawnAndWait('ip', ['-n', h.world.ns, 'addr', 'del', e.cidr, 'dev', `n${k}`]);
  await Promise.all(keys.slice(1).map((key, i) => h.monitor.next(key, true, cursors[i + 1]!)));
  await h.daemon.convergence(converged + 1);
  const stage = (name: string) => ((h.daemon.stages[converged]?.[name] ?? 0) + (h.daemon.stages[converged + 1]?.[name] ?? 0)) / 2;
  return {
    inProcess,
    outside: Math.max(...objects.map((s) => s.at)) - address!.at,
    cpuUs: ((threadCpuMs(h.daemon.pid) - cpu) * 1000) / 2,
    receiveUs: stage('receive'),
    reportUs: stage('report'),
  };
}

try {
  if (!process.argv[2]) throw new Error('usage: ab-events.ts <other checkout, built>');
  const config = join(dir, 'quiet.yaml');
  writeFileSync(config, 'metrics:\n  listen: false\n');
  const hosts: Host[] = [];
  for (const nics of SIZES) for (const build of ['this', 'other'] as const) hosts.push(await host(`${build[0]}${nics}`, nics, build, config));
  const streams = (['equal', 'wider'] as const).flatMap((shape) => hosts.map((h) => ({ shape, h })));
  const results = streams.map(() => [] as Sample[][]);
  for (let round = 0; round < ROUNDS; round++) {
    for (const r of results) r.push([]);
    // Every other round in reverse, so that no stream always follows the same one.
    const order = [...streams.keys()];
    if (round % 2 === 1) order.reverse();
    for (let e = 0; e < EVENTS; e++) for (const i of order) results[i]![round]!.push(await once(streams[i]!.h, streams[i]!.shape));
  }
  const med = (rounds: Sample[][], pick: (s: Sample) => number, p: number) => spread(rounds.map((samples) => percentile(samples.map(pick), p))).median;
  console.log(`load ${(await import('node:os')).loadavg().map((l) => l.toFixed(2)).join(' / ')}; ${ROUNDS} rounds × ${EVENTS} events; this build | ${other}`);
  for (const shape of ['equal', 'wider'] as const) {
    for (const nics of SIZES) {
      const [mine, theirs] = (['this', 'other'] as const).map((build) => results[streams.findIndex((s) => s.shape === shape && s.h.build === build && s.h.world.nics === nics)]!);
      const row = (what: string, pick: (s: Sample) => number, p: number, unit: string) =>
        console.log(`${shape.padEnd(6)} ${String(nics).padStart(4)} NICs  ${what.padEnd(22)} ${med(mine!, pick, p).toFixed(2).padStart(8)} | ${med(theirs!, pick, p).toFixed(2).padStart(8)} ${unit}`);
      row('in-process p50', (s) => s.inProcess, 50, 'ms');
      row('in-process p99', (s) => s.inProcess, 99, 'ms');
      row('from outside p50', (s) => s.outside, 50, 'ms');
      row('from outside p99', (s) => s.outside, 99, 'ms');
      row('main-thread CPU p50', (s) => s.cpuUs / 1000, 50, 'ms/convergence');
      row('receive stage p50', (s) => s.receiveUs / 1000, 50, 'ms/convergence');
      row('report stage p50', (s) => s.reportUs / 1000, 50, 'ms/convergence');
    }
  }
} finally {
  await Promise.all(monitors.map((m) => m.stop()));
  await Promise.all(daemons.map((d) => d.stop('SIGKILL')));
  await lab.removeNamespaces();
  rmSync(dir, { recursive: true, force: true });
}
