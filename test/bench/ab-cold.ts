// `vite-node test/bench/ab-cold.ts <other checkout>` (as root, both built; AB_ROUNDS, 5, and
// AB_NICS, 1000, change the rounds and the host): this build's daemon against another
// build's, cold start and burst in the same rounds on one host (IPv4 + IPv6 + gateways), with
// `ip -batch` of the same objects as the reference in every round: start-up convergence
// after the dumps, then a burst (every NIC gets an address in a new subnet in one `ip -batch`:
// the daemon's own first-address-read → last-ACK, and from `ip monitor` seeing the last address
// to it seeing the last rule or route, as `npm run bench` times it), stop, clean up; the order alternates per
// round. Prints min / median / max of each build's figures and of its ratios to the reference
// of its round.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { NetnsLab } from '../../src/lab/netns.js';
import { CLI, Daemon, threadCpuMs } from './daemon.js';
import { spread } from './figures.js';
import { addressKey, Monitor, routeKey, ruleKey } from './monitor.js';
import { buildWorld, deleting, eventAddress, ipBatch, ipBatchByFamily, ownedObjects } from './world.js';

const ROUNDS = Number(process.env.AB_ROUNDS ?? 5);
const NICS = Number(process.env.AB_NICS ?? 1000);
const other = resolve(process.argv[2] ?? '');
const dir = mkdtempSync(join(tmpdir(), 'symroute-ab-cold-'));
const lab = new NetnsLab('src');
const daemons: Daemon[] = [];
const monitors: Monitor[] = [];

type Build = 'this' | 'other';
interface Round {
  cold: number;
  /** The cold start's convergence by stage, µs (its stageMicros). */
  coldStages: Record<string, number>;
  /** The report stage of the burst's convergences, summed, µs. */
  burstReport: number;
  coldRatio: number;
  burst: number;
  burstRatio: number;
  /** From `ip monitor` seeing the last address to it seeing the last rule or route, ms: the bench's burst figure. */
  burstOutside: number;
  burstOutsideRatio: number;
  /** The daemon's main-thread CPU from the burst's start until it settled (the passes, their reports, the verification), ms. */
  burstCpu: number;
}

/** Waits until the daemon has logged no convergence for 300 ms. */
async function settle(daemon: Daemon): Promise<void> {
  for (;;) {
    const count = daemon.durations.length;
    await new Promise((r) => setTimeout(r, 300));
    if (daemon.durations.length === count) return;
  }
}

