// Crash anywhere: many NICs appear at once, and the daemon is SIGKILLed at random points of
// its convergence — during start-up, between and inside its write batches, while it repairs
// what changed while it was down — then started again. Whatever the kill interrupted, the
// next run must end in exactly the state the model (test/support/churn-model.ts) computes,
// and at no moment may a rule exist twice or a foreign object have changed.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  configYaml,
  expectedState,
  readKernelObjects,
  readWorld,
  withSkipLines,
  type ChurnConfig,
  type KernelObjects,
} from '../support/churn-model.js';
import { difference } from '../support/churn-ops.js';
import { eventually, Lab, type DaemonProcess, type IpRule } from '../support/lab.js';

const LONG = process.env.CHURN_LONG === '1';
const NICS = Number(process.env.CRASH_NICS ?? (LONG ? 150 : 60));
const KILLS = Number(process.env.CRASH_KILLS ?? (LONG ? 25 : 3));
const SEED = Number(process.env.CHURN_SEED ?? Date.now() % 2 ** 31);

const CONFIG: ChurnConfig = {
  priority: 30000,
  match: 'address',
  include: ['*'],
  exclude: [],
  pinned: {},
  gateways: {},
};

/** A reproducible `between(min, max)` (inclusive) from a seed (mulberry32). */
function seededBetween(seed: number): (min: number, max: number) => number {
  let state = seed >>> 0;
  return (min, max) => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const unit = ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
    return min + Math.floor(unit * (max - min + 1));
  };
}

/** The number of changes a difference() calls for. */
const changeCount = (diff: string | undefined): number => (diff ? diff.split('\n').filter((l) => /^ {2}(missing|extra) /.test(l)).length : 0);

/** Changes the daemon logged: one line per change the kernel acknowledged. */
const changesLogged = (daemon: DaemonProcess): number => daemon.messages().filter((m) => /^(added|deleted|replaced) /.test(m)).length;

/** Passes that ended in sync ("converged in …"). */
const convergences = (daemon: DaemonProcess): number => daemon.messages().filter((m) => m.startsWith('converged ')).length;

/**
 * Runs the daemon at a fifth of its speed (SIGCONT 1 ms, SIGSTOP 4 ms), so that a kill at a
 * random moment lands inside a pass rather than after it. stop() leaves it stopped (SIGSTOP)
 * for the SIGKILL that follows; a stopped process dies of SIGKILL all the same.
 */
