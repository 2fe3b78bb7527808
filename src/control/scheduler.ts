// When a pass runs — not what it does. Requests mark the state dirty; at most one pass is in
// flight; requests that arrive during a pass (including from its own synchronous start)
// coalesce into exactly one more pass after it; a failed pass is retried after a backoff
// that doubles up to a ceiling and resets on success; a pass may ask to be run again after a
// delay (requeue-after). The same shape as a controller-runtime work queue with a single key,
// and like it the only owner of timers.
import { Coalescer } from './coalescer.js';

export type Trigger = 'startup' | 'event' | 'resync' | 'reload' | 'retry';

/** What a pass tells the scheduler about what should happen next. */
export interface PassVerdict {
  /** It changed the kernel: run another pass to verify (it starts right away, no delay). */
  readonly again: boolean;
  /** Something failed: retry after the backoff. */
  readonly failed: boolean;
  /** Run a pass after this long, whatever else happens (replaces the previous such request). */
  readonly requeueAfterMs?: number | undefined;
}

export interface SchedulerOptions {
  readonly backoffStartMs: number;
  readonly backoffMaxMs: number;
}

export const DEFAULT_BACKOFF: SchedulerOptions = { backoffStartMs: 100, backoffMaxMs: 30_000 };

export class PassScheduler {
  private readonly passLoop = new Coalescer(
    () => this.runOnce(),
    () => !this.stopped,
    (start) => setImmediate(start),
  );
  private trigger: Trigger = 'startup';
  private retryTimer: NodeJS.Timeout | null = null;
  private requeueTimer: NodeJS.Timeout | null = null;
  private backoffMs: number;
  private stopped = false;
  private startedAt: number | null = null;
  /** Passes started so far (for tests and figures). */
  passes = 0;

  constructor(
    private readonly runPass: (trigger: Trigger) => Promise<PassVerdict>,
    private readonly onError: (error: Error) => void,
    private readonly options: SchedulerOptions = DEFAULT_BACKOFF,
  ) {
    this.backoffMs = options.backoffStartMs;
  }

  /**
   * Asks for a pass. The first trigger since the last pass started names the next one. Safe
   * to call from anywhere, including from inside a running pass: the state says "running"
   * from before the pass's first line, so no second pass can start beside it.
   */
  request(trigger: Trigger): void {
    if (!this.passLoop.pending) this.trigger = trigger;
    this.passLoop.request();
  }

  /** Resolves when no pass is running or scheduled (retries waiting on their timer aside). */
  idle(): Promise<void> {
    return this.passLoop.idle();
  }

  /** A pass runs, is about to start, or is requested (a retry waiting on its timer aside). */
  get busy(): boolean {
    return this.passLoop.active;
  }

  /** Since when the current pass runs, or null. */
  get runningSince(): number | null {
    return this.startedAt;
  }

  /** No more passes start; the one in flight, if any, finishes. */
  stop(): void {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.requeue(undefined);
  }

  private async runOnce(): Promise<void> {
    const trigger = this.trigger;
    this.passes++;
    this.startedAt = Date.now();
    let verdict: PassVerdict;
    try {
      verdict = await this.runPass(trigger);
      this.requeue(verdict.requeueAfterMs);
    } catch (error) {
      this.onError(error as Error);
      verdict = { again: false, failed: true };
    } finally {
      this.startedAt = null;
    }
    if (verdict.failed) this.scheduleRetry();
    else if (!verdict.again) this.backoffMs = this.options.backoffStartMs;
    if (verdict.again && !this.passLoop.pending) {
      this.trigger = trigger;
      this.passLoop.request();
    }
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.stopped) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.options.backoffMaxMs);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.request('retry');
    }, delay);
    this.retryTimer.unref();
  }

  private requeue(afterMs: number | undefined): void {
    if (this.requeueTimer) clearTimeout(this.requeueTimer);
    this.requeueTimer = null;
    if (afterMs === undefined || this.stopped) return;
    this.requeueTimer = setTimeout(() => {
      this.requeueTimer = null;
      this.request('retry');
    }, afterMs);
    this.requeueTimer.unref();
  }
}
