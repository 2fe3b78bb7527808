// Fights with other managers. Something that keeps removing a symroute rule or route (a
// network manager that deletes what it did not make, a cloud agent) must not be fought at the
// speed of netlink: after REPEATS removals of one object within WINDOW_MS, repairs of that
// object wait, twice as long each time, up to MAX_BACKOFF_MS. (An admin deleting a rule now
// and then, or an agent doing so on a timer, is just drift: one repair each time.) Everything else converges as
// usual. When the object stays put for WINDOW_MS after a repair, the conflict is over.
// Pure: the caller passes the time in.

export const REPEATS = 10;
export const WINDOW_MS = 10_000;
const FIRST_BACKOFF_MS = 1_000;
const MAX_BACKOFF_MS = 300_000;

export interface RepairVerdict {
  /** Repair now (true), or wait until `retryAt`. */
  readonly now: boolean;
  readonly retryAt?: number;
  /** This object just became a conflict (warn once). */
  readonly started: boolean;
  /** A removal of an object in conflict was seen (count it). */
  readonly counted: boolean;
  /** Removals within the window, for the message. */
  readonly removals: number;
}

interface ObjectState {
  removals: number[]; // times removals were seen, within the window
  missing: boolean; // removed and not yet put back: further passes see the same removal
  conflict: boolean;
  backoffMs: number;
  notBefore: number;
  repairedAt: number;
}

export class ConflictTracker {
  private readonly objects = new Map<string, ObjectState>();

  /** `key` was found removed by someone else: may it be put back now? */
  removed(key: string, now: number): RepairVerdict {
    let state = this.objects.get(key);
    if (!state) {
      state = { removals: [], missing: false, conflict: false, backoffMs: FIRST_BACKOFF_MS, notBefore: 0, repairedAt: 0 };
      this.objects.set(key, state);
    }
    let started = false;
    let counted = false;
    if (!state.missing) {
      // A new removal, not the same one seen again by a later pass.
      state.missing = true;
      state.removals = [...state.removals.filter((t) => now - t < WINDOW_MS), now];
      if (state.conflict) {
        counted = true;
        state.notBefore = now + state.backoffMs;
        state.backoffMs = Math.min(state.backoffMs * 2, MAX_BACKOFF_MS);
      } else if (state.removals.length >= REPEATS) {
        state.conflict = started = counted = true;
        state.notBefore = now + state.backoffMs;
        state.backoffMs = Math.min(state.backoffMs * 2, MAX_BACKOFF_MS);
      }
    }
    const removals = state.removals.length;
    if (now < state.notBefore) return { now: false, retryAt: state.notBefore, started, counted, removals };
    return { now: true, started, counted, removals };
  }

  /** `key` was put back (the kernel acknowledged it). */
  repaired(key: string, now: number): void {
    const state = this.objects.get(key);
    if (!state) return;
    state.missing = false;
    state.repairedAt = now;
  }

  /**
   * Forgets objects that stayed put for a whole window since their last repair; returns the
   * keys whose conflict ended (to say so).
   */
  settle(present: (key: string) => boolean, now: number): string[] {
    const ended: string[] = [];
    for (const [key, state] of this.objects) {
      if (state.missing || !present(key) || now - state.repairedAt < WINDOW_MS) continue;
      if (state.conflict) ended.push(key);
      this.objects.delete(key);
    }
    return ended;
  }

  /** Objects currently in conflict. */
  get conflicts(): string[] {
    return [...this.objects].filter(([, state]) => state.conflict).map(([key]) => key);
  }

  /** The earliest time a held repair may run, if any is held. */
  nextRetry(now: number): number | undefined {
    const times = [...this.objects.values()].filter((s) => s.missing && s.notBefore > now).map((s) => s.notBefore);
    return times.length > 0 ? Math.min(...times) : undefined;
  }
}
