// When passes run: one at a time however requests arrive (including from a pass's own
// synchronous start), requests during a pass coalesce into one more, failures back off.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { PassScheduler, type PassVerdict, type Trigger } from '../../src/control/scheduler.js';

const OK: PassVerdict = { again: false, failed: false };

/** A scheduler whose passes are scripted; records how many ran at once and with what trigger. */
function harness(script: (trigger: Trigger, n: number) => Promise<PassVerdict> | PassVerdict) {
  let running = 0;
  const record = { maxConcurrent: 0, triggers: [] as Trigger[], errors: [] as Error[] };
  const scheduler = new PassScheduler(
    async (trigger) => {
      running++;
      record.maxConcurrent = Math.max(record.maxConcurrent, running);
      record.triggers.push(trigger);
      try {
        return await script(trigger, record.triggers.length);
      } finally {
        running--;
      }
    },
    (error) => record.errors.push(error),
    { backoffStartMs: 100, backoffMaxMs: 400 },
  );
  return { scheduler, record };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('PassScheduler', () => {
  afterEach(() => vi.useRealTimers());

  it('never starts a second pass while one runs, even when the pass itself asks for one before its first await', async () => {
    const { scheduler, record } = harness((_trigger, n) => {
      // The race of the old daemon: draining the socket at the start of a pass reports an
      // event synchronously, which asked for a pass while "no loop was running" yet.
      if (n < 5) scheduler.request('event');
      return new Promise((resolve) => setImmediate(() => resolve(OK)));
    });
    scheduler.request('startup');
    await scheduler.idle();
    expect(record.maxConcurrent).toBe(1);
    expect(record.triggers).toEqual(['startup', 'event', 'event', 'event', 'event']);
  });

  it('coalesces any number of requests during a pass into exactly one more pass', async () => {
    let release!: () => void;
    const { scheduler, record } = harness((_t, n) => (n === 1 ? new Promise((resolve) => (release = () => resolve(OK))) : OK));
    scheduler.request('startup');
    await tick();
    for (let i = 0; i < 100; i++) scheduler.request(i % 2 ? 'event' : 'resync');
    release();
    await scheduler.idle();
    expect(record.triggers).toEqual(['startup', 'resync']); // the first request after the start names it
    expect(record.maxConcurrent).toBe(1);
  });

  it('coalesces a burst of requests before the pass starts into one pass', async () => {
    const { scheduler, record } = harness(() => OK);
    for (let i = 0; i < 50; i++) scheduler.request('event');
    await scheduler.idle();
    expect(record.triggers).toEqual(['event']);
  });

  it('runs a verifying pass right after one that changed something, under the same trigger', async () => {
    const { scheduler, record } = harness((_t, n) => ({ again: n === 1, failed: false }));
    scheduler.request('reload');
    await scheduler.idle();
    expect(record.triggers).toEqual(['reload', 'reload']);
  });

  it('retries a failed pass with a doubling backoff up to the ceiling, and resets it after success', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    let failing = true;
    const { scheduler, record } = harness(() => (failing ? { again: false, failed: true } : OK));
    scheduler.request('event');
    await scheduler.idle();
    const retriesAfter = async (ms: number) => {
      const before = record.triggers.length;
      await vi.advanceTimersByTimeAsync(ms - 1);
      await scheduler.idle();
      expect(record.triggers.length).toBe(before);
      await vi.advanceTimersByTimeAsync(1);
      await tick();
      await scheduler.idle();
      expect(record.triggers.length).toBe(before + 1);
      expect(record.triggers.at(-1)).toBe('retry');
    };
    await retriesAfter(100);
    await retriesAfter(200);
    await retriesAfter(400);
    await retriesAfter(400); // ceiling
    failing = false;
    await retriesAfter(400); // succeeds: backoff resets
    failing = true;
    scheduler.request('event');
    await scheduler.idle();
    await retriesAfter(100);
    scheduler.stop();
  });

  it('treats a pass that throws as failed: reports the error and retries', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { scheduler, record } = harness((_t, n) => {
      if (n === 1) throw new Error('boom');
      return OK;
    });
    scheduler.request('event');
    await scheduler.idle();
    expect(record.errors.map((e) => e.message)).toEqual(['boom']);
    await vi.advanceTimersByTimeAsync(100);
    await tick();
    await scheduler.idle();
    expect(record.triggers).toEqual(['event', 'retry']);
  });

  it('starts nothing after stop(), and cancels a pending retry', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { scheduler, record } = harness(() => ({ again: false, failed: true }));
    scheduler.request('event');
    await scheduler.idle();
    scheduler.stop();
    scheduler.request('event');
    await vi.advanceTimersByTimeAsync(10_000);
    await tick();
    await scheduler.idle();
    expect(record.triggers).toEqual(['event']);
  });
});
