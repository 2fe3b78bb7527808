// Model-checked churn: fast-check generates sequences of operations (NICs added, removed,
// renamed, flapped; addresses of every kind; default routes in main; drift; foreign rules and
// routes; collisions; config reloads), applies them with iproute2 while the real daemon runs,
// and after each one waits (bounded) until the kernel's complete rule set and every route
// symroute owns equal an independent model of the README's rules (test/support/churn-model.ts),
// with every foreign object unchanged, and until every reply path's verdict, the kernel's and
// the daemon's, is what the faults planted then make it (churn-ops.ts, expectReplyPaths). A
// failure shrinks to a minimal sequence and prints it with the seed and the daemon's log. `npm run test:long` runs thousands of operations.
import { writeFileSync } from 'node:fs';
import fc from 'fast-check';
import { afterAll, describe, it } from 'vitest';
import { ChurnRun, opArb, prologueArb, configArb, type ChurnCounters } from '../support/churn-ops.js';
import { Lab } from '../support/lab.js';

const LONG = process.env.CHURN_LONG === '1';
const RUNS = Number(process.env.CHURN_RUNS ?? (LONG ? 12 : 2));
const OPS = Number(process.env.CHURN_OPS ?? (LONG ? 100 : 15));
const SEED = process.env.CHURN_SEED === undefined ? undefined : Number(process.env.CHURN_SEED);
// Shrinking a failure re-runs the daemon many times: bounded, and reported as a failure.
const TIME_LIMIT_MS = Number(process.env.CHURN_TIME_LIMIT_MS ?? (LONG ? 90 * 60_000 : 8 * 60_000));

// OPS slots, each an operation or nothing: every run is long, and shrinking empties slots
// (fast-check would otherwise mostly try short sequences when it makes only a few runs).
const opsArb = fc
  .array(fc.option(opArb({ flood: LONG }), { nil: undefined, freq: 12 }), { minLength: OPS, maxLength: OPS })
  .map((slots) => slots.filter((op) => op !== undefined));

// In `npm test` a short run (RUNS sequences of OPS slots per rule mode, a new seed each time);
// `npm run test:long` (CHURN_LONG=1) the long one. After every operation the run proves the
// daemon has caught up with a marker address of its own (ChurnRun.barrier), never by removing
// one of symroute's objects again and again, which the daemon would take for a fight with
// another manager and answer with backed-off repairs.
describe('churn against an independent model', () => {
  // fast-check abandons a run still in progress when its time limit strikes: clean up after it.
  const labs = new Set<Lab>();
  afterAll(() => Promise.all([...labs].map((lab) => lab.cleanup())));

  // Both modes at once: most of an operation's time is waiting for the kernel and the daemon.
  for (const match of ['address', 'prefix'] as const) {
    it.concurrent(`rule.match ${match} at start: kernel equals the model after every operation`, async () => {
      const counters: ChurnCounters = { operations: 0, commands: 0, refused: 0, overruns: 0 };
      let runs = 0;
      let passed = 0;
      const figures = () => ({ test: 'churn', match, runs, passed, ...counters });
      // Once a run failed, the others are fast-check shrinking it: a failing candidate then
      // needs no full settling time to show (a passing one settles in well under a second).
      let failed = false;
      await fc.assert(
        fc.asyncProperty(configArb(match), prologueArb, opsArb, async (config, prologue, ops) => {
          runs++;
          const lab = new Lab();
          labs.add(lab);
          const run = new ChurnRun(lab, config, counters, failed ? 5_000 : 10_000);
          try {
            await run.start(prologue);
            for (const op of ops) await run.apply(op);
            if (process.env.CHURN_DEBUG) console.log(run.log.join('\n'));
            passed++;
          } catch (error) {
            const report = `${(error as Error).message}\n\noperations (and the ip commands they ran):\n${run.log.join('\n')}\n\ndaemon log (last lines):\n${run.daemonLog()}`;
            // Shrinking can take long: say at once what failed, before fast-check starts on it.
            if (!failed) console.error(`churn: first failure (${match} mode), shrinking it now:\n${report}`);
            failed = true;
            throw new Error(report);
          } finally {
            await run.stop().catch(() => undefined);
            await lab.cleanup();
            labs.delete(lab);
            // After every run, so that a long run cut short still leaves its figures.
            if (process.env.CHURN_FIGURES) writeFileSync(`${process.env.CHURN_FIGURES}.churn-${match}.json`, JSON.stringify(figures()));
          }
        }),
        {
          numRuns: RUNS,
          ...(SEED !== undefined ? { seed: SEED } : {}),
          interruptAfterTimeLimit: TIME_LIMIT_MS,
          // A long run may be given a time budget (CHURN_TIME_LIMIT_MS): reaching it is no
          // failure there; a failure found before it still is, shrunk as far as time allowed.
          markInterruptAsFailure: !LONG,
          endOnFailure: false,
        },
      );
      console.log(JSON.stringify(figures()));
    }, TIME_LIMIT_MS + 60_000);
  }
});