function throttle(daemon: DaemonProcess): { stop: () => Promise<void> } {
  let running = true;
  const pid = daemon.child.pid!;
  const signal = (name: NodeJS.Signals) => {
    if (daemon.child.exitCode === null && daemon.child.signalCode === null) process.kill(pid, name);
  };
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const loop = (async () => {
    while (running) {
      signal('SIGCONT');
      await sleep(1);
      signal('SIGSTOP');
      await sleep(4);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

/** Polls the daemon's own log (no process spawned, so the kill lands close to the moment). */
async function waitForLog(daemon: DaemonProcess, condition: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition() && daemon.child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1));
}

/** Every rule listed more than once (symroute's or not): must always be empty. */
function duplicates(objects: KernelObjects): string[] {
  const all = [...objects.ownedRules, ...objects.foreignRules];
  return all.filter((rule, i) => all.indexOf(rule) !== i);
}

describe('crash anywhere', () => {
  let lab: Lab;
  afterEach(() => lab.cleanup());

  it(`SIGKILL at random points of converging ${NICS} NICs, ${KILLS} times: exact end state, no duplicate, nothing foreign touched`, async () => {
    lab = new Lab();
    const between = seededBetween(SEED);
    const ns = await lab.namespace('h');
    const peer = await lab.namespace('p');
    await lab.sysctl(ns, 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0');
    await lab.bridge(peer, 'br0');
    const batch = async (name: string, commands: string[]) => {
      const file = join(lab.dir, name);
      writeFileSync(file, `${commands.join('\n')}\n`);
      await lab.ip(ns, '-batch', file);
    };

    // Foreign objects: a rule next to symroute's priorities (P-5 .. P+162), a near-twin of a rule
    // symroute will want (same selector and table, another protocol), a route in a foreign
    // table. (Foreign rules at symroute's own priorities make it refuse to start: collisions.test.ts.)
    let created = 0;
    const addNics = async (count: number) => {
      const commands: string[] = [];
      for (let i = 0; i < count; i++) {
        const k = created++;
        const name = `n${k}`;
        commands.push(
          `link add ${name} type veth peer name q${k} netns ${peer}`,
          `link set ${name} up`,
          // All in one /20 (Case 2), some with a second address, every third with IPv6.
          `address add 198.18.${1 + (k >> 7)}.${10 + (k & 127)}/20 dev ${name}`,
          ...(k % 5 === 0 ? [`address add 198.19.${k >> 7}.${10 + (k & 127)}/24 dev ${name}`] : []),
          ...(k % 3 === 0 ? [`address add 2001:db8:1::${(k + 16).toString(16)}/64 dev ${name} nodad`] : []),
        );
      }
      await batch(`nics-${created}`, commands);
      await Promise.all(
        Array.from({ length: count }, (_, i) => lab.ip(peer, 'link', 'set', `q${created - count + i}`, 'up')),
      );
    };
    await addNics(NICS);
    const [first] = await lab.ipJson<Array<{ ifindex: number }>>(ns, 'link', 'show', 'dev', 'n0');
    await batch('foreign', [
      'rule add from 203.0.113.5 lookup 77 pref 30163',
      `rule add from 198.18.1.10 lookup ${1000 + first!.ifindex} pref 30163 proto 4`,
      'route add unreachable 203.0.113.0/24 table 77', // no device: deleting NICs cannot take it
    ]);
    const config = lab.writeConfig(configYaml(CONFIG), 'crash.yaml');
    const foreignBefore = await readKernelObjects(ns);
    expect(foreignBefore.foreignRules).toContain('v4 pref 30163 from 203.0.113.5/32 lookup 77 proto none');
    expect(foreignBefore.foreignRoutes).toHaveLength(1);

    const log: string[] = [`seed ${SEED}`];
    const invariants = async (when: string) => {
      const now = await readKernelObjects(ns);
      expect(duplicates(now), `${when}\n${log.join('\n')}`).toEqual([]);
      expect(now.foreignRules, when).toEqual(foreignBefore.foreignRules);
      expect(now.foreignRoutes, when).toEqual(foreignBefore.foreignRoutes);
      return now;
    };

    // How long a start-up takes here, to aim the kills inside it.
    const t0 = Date.now();
    let daemon: DaemonProcess = await lab.startConverged(ns, config);
    const startupMs = Date.now() - t0;
    log.push(`start-up to convergence: ${startupMs} ms`);
    await daemon.stop('SIGKILL');

    /** The model's state for the interfaces as they are now, with the foreign objects as they were. */
    const expected = async (): Promise<KernelObjects> => {
      const model = expectedState(CONFIG, await readWorld(ns), new Set());
      return {
        ownedRules: withSkipLines(model.rules.map((r) => r.text)),
        ownedRoutes: model.routes.map((r) => r.text).sort(),
        foreignRules: foreignBefore.foreignRules,
        foreignRoutes: foreignBefore.foreignRoutes,
      };
    };
    let interrupted = 0;
    let midWrite = 0;
    for (let kill = 1; kill <= KILLS; kill++) {
      // While it is down, give the next run something to write: NICs come and go, and some
      // of what it installed disappears.
      // Mostly new NICs: their routes and rules are written in separate batches of one pass.
      const change = [0, 0, 1, 2][between(0, 3)]!;
      if (change === 0) await addNics(between(5, 30));
      else if (change === 1) {
        const victims = Array.from({ length: between(3, 15) }, () => `n${between(0, created - 1)}`);
        const existing = new Set((await lab.ipJson<Array<{ ifname: string }>>(ns, 'link', 'show')).map((l) => l.ifname));
        await batch(`del-${kill}`, [...new Set(victims)].filter((v) => existing.has(v)).map((v) => `link del ${v}`));
      } else {
        const owned = (await lab.ownedRules(ns)).slice(0, between(10, 60));
        // The skip rules (goto, nop: no table) first in `ip rule` order, then `from` rules.
        const del = (r: IpRule) =>
          r.table === undefined
            ? `rule del${r.src === 'all' ? '' : ` from ${r.src}${r.srclen === undefined ? '' : `/${r.srclen}`}`} pref ${r.priority} proto 83`
            : `rule del from ${r.src} lookup ${r.table} pref ${r.priority} proto 83`;
        if (owned.length) await batch(`drift-${kill}`, owned.map(del));
      }
      let before = await readKernelObjects(ns);
      const due = changeCount(difference(await expected(), before));
      daemon = lab.startDaemon(ns, ['--config', config, '--log-level', 'debug']);
      // Where to kill: at a random moment of start-up (often before it wrote anything), or
      // at a random moment of its writing, slowed down so that the moment falls inside it —
      // at start-up (from its first dump on), or while it applies a burst of new NICs.
      const trigger = between(0, 2);
      let when: string;
      if (trigger === 0) {
        const delay = between(0, startupMs);
        await new Promise((r) => setTimeout(r, delay));
        when = `${delay} ms after the start`;
      } else {
        let passes = 0;
        let burst: Promise<void> | undefined;
        let throttled: ReturnType<typeof throttle>;
        if (trigger === 1) {
          await waitForLog(daemon, () => daemon.messages().includes('dumping kernel state'));
          throttled = throttle(daemon);
        } else {
          await eventually(() => expect(daemon.messages()).toContainEqual(expect.stringMatching(/^running\b/)), 60_000);
          passes = convergences(daemon);
          before = await readKernelObjects(ns);
          throttled = throttle(daemon);
          burst = addNics(between(10, 40));
        }
        // From the first dump, or from the first NIC of the burst on.
        const delay = between(0, 4000);
        await waitForLog(daemon, () => convergences(daemon) > passes, delay);
        await throttled.stop();
        await daemon.stop('SIGKILL');
        await burst;
        when = `${delay} ms (at 20% speed) after ${trigger === 1 ? 'its start-up dump began' : 'a burst of new NICs'}`;
      }
      await daemon.stop('SIGKILL');
      const now = await invariants(`after kill ${kill}`);
      // Unfinished: the kill left work undone; mid-write: it had also done some of it.
      const unfinished = difference(await expected(), now) !== undefined;
      const wroteSome = difference(before, now) !== undefined;
      if (unfinished) interrupted++;
      if (unfinished && wroteSome) midWrite++;
      log.push(
        `kill ${kill}: ${['added NICs', 'deleted NICs', 'deleted rules'][change]} while down (${due} changes due), ` +
          `killed ${when}: ${unfinished ? (wroteSome ? 'mid-write' : 'before writing') : 'converged'}, ` +
          `${changesLogged(daemon)} changes logged, ${now.ownedRules.length} rules`,
      );
    }

    daemon = await lab.startConverged(ns, config);
    const want = await expected();
    await eventually(async () => expect(difference(want, await readKernelObjects(ns)), log.join('\n')).toBeUndefined(), 20_000);
    await invariants('at the end');
    expect(want.ownedRules.length).toBeGreaterThan(NICS / 2);
    const figures = { test: 'crash', nicsCreated: created, kills: KILLS, interrupted, midWrite, seed: SEED, rules: want.ownedRules.length, routes: want.ownedRoutes.length };
    console.log(JSON.stringify(figures), `\n${log.join('\n')}`);
    if (process.env.CHURN_FIGURES) writeFileSync(`${process.env.CHURN_FIGURES}.crash.json`, JSON.stringify(figures));
    expect(await daemon.stop('SIGTERM')).toBe(0);
  }, 600_000);
});
