// Reply paths kept verified: after each pass that ends in sync, the NICs it touched (all of
// them when something symroute does not own changed), and every NIC each sweep interval.
// One verification at a time; requests made meanwhile are merged into the next. A verdict
// on a NIC a pass touched while it was taken (or on any, while a change is still being
// taken in) is thrown away and asked for again: never one from a half-converged state. Breaks and heals go to the observer, once each.
// A path seen broken for the first time is asked about again CONFIRM_AFTER_MS later and
// reported only if it still is: another tool's change is not atomic (an address is gone from
// the kernel's lookups a moment before its deletion is announced), so a lookup can land in
// between, when nothing yet says the verdict is stale.
import type { Family } from '../net/ip.js';
import type { PathVerdict } from '../domain/reply-paths.js';
import { mapSet } from '../domain/collections.js';
import { FR_ACT_TO_TBL, RT_TABLE_LOCAL, RT_TABLE_MAIN } from '../domain/constants.js';
import type { KernelEvent } from '../domain/events.js';

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
  /**
   * Lookups for the NICs in `only` (every NIC when undefined), a turn's share at a time,
   * awaiting `between` between two turns.
   */
  readonly verify: (only: ReadonlySet<number> | undefined, between: () => Promise<void>) => Promise<PathVerdict[]>;
  /**
   * What the kernel's state is known to be at: it changes when a pass runs or a notification
   * is read (reading what is queued first). A verdict taken across a change is stale.
   */
  readonly stateVersion: () => string;
}

/**
 * Which NICs' reply paths `events` may have changed, added to `into`: the NIC of a link,
 * address or main route, and of symroute's own rules and routes in a NIC's table; every NIC
 * when a rule or table symroute does not own changed (it may take any reply). symroute's own
 * rules into no NIC's table (skip gotos, their landing nop, `to … lookup main`) touch none:
 * by design they change no decision (test/unit/rule-skips.test.ts), and the sweep checks them.
 * `ownTable`: the NIC whose table this is, if any.
 */
export function touchedNics(
  events: readonly KernelEvent[],
  protocol: number,
  ownTable: (table: number) => number | undefined,
  into: Set<number>,
): Set<number> | 'all' {
  for (const event of events) {
    if (event.kind === 'link') into.add(event.link.index);
    else if (event.kind === 'address') into.add(event.address.ifindex);
    else if (event.kind === 'rule') {
      const { rule } = event;
      if (rule.protocol !== protocol) return 'all';
      if (rule.action !== FR_ACT_TO_TBL || rule.table === RT_TABLE_MAIN) continue;
      const ifindex = ownTable(rule.table);
      if (ifindex === undefined) return 'all';
      into.add(ifindex);
    } else {
      const { route } = event;
      const system = route.table === RT_TABLE_MAIN || route.table === RT_TABLE_LOCAL;
      const ifindex = system ? route.oif : ownTable(route.table);
      if (ifindex !== undefined) into.add(ifindex);
      else if (!system) return 'all';
    }
  }
  return into;
}

/** How long a path first seen broken waits to be asked about again before it is believed. */
export const CONFIRM_AFTER_MS = 200;

const pathKey = (v: PathVerdict): string => `${v.probe.ifindex}|${v.probe.direction}|${v.probe.address}|${v.probe.peer}`;
const nicKey = (ifname: string, family: Family): string => `${family}|${ifname}`;

