// Where one trivial event's CPU goes: a daemon under --cpu-prof on a host of N NICs, taken
// through `events` address adds and deletes (an address in a subnet of its own on NIC 0,
// one at a time, each waited for), the profile cut to the events (start-up left out).
// Run alone as root: `vite-node test/bench/profile-event.ts [nics] [events]`.
import { mkdtempSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { callTree, inclusiveTimes, summariseProfile, type ProfileSummary } from './cpu-profile.js';
import { Daemon, REPO, scheduling, threadCpuMs } from './daemon.js';
import { percentile, spread } from './figures.js';
import { Monitor, routeKey, ruleKey, spawnAndWait } from './monitor.js';
import { eventAddress, type World } from './world.js';

/** Functions whose inclusive time shows the pass's parts (V8's names; see src/). */
export const EVENT_PARTS = [
  'drain', // watcher: receive, decode, mirror (from the socket's callback and inside a pass)
  'reconcile', // converger: a whole pass but its report
  'update', // desired state brought up to date
  'changesWithin', // the diff
  'applyChanges', // the requests, until the last ACK
  'passed', // telemetry: log lines and metrics of a pass
  'completed', // telemetry: metrics of each answered request
  'verifyReplyPaths', // reply-path verification after a pass
] as const;

export interface EventProfile {
  readonly events: number;
  /** CPU of all the daemon's threads per event (schedstat), µs. */
  readonly cpuPerEventUs: number;
  /** Sampled busy time per event, µs (main thread). */
  readonly busyPerEventUs: number;
  /** In-process convergence (durationSeconds), µs: median and p99. */
  readonly convergenceUs: { readonly p50: number; readonly p99: number };
  /** The daemon's own time per stage, µs per event (median of the events). */
  readonly stages: Record<string, number>;
  /** The slowest convergences: durationSeconds (µs) and their stage times (µs). */
  readonly slowest: ReadonlyArray<{ readonly us: number; readonly stages: Readonly<Record<string, number>> }>;
  /** CPU of the daemon's main thread per event (schedstat), µs. */
  readonly mainThreadCpuPerEventUs: number;
  /** Inclusive µs per event under each of EVENT_PARTS. */
  readonly parts: Record<string, number>;
  readonly summary: ProfileSummary;
}

/** Events on NIC 0 of `world` (which runs no daemon), profiled; the daemon is stopped after. */
export async function profileEvents(world: World, dir: string, events: number, configPath: string, sampled = true): Promise<EventProfile> {
  const profileDir = mkdtempSync(join(dir, 'event-profile-'));
  const nodeArgs = sampled ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, '--cpu-prof-interval=100'] : [];
  const daemon = new Daemon(world.ns, configPath, join(profileDir, 'daemon.log'), nodeArgs);
  const monitor = await Monitor.start(world.ns, 'n0', join(profileDir, 'monitor.txt'));
  try {
    await daemon.running(120_000);
    const event = eventAddress(0);
    const table = 1000 + world.ifindex[0]!;
    const keys = [ruleKey(event.address), routeKey(event.subnet, table)];
    const once = async (verb: 'add' | 'del') => {
      const cursors = keys.map((key) => monitor.seenCount(key));
      const converged = daemon.durations.length;
      await spawnAndWait('ip', ['-n', world.ns, 'addr', verb, event.cidr, 'dev', 'n0']);
      await Promise.all(keys.map((key, i) => monitor.next(key, verb === 'del', cursors[i]!)));
      await daemon.convergence(converged);
    };
    await once('add'); // warm-up: the first pass after start-up compiles the event path
    await once('del');
    await new Promise((resolve) => setTimeout(resolve, 500));
    const since = process.hrtime.bigint();
    const first = daemon.durations.length;
    const before = scheduling(daemon.pid);
    const beforeMain = threadCpuMs(daemon.pid);
    for (let e = 0; e < events; e++) await once(e % 2 === 0 ? 'add' : 'del');
    await new Promise((resolve) => setTimeout(resolve, 300)); // the verification after the last pass
    const after = scheduling(daemon.pid);
    const afterMain = threadCpuMs(daemon.pid);
    await daemon.stop('SIGTERM'); // the profile is written on a clean exit
    const [file] = readdirSync(profileDir).filter((f) => f.endsWith('.cpuprofile'));
    if (sampled && !file) throw new Error('node wrote no .cpuprofile');
    const path = file && join(profileDir, file);
    if (path && process.env.PROFILE_TREE) console.log(callTree(path, process.env.PROFILE_TREE, since, Number(process.env.PROFILE_TREE_MIN_MS ?? 1)));
    const summary = path ? summariseProfile(path, REPO, 25, since) : { busyMs: 0, byFunction: [], byFile: [] };
    const parts = path
      ? Object.fromEntries(Object.entries(inclusiveTimes(path, EVENT_PARTS, since)).map(([name, msTotal]) => [name, (msTotal * 1000) / events]))
      : {};
    const records = daemon.stages.slice(first, first + events);
    const stages = Object.fromEntries(Object.keys(records[0] ?? {}).map((stage) => [stage, median(records.map((r) => r[stage] ?? 0))]));
    const durations = daemon.durations.slice(first, first + events).map((seconds) => seconds * 1e6);
    return {
      events,
      convergenceUs: { p50: percentile(durations, 50), p99: percentile(durations, 99) },
      stages,
      slowest: durations
        .map((us, i) => ({ us, stages: records[i] ?? {} }))
        .sort((a, b) => b.us - a.us)
        .slice(0, 3),
      mainThreadCpuPerEventUs: ((afterMain - beforeMain) * 1000) / events,
      cpuPerEventUs: ((after.cpuMs - before.cpuMs) * 1000) / events,
      busyPerEventUs: (summary.busyMs * 1000) / events,
      parts,
      summary,
    };
  } finally {
    await monitor.stop();
    await daemon.stop('SIGKILL');
  }
}

const median = (values: readonly number[]) => (values.length ? spread(values).median : 0);

export function printEventProfile(nics: number, profile: EventProfile): void {
  const us = (value: number) => `${value.toFixed(0)} µs`;
  console.log(`\n${nics} NIC(s), ${profile.events} events: CPU ${us(profile.cpuPerEventUs)}/event (all threads), sampled busy ${us(profile.busyPerEventUs)}/event`);
  console.log(`  in-process convergence p50 ${us(profile.convergenceUs.p50)}, p99 ${us(profile.convergenceUs.p99)}`);
  const staged = Object.values(profile.stages).reduce((sum, us) => sum + us, 0);
  console.log(`  main thread CPU ${us(profile.mainThreadCpuPerEventUs)}/event; stages (the daemon's own, median per event, sum ${us(staged)}): ${Object.entries(profile.stages).map(([stage, value]) => `${stage} ${us(value)}`).join(', ')}`);
  for (const { us: slow, stages } of profile.slowest) {
    console.log(`  slow: ${us(slow)}: ${Object.entries(stages).map(([stage, value]) => `${stage} ${us(value)}`).join(', ')}`);
  }
  console.log(Object.entries(profile.parts).map(([name, value]) => `  ${name.padEnd(14)} ${us(value)}`).join('\n'));
  console.log('  self time per event:');
  for (const entry of profile.summary.byFunction) console.log(`    ${us((entry.ms * 1000) / profile.events).padStart(8)}  ${entry.name}`);
}
