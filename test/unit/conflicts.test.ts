import { describe, expect, it } from 'vitest';
import { ConflictTracker, REPEATS, WINDOW_MS } from '../../src/control/conflicts.js';

describe('ConflictTracker', () => {
  it('lets the first removals be repaired at once, then backs off exponentially per object', () => {
    const t = new ConflictTracker();
    let now = 0;
    const fight = () => {
      const verdict = t.removed('r', now);
      if (verdict.now) t.repaired('r', now);
      return verdict;
    };
    for (let i = 1; i < REPEATS; i++) {
      expect(fight()).toMatchObject({ now: true, started: false, counted: false });
      now += 100;
    }
    expect(fight()).toMatchObject({ now: false, retryAt: now + 1000, started: true, counted: true, removals: REPEATS });
    // Seen again by later passes before its turn: the same removal, not counted again.
    expect(t.removed('r', now + 10)).toMatchObject({ now: false, counted: false });
    now += 1000;
    expect(t.removed('r', now)).toMatchObject({ now: true });
    t.repaired('r', now);
    now += 100;
    expect(fight()).toMatchObject({ now: false, retryAt: now + 2000, counted: true, started: false });
    now += 2000;
    expect(t.removed('r', now).now).toBe(true);
    t.repaired('r', now);
    now += 100;
    expect(fight()).toMatchObject({ retryAt: now + 4000 });
    // Another object is not affected.
    expect(t.removed('other', now)).toMatchObject({ now: true, counted: false });
    expect(t.conflicts).toEqual(['r']);
    expect(t.nextRetry(now)).toBe(now + 4000);
  });

  it('caps the backoff at 5 minutes and ends the conflict once the object stays for a window', () => {
    const t = new ConflictTracker();
    let now = 0;
    const waits: number[] = [];
    for (let i = 0; i < 20; i++) {
      const verdict = t.removed('r', now);
      if (!verdict.now) {
        waits.push(verdict.retryAt! - now);
        now = verdict.retryAt!;
        expect(t.removed('r', now).now).toBe(true);
      }
      t.repaired('r', now);
      now += 10;
    }
    expect(waits.slice(0, 4)).toEqual([1000, 2000, 4000, 8000]);
    expect(Math.max(...waits)).toBe(300_000);
    expect(t.settle(() => true, now + WINDOW_MS - 100)).toEqual([]);
    expect(t.settle(() => true, now + WINDOW_MS)).toEqual(['r']);
    expect(t.conflicts).toEqual([]);
    expect(t.removed('r', now + WINDOW_MS + 1)).toMatchObject({ now: true, started: false });
  });

  it('does not call removals spread wider than the window a conflict', () => {
    const t = new ConflictTracker();
    for (let i = 0; i < 10; i++) {
      const now = i * WINDOW_MS;
      expect(t.removed('r', now)).toMatchObject({ now: true, started: false });
      t.repaired('r', now);
    }
  });
});