export class ReplyPathVerifier {
  /** The last verdicts, per NIC (ifindex) and path. */
  private readonly byNic = new Map<number, Map<string, PathVerdict>>();
  /** NICs (by ifindex) waiting to be verified, or all of them. */
  private pending: Set<number> | 'all' | null = null;
  private running: Promise<void> | null = null;
  /** Lookups waiting for the passes to be done: resumed by the next request (a pass's end) or stop. */
  private resume: (() => void) | null = null;
  private sweepTimer: NodeJS.Timeout | null = null;
  /** Paths seen broken once, not yet reported (by pathKey): the reason they were seen with. */
  private readonly suspects = new Map<string, string>();
  /** Asks again about the NICs of `suspects`. */
  private confirmTimer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    private readonly options: VerifierOptions,
    private readonly observer: VerifierObserver,
  ) {}

  /** Verifies these NICs (or all) once the current verification, if any, is done. */
  request(nics: Iterable<number> | 'all'): void {
    if (this.stopped) return;
    this.resumeLookups();
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

  /** Sweeps every NIC this often from now on (false: only after passes); at start and on a reload. */
  sweepEvery(intervalMs: number | false): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    if (intervalMs === false || this.stopped) return;
    this.sweepTimer = setInterval(() => this.request('all'), intervalMs);
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
    if (this.confirmTimer) clearTimeout(this.confirmTimer);
    this.resumeLookups();
  }

  /**
   * Between two turns of lookups: the next turn, and while a pass is due or running, until it
   * has ended. Lookups hold the event loop (the kernel answers them inside sendmsg()), so a
   * sweep, or the verification after a pass in a burst, would otherwise hold back every pass
   * behind it for a turn's share each time; what the pass touched is asked for again anyway.
   */
  private readonly betweenLookups = async (): Promise<void> => {
    // A turn first, also after each resume: a pass's end asks before its scheduler is idle.
    for (;;) {
      await new Promise((resolve) => setImmediate(resolve));
      if (this.stopped || this.options.current()) return;
      await new Promise<void>((resolve) => (this.resume = resolve));
    }
  };

  private resumeLookups(): void {
    const resume = this.resume;
    this.resume = null;
    resume?.();
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
        verdicts = await this.options.verify(nics === 'all' ? undefined : nics, this.betweenLookups);
      } catch (error) {
        this.observer.verifyFailed(error as Error);
        continue;
      }
      if (this.options.stateVersion() !== before) {
        // A pass ran or the kernel changed meanwhile: what was seen of the NICs it touched may
        // be half-converged. A pass that has ended asked for them again (pending); the rest
        // stands. While a change is still being taken in, or it may have touched every NIC,
        // everything is asked for again. (Throwing all away used to make a sweep of 1000
        // NICs, longer than the time between two events, start over after every event.)
        const stale = this.pending;
        if (stale === 'all' || !this.options.current()) {
          this.request(nics);
          continue;
        }
        this.record(nics, verdicts, stale ?? undefined);
        continue;
      }
      this.record(nics, verdicts);
    }
  }

  /** Takes the verdicts on `nics`, but for those in `stale` (to be verified again). */
  private record(nics: ReadonlySet<number> | 'all', verdicts: readonly PathVerdict[], stale?: ReadonlySet<number>): void {
    const fresh = new Map<number, Map<string, PathVerdict>>();
    for (const verdict of verdicts) mapSet(fresh, verdict.probe.ifindex, pathKey(verdict), verdict);
    const covered = nics === 'all' ? new Set([...this.byNic.keys(), ...fresh.keys()]) : nics;
    const suspected = new Set<number>();
    for (const ifindex of covered) {
      if (stale?.has(ifindex)) continue;
      const before = this.byNic.get(ifindex) ?? new Map<string, PathVerdict>();
      const now = fresh.get(ifindex) ?? new Map<string, PathVerdict>();
      // A path that no longer exists (address or NIC gone) neither breaks nor heals.
      for (const key of this.suspects.keys()) if (key.startsWith(`${ifindex}|`) && !now.has(key)) this.suspects.delete(key);
      for (const [key, verdict] of now) {
        const old = before.get(key);
        const broke = verdict.failure !== null && (!old || !old.failure || old.failure.reason !== verdict.failure.reason);
        if (broke && this.suspects.get(key) !== verdict.failure!.reason) {
          // Seen once: it stands as it was until asked again.
          this.suspects.set(key, verdict.failure!.reason);
          suspected.add(ifindex);
          now.set(key, old ?? { probe: verdict.probe, failure: null });
          continue;
        }
        this.suspects.delete(key);
        if (broke) this.observer.replyPathBroke(verdict);
        else if (!verdict.failure && old?.failure) this.observer.replyPathHealed(verdict);
      }
      if (now.size > 0) this.byNic.set(ifindex, now);
      else this.byNic.delete(ifindex);
      // Per name and family, as the gauge has them: a renamed NIC's old name loses its series.
      const holds = new Map<string, { ifname: string; family: Family; ok: boolean | null }>();
      for (const { probe } of before.values()) holds.set(nicKey(probe.ifname, probe.family), { ifname: probe.ifname, family: probe.family, ok: null });
      for (const { probe, failure } of now.values()) {
        const key = nicKey(probe.ifname, probe.family);
        holds.set(key, { ifname: probe.ifname, family: probe.family, ok: (holds.get(key)?.ok ?? true) && !failure });
      }
      for (const { ifname, family, ok } of holds.values()) this.observer.replyPathsOfNic(ifname, family, ok);
    }
    this.confirmLater(suspected);
  }

  /** Asks again about `nics` (suspected just now) after CONFIRM_AFTER_MS; no timer once nothing is suspected. */
  private confirmLater(nics: ReadonlySet<number>): void {
    if (this.suspects.size === 0 && this.confirmTimer) {
      clearTimeout(this.confirmTimer);
      this.confirmTimer = null;
    }
    if (nics.size === 0 || this.confirmTimer || this.stopped) return;
    this.confirmTimer = setTimeout(() => {
      this.confirmTimer = null;
      const again = new Set<number>();
      for (const key of this.suspects.keys()) again.add(Number(key.slice(0, key.indexOf('|'))));
      this.request(again);
    }, CONFIRM_AFTER_MS);
    this.confirmTimer.unref();
  }
}
