// Idle means idle: once converged, the daemon sleeps until the kernel (or a scrape, or a
// signal) has something for it. Judged by the kernel's own count of how often each of the
// daemon's threads was scheduled (/proc/<pid>/task/*/schedstat), which is a count of
// wake-ups, not a time. A 10 ms poll (prom-client's event-loop monitor) would show ~200
// of them in the 2 s window; the allowance below leaves room for a stray GC task.
import { readdirSync, readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { eventually, Lab } from '../support/lab.js';

const WINDOW_MS = 2000;
const ALLOWED_WAKEUPS = 4;
const WINDOWS = 5;

let lab: Lab | undefined;

afterEach(async () => {
  await lab?.cleanup();
  lab = undefined;
});

/** Times each thread of `pid` has been scheduled onto a CPU, summed (schedstat's 3rd field). */
function timesScheduled(pid: number): number {
  let total = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    total += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[2]);
  }
  return total;
}

/**
 * The fewest wake-ups seen in any of a few consecutive windows. On a loaded machine a window
 * can catch late start-up work (GC, a log flush) or preemptions that reschedule the same
 * wake-up; a periodic timer shows up in every window, so the quietest one is the fair judge.
 */
async function wakeupsWhileIdle(pid: number): Promise<number> {
  let fewest = Infinity;
  for (let window = 0; window < WINDOWS && fewest > ALLOWED_WAKEUPS; window++) {
    const before = timesScheduled(pid);
    await new Promise((resolve) => setTimeout(resolve, WINDOW_MS));
    fewest = Math.min(fewest, timesScheduled(pid) - before);
  }
  return fewest;
}

describe('an idle daemon', () => {
  it('is not woken by any timer with metrics served (after a scrape)', async () => {
    lab = new Lab();
    const ns = await lab.namespace('h');
    const daemon = await lab.startConverged(ns, lab.writeConfig('metrics:\n  listen: 127.0.0.1:9477\n'));
    const l = lab;
    // A scrape runs every collector once, including the ones measured at scrape time.
    const scraped = await eventually(() => l.exec(ns, 'curl', '-sf', 'http://127.0.0.1:9477/metrics'));
    expect(scraped).toMatch(/^nodejs_eventloop_lag_seconds \d/m);
    expect(scraped).toMatch(/^nodejs_eventloop_busy_seconds_total \d/m);
    expect(scraped).toMatch(/^process_cpu_seconds_total \d/m);
    expect(scraped).toMatch(/^nodejs_heap_size_used_bytes \d/m);
    await new Promise((resolve) => setTimeout(resolve, 500)); // let the scrape's own work finish
    expect(await wakeupsWhileIdle(daemon.child.pid!)).toBeLessThanOrEqual(ALLOWED_WAKEUPS);
  });

  it('is not woken by any timer with metrics.listen: false', async () => {
    lab = new Lab();
    const ns = await lab.namespace('h');
    const daemon = await lab.startConverged(ns, lab.writeConfig('metrics:\n  listen: false\n'));
    expect(await wakeupsWhileIdle(daemon.child.pid!)).toBeLessThanOrEqual(ALLOWED_WAKEUPS);
  });
});
