// Where the daemon's time goes while it follows the kernel, by stage: reading and decoding
// notifications, planning, diffing, applying (until the last ACK), the host's files, and the
// report (log lines and metrics). Time is charged to the innermost open stage only: a
// notification read while a pass awaits its ACKs is `receive`, not `apply`. Every stage but
// apply is synchronous code on the event loop, so its time is the main thread's CPU time
// unless another process preempted it; apply is the requests' sendmsg() (in which the
// kernel does their work) and reading the ACKs. Wall time, read from the monotonic clock
// (a fraction of a µs): a CPU clock costs a syscall, ~3 µs on a cold cache, too dear to
// read five times before the first request of every event. In no stage: the reply-path
// verification, timers, scrapes, and garbage collection on other threads (what of them runs
// while a pass awaits its ACKs is charged to apply).

export const STAGES = ['receive', 'plan', 'diff', 'apply', 'host', 'report'] as const;
export type Stage = (typeof STAGES)[number];

/** Seconds per stage. */
export type StageTimes = Readonly<Record<Stage, number>>;

interface Open {
  stage: number;
  /** When the time charged to this stage last started running (ns). */
  since: bigint;
}

export class StageMeter {
  private readonly totalNs = STAGES.map(() => 0n);
  /** totalNs at the last `since()` call. */
  private mark = STAGES.map(() => 0n);
  private readonly open: Open[] = [];

  /** Starts charging `stage` (inside whatever is open); returns the depth to end() at. */
  begin(stage: Stage): number {
    const depth = this.open.length;
    const now = process.hrtime.bigint();
    this.charge(now);
    this.open.push({ stage: STAGES.indexOf(stage), since: now });
    return depth;
  }

  /** The innermost open stage ends and `stage` takes its place (one clock reading for both). */
  next(stage: Stage): void {
    const top = this.open.at(-1);
    if (!top) throw new Error(`stage ${stage} follows no open stage`);
    this.charge(process.hrtime.bigint());
    top.stage = STAGES.indexOf(stage);
  }

  /** Ends every stage begun at or after `depth`; what was open around them runs on. */
  end(depth: number): void {
    if (this.open.length <= depth) return;
    const now = process.hrtime.bigint();
    this.charge(now);
    this.open.length = depth;
    const resumed = this.open.at(-1);
    if (resumed) resumed.since = now;
  }

  /** Runs `work` as `stage`. */
  run<T>(stage: Stage, work: () => T): T {
    const depth = this.begin(stage);
    try {
      return work();
    } finally {
      this.end(depth);
    }
  }

  /** Everything charged so far (what is open: up to its last clock reading). */
  get totals(): StageTimes {
    return this.times((i) => this.totalNs[i]!);
  }

  /** What was charged since the last call (the first: since the start). */
  since(): StageTimes {
    const times = this.times((i) => this.totalNs[i]! - this.mark[i]!);
    this.mark = [...this.totalNs];
    return times;
  }

  private charge(now: bigint): void {
    const top = this.open.at(-1);
    if (!top) return;
    this.totalNs[top.stage]! += now - top.since;
    top.since = now;
  }

  private times(ns: (i: number) => bigint): StageTimes {
    return Object.fromEntries(STAGES.map((stage, i) => [stage, Number(ns(i)) / 1e9])) as StageTimes;
  }
}
