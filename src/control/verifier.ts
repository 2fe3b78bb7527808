// Reply paths kept verified: after each pass that ends in sync, the NICs it touched (all of
// them when something symroute does not own changed), and every NIC each sweep interval.
// One verification at a time; requests made meanwhile are merged into the next. A verdict
// taken while a pass ran or the kernel changed is thrown away and asked for again: never
// one from a half-converged state. Breaks and heals go to the observer, once each.
import type { Family } from '../net/ip.js';
import type { PathVerdict } from '../domain/reply-paths.js';

export interface VerifierObserver {
  /** A path that held (or was new) is broken now. */
  replyPathBroke(verdict: PathVerdict): void;
  /** A path that was broken holds now. */
  replyPathHealed(verdict: PathVerdict): void;
  /** Every path of one NIC and family holds (or not); `null`: it has none any more. */
  replyPathsOfNic(ifname: string, family: Family, ok: boolean | null): void;
  verifyFailed(error: Error): void;
}

export interface VerifierOptions {
  /**
   * Whether the desired state is planned from everything the kernel said so far and no pass
   * is running or due. If not, verification waits: the pass to come asks for it again.
   */
  readonly current: () => boolean;
  /** Lookups for the NICs in `only` (every NIC when undefined). */
  readonly verify: (only: ReadonlySet<number> | undefined) => Promise<PathVerdict[]>;
  /**
   * What the kernel's state is known to be at: it changes when a pass runs or a notification
   * is read (reading what is queued first). A verdict taken across a change is stale.
   */
  readonly stateVersion: () => string;
  /** Full sweeps this often; false: only after passes. */
  readonly sweepIntervalMs: number | false;
}

const pathKey = (v: PathVerdict): string => `${v.probe.ifindex}|${v.probe.direction}|${v.probe.address}|${v.probe.peer}`;
const nicKey = (ifname: string, family: Family): string => `${family}|${ifname}`;

export class ReplyPathVerifier {
  private readonly verdicts = new Map<string, PathVerdict>();
  /** NICs (by ifindex) waiting to be verified, or all of them. */
  private pending: Set<number> | 'all' | null = null;
  private running: Promise<void> | null = null;
  private sweepTimer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    private readonly options: VerifierOptions,
    private readonly observer: VerifierObserver,
  ) {}

  /** Verifies these NICs (or all) once the current verification, if any, is done. */
  request(nics: Iterable<number> | 'all'): void {
    if (this.stopped) return;
    if (nics === 'all' || this.pending === 'all') this.pending = 'all';
    else {
      this.pending ??= new Set();
      for (const nic of nics) this.pending.add(nic);
      if (this.pending.size === 0) return void (this.pending = null);
    }
    // On the next turn: a request from a pass's end comes before its scheduler is idle.
    this.running ??= new Promise((resolve) => setImmediate(resolve))
      .then(() => this.drain())
      .finally(() => (this.running = null));
  }

  /** Starts the periodic sweep. */
  start(): void {
    if (this.options.sweepIntervalMs === false || this.stopped) return;
    this.sweepTimer = setInterval(() => this.request('all'), this.options.sweepIntervalMs);
    this.sweepTimer.unref();
  }

  /** Resolves when nothing is being verified or waiting to be. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  stop(): void {
    this.stopped = true;
    this.pending = null;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
  }

  /** The broken paths as they stand. */
  get broken(): PathVerdict[] {
    return [...this.verdicts.values()].filter((v) => v.failure);
  }

  private async drain(): Promise<void> {
    while (this.pending !== null && !this.stopped) {
      // Left pending for the pass to come, which asks again when it ends.
      if (!this.options.current()) return;
      const nics = this.pending;
      this.pending = null;
      const before = this.options.stateVersion();
      let verdicts: PathVerdict[];
      try {
        verdicts = await this.options.verify(nics === 'all' ? undefined : nics);
      } catch (error) {
        this.observer.verifyFailed(error as Error);
        continue;
      }
      if (this.options.stateVersion() !== before) {
        // A pass ran or the kernel changed meanwhile: what was seen may be half-converged.
        this.request(nics);
        continue;
      }
      this.record(nics, verdicts);
    }
  }

  private record(nics: ReadonlySet<number> | 'all', verdicts: readonly PathVerdict[]): void {
    const covered = (ifindex: number) => nics === 'all' || nics.has(ifindex);
    const touchedNics = new Map<string, { ifname: string; family: Family }>();
    const fresh = new Map(verdicts.map((v) => [pathKey(v), v]));
    for (const [key, old] of this.verdicts) {
      if (!covered(old.probe.ifindex) || fresh.has(key)) continue;
      // A path that no longer exists (address or NIC gone) neither breaks nor heals.
      this.verdicts.delete(key);
      touchedNics.set(nicKey(old.probe.ifname, old.probe.family), old.probe);
    }
    for (const [key, verdict] of fresh) {
      const old = this.verdicts.get(key);
      this.verdicts.set(key, verdict);
      touchedNics.set(nicKey(verdict.probe.ifname, verdict.probe.family), verdict.probe);
      if (verdict.failure && (!old || !old.failure || old.failure.reason !== verdict.failure.reason)) this.observer.replyPathBroke(verdict);
      else if (!verdict.failure && old?.failure) this.observer.replyPathHealed(verdict);
    }
    const holds = new Map<string, boolean>();
    for (const v of this.verdicts.values()) {
      const key = nicKey(v.probe.ifname, v.probe.family);
      holds.set(key, (holds.get(key) ?? true) && !v.failure);
    }
    for (const [key, { ifname, family }] of touchedNics) this.observer.replyPathsOfNic(ifname, family, holds.get(key) ?? null);
  }
}