try {
  if (!process.argv[2]) throw new Error('usage: ab-cold.ts <other checkout, built>');
  const config = join(dir, 'quiet.yaml');
  writeFileSync(config, 'metrics:\n  listen: false\n');
  const world = await buildWorld(lab, 'c', NICS, dir);
  const monitor = await Monitor.start(world.ns, 'n0', join(dir, 'monitor.txt'));
  monitors.push(monitor);
  const burstKeys = Array.from({ length: NICS }, (_, k) => {
    const event = eventAddress(k);
    return [addressKey(event.cidr), ruleKey(event.address), routeKey(event.subnet, 1000 + world.ifindex[k]!)] as const;
  });
  const addressLines = (verb: 'add' | 'del') => Array.from({ length: NICS }, (_, k) => `addr ${verb} ${eventAddress(k).cidr} dev n${k}`);
  let owned: string[] | undefined;
  const results: Record<Build, Round[]> = { this: [], other: [] };
  const once = async (build: Build): Promise<Round> => {
    const daemon = new Daemon(world.ns, config, join(dir, `${build}-${daemons.length}.log`), [], build === 'this' ? CLI : join(other, 'dist/cli.js'));
    daemons.push(daemon);
    await daemon.running(120_000);
    const cold = daemon.durations[0]! * 1000;
    const now = await ownedObjects(world.ns);
    owned ??= [...now.rules, ...now.routes];
    await settle(daemon);
    const before = daemon.durations.length;
    const cpu = threadCpuMs(daemon.pid);
    const cursors = burstKeys.map((keys) => keys.map((key) => monitor.seenCount(key)));
    await ipBatch(world.ns, addressLines('add'), dir, 'burst-add');
    let lastAddress = 0;
    let lastObject = 0;
    for (const [k, keys] of burstKeys.entries()) {
      const [a, r, ro] = await Promise.all(keys.map((key, i) => monitor.next(key, false, cursors[k]![i]!)));
      lastAddress = Math.max(lastAddress, a!.at);
      lastObject = Math.max(lastObject, r!.at, ro!.at);
    }
    const burstOutside = lastObject - lastAddress;
    await daemon.convergence(before);
    await settle(daemon);
    const burst = Math.max(...daemon.durations.slice(before)) * 1000;
    const burstCpu = threadCpuMs(daemon.pid) - cpu;
    const burstReport = daemon.stages.slice(before).reduce((sum, stages) => sum + (stages.report ?? 0), 0);
    const burstObjects = await ownedObjects(world.ns);
    const added = [...burstObjects.rules, ...burstObjects.routes].filter((line) => !owned!.includes(line));
    await daemon.stop('SIGKILL');
    // The references: the same objects by `ip -batch`, each from a clean slate.
    // -force: a pass still settling when the daemon was killed may have taken one back.
    await ipBatchByFamily(world.ns, deleting(added), dir, 'burst-del-objects', ['-force']).catch(() => undefined);
    // The burst's sources laid the tree of `from` rules out anew: what it retired is put back,
    // and the reference retires it too.
    const held = new Set([...burstObjects.rules, ...burstObjects.routes]);
    const retired = owned.filter((line) => !held.has(line));
    await ipBatchByFamily(world.ns, retired, dir, 'burst-restore');
    const burstReference = await ipBatchByFamily(world.ns, [...deleting(retired), ...added], dir, 'burst-ref');
    await ipBatchByFamily(world.ns, deleting(added), dir, 'burst-del-objects');
    await ipBatchByFamily(world.ns, retired, dir, 'burst-restore');
    await ipBatch(world.ns, addressLines('del'), dir, 'burst-del');
    await ipBatchByFamily(world.ns, deleting(owned), dir, 'cold-del');
    const coldReference = await ipBatchByFamily(world.ns, owned, dir, 'cold-ref');
    await ipBatchByFamily(world.ns, deleting(owned), dir, 'cold-del');
    const left = await ownedObjects(world.ns);
    if (left.rules.length + left.routes.length > 0) throw new Error('objects left over');
    return { cold, coldStages: { ...daemon.stages[0] }, burstReport, burstCpu, burstOutside, burstOutsideRatio: burstOutside / burstReference, coldRatio: cold / coldReference, burst, burstRatio: burst / burstReference };
  };
  await once('this'); // warm-up: the page cache, the kernel's slabs
  for (let round = 0; round < ROUNDS; round++) {
    const order: Build[] = round % 2 === 0 ? ['this', 'other'] : ['other', 'this'];
    for (const build of order) results[build].push(await once(build));
  }
  console.log(`load ${loadavg().map((l) => l.toFixed(2)).join(' / ')}; ${ROUNDS} rounds, ${NICS} NICs; this build | ${other}`);
  const fmt = (xs: number[]) => { const s = spread(xs); return `${s.min.toFixed(2)} / ${s.median.toFixed(2)} / ${s.max.toFixed(2)}`; };
  const row = (what: string, pick: (r: Round) => number, unit: string) =>
    console.log(`${what.padEnd(44)} ${fmt(results.this.map(pick))} | ${fmt(results.other.map(pick))} ${unit}`);
  row('cold start, after the dumps', (r) => r.cold, 'ms');
  row('cold start ÷ ip -batch', (r) => r.coldRatio, '×');
  for (const stage of ['plan', 'diff', 'apply', 'report']) row(`cold start, stage ${stage}`, (r) => (r.coldStages[stage] ?? 0) / 1000, 'ms');
  row('burst, report stage of its convergences', (r) => r.burstReport / 1000, 'ms');
  row('burst in-process (first address → last ACK)', (r) => r.burst, 'ms');
  row('burst in-process ÷ ip -batch', (r) => r.burstRatio, '×');
  row('burst from outside (last address → last object)', (r) => r.burstOutside, 'ms');
  row('burst from outside ÷ ip -batch', (r) => r.burstOutsideRatio, '×');
  row('burst, main-thread CPU until settled', (r) => r.burstCpu, 'ms');
} finally {
  await Promise.all(monitors.map((m) => m.stop()));
  await Promise.all(daemons.map((d) => d.stop('SIGKILL')));
  await lab.removeNamespaces();
  rmSync(dir, { recursive: true, force: true });
}
