// The control loop: watcher events mark the state dirty; a pass drains what is queued,
// plans, diffs and applies; passes repeat until one finds nothing to do. Bursts of events
// coalesce into one pass because a pass always starts by draining the socket, and a pass
// is started with setImmediate, never after a delay. Failures are retried with backoff.
import { computeChanges, type Change } from '../domain/diff.js';
import type { Config } from '../config/config.js';
import type { Logger } from '../service/log.js';
import type { Metrics } from '../service/metrics.js';
import { routeKey, ruleKey } from '../domain/model.js';
import type { MirrorView } from '../domain/mirror.js';
import { RtnlClient } from '../netlink/client.js';
import { plan, type Plan } from '../domain/planner.js';
import { applyChanges, type ChangeOutcome } from '../kernel/reconciler.js';
import { Watcher } from '../kernel/watcher.js';

const BACKOFF_START_MS = 100;
const BACKOFF_MAX_MS = 30_000;
const PAST_TENSE = { add: 'added', replace: 'replaced with', delete: 'deleted' } as const;

export type Trigger = 'startup' | 'event' | 'resync' | 'reload' | 'retry' | 'drift';

export interface PassResult {
  readonly changes: number;
  readonly failures: number;
}

export class Daemon {
  private readonly client: RtnlClient;
  private readonly watcher: Watcher;
  private dirty = false;
  private trigger: Trigger = 'startup';
  private loop: Promise<void> | null = null;
  private passStartedAt: number | null = null;
  private immediate: NodeJS.Immediate | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private backoffMs = BACKOFF_START_MS;
  /** When the oldest event not yet converged was read off the socket. */
  private pendingEventTime: bigint | null = null;
  /** When the kernel acknowledged the last change made since pendingEventTime, if any. */
  private lastWriteAckedAt: bigint | null = null;
  /** Rule and route keys of the last plan the kernel fully matched: losing one is drift. */
  private convergedKeys = new Set<string>();
  private lastPlan: Plan | null = null;
  /** Which interface each table was last planned for, so log lines can name it after it left. */
  private tableInterfaces = new Map<number, string>();
  private lastProblems = new Set<string>();
  /** Interfaces that have symroute_interface_* series, so departed ones can be removed. */
  private gaugedInterfaces = new Set<string>();
  private started = false;
  private stopping = false;
  private isInSync = false;
  /** Called whenever a pass finds the kernel in sync. */
  onConverged: () => void = () => undefined;
  lastPass: PassResult = { changes: 0, failures: 0 };

  constructor(
    private config: Config,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {
    const discarded = (reason: string) => {
      metrics.discardedMessages.inc();
      log.warn({ reason }, 'discarded a netlink message');
    };
    this.client = new RtnlClient({
      completed: (op, error) => {
        metrics.netlinkRequests.inc({ op, result: error ? 'error' : 'ok' });
        if (error) metrics.netlinkErrors.inc({ op, errno: error.code });
      },
      dumpInterrupted: (action) => {
        metrics.resyncs.inc({ reason: 'dump_interrupted' });
        log.info({ action }, 'dump interrupted by concurrent changes, dumping again');
      },
      discarded,
    });
    this.watcher = new Watcher(this.client, {
      changed: (eventTime, resync) => {
        if (!this.started) return; // start() runs the first pass itself
        this.pendingEventTime ??= eventTime;
        this.wake(resync ? 'resync' : 'event');
      },
      resyncStarted: (reason, detail) => {
        if (reason === 'startup') return log.debug('dumping kernel state');
        this.markOutOfSync();
        metrics.resyncs.inc({ reason });
        log.warn({ reason, detail }, `dumping kernel state again (${reason})`);
      },
      discarded,
    });
  }

  /** Subscribes, dumps, and runs passes until the first one that needs nothing more. */
  async start(): Promise<void> {
    await this.watcher.start();
    this.started = true;
    this.pendingEventTime = process.hrtime.bigint();
    this.wake('startup');
    await this.idle();
  }

  /**
   * For `run --once`: starts, then retries failed passes a few times (after a re-dump and a
   * pause) before giving up. Resolves true when the kernel ended up in sync.
   */
  async converge(attempts: number): Promise<boolean> {
    await this.start();
    for (let attempt = 1; attempt < attempts && this.lastPass.failures > 0 && !this.stopping; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, BACKOFF_START_MS * 2 ** attempt));
      await this.watcher.settled();
      this.wake('retry');
      await this.idle();
    }
    return this.lastPass.failures === 0;
  }

  /** Resolves when no pass is running or scheduled. */
  async idle(): Promise<void> {
    while (this.loop || this.immediate) {
      if (this.immediate) await new Promise((resolve) => setImmediate(resolve));
      if (this.loop) await this.loop;
    }
  }

  /** Applies a new config as a diff against the old one; resolves once converged again. */
  async reload(config: Config): Promise<void> {
    if (config.protocol !== this.config.protocol) {
      // Objects under the old number would become foreign: never touched, never cleaned up.
      throw new Error(
        `protocol: cannot change from ${this.config.protocol} to ${config.protocol} while running; ` +
          'stop symroute with on_exit: remove, then start it with the new protocol',
      );
    }
    this.config = config;
    this.wake('reload');
    await this.idle();
  }

  /** True once a pass found the kernel matching the plan, until something is known to differ. */
  get inSync(): boolean {
    return this.isInSync;
  }

  /**
   * Why the daemon is not alive, or null when it is: both netlink sockets — requests and
   * notifications — answer a ping within `timeoutMs`. (That the event loop runs is shown by
   * this being answered at all.)
   */
  async liveness(timeoutMs: number): Promise<string | null> {
    const [request, notify] = await Promise.allSettled([this.client.ping(timeoutMs), this.watcher.pingSocket(timeoutMs)]);
    const problems = [
      request.status === 'rejected' && `request socket: ${(request.reason as Error).message}`,
      notify.status === 'rejected' && `notification socket: ${(notify.reason as Error).message}`,
    ].filter((problem): problem is string => typeof problem === 'string');
    return problems.length > 0 ? problems.join('; ') : null;
  }

  /** False when a pass has been running for longer than `maxPassMs` (wedged). */
  healthy(maxPassMs: number): boolean {
    return this.passStartedAt === null || Date.now() - this.passStartedAt < maxPassMs;
  }

  /** `8 interfaces, 8 rules, 16 routes, in sync` — for systemd's STATUS= and logs. */
  summary(): string {
    const interfaces = this.lastPlan?.interfaces.length ?? 0;
    const rules = this.lastPlan?.rules.length ?? 0;
    const routes = this.lastPlan?.routes.length ?? 0;
    return `${interfaces} interfaces, ${rules} rules, ${routes} routes, ${this.isInSync ? 'in sync' : 'out of sync'}`;
  }

  /**
   * Lets the pass under way finish and starts no other, so that a stop during start-up
   * makes start() and converge() return early; stop() follows.
   */
  interrupt(): void {
    this.stopping = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  /** Call once start() or converge() has returned. */
  async stop(removeOwned: boolean): Promise<void> {
    this.interrupt();
    await this.idle();
    if (removeOwned) {
      const nothing: Plan = {
        routes: [],
        rules: [],
        interfaces: [],
        protectedTables: this.lastPlan?.protectedTables ?? new Set(),
        problems: [],
      };
      // What the last pass installed, as its notifications tell; a re-dump under way first ends.
      this.watcher.drain();
      await this.watcher.settled();
      const phases = computeChanges(nothing, this.watcher.mirror, this.config.protocol);
      this.logOutcomes(await applyChanges(this.client, phases, this.linkName));
    }
    this.watcher.stop();
    this.client.close();
  }

  private wake(trigger: Trigger): void {
    if (!this.dirty) this.trigger = trigger;
    this.dirty = true;
    if (this.loop || this.immediate || this.stopping) return;
    this.immediate = setImmediate(() => {
      this.immediate = null;
      this.loop = this.runPasses().finally(() => (this.loop = null));
    });
  }

  private async runPasses(): Promise<void> {
    while (this.dirty && !this.stopping) {
      this.dirty = false;
      this.passStartedAt = Date.now();
      try {
        this.lastPass = await this.pass(this.trigger);
      } catch (error) {
        this.log.error({ err: error }, `reconcile pass failed: ${(error as Error).message}`);
        this.lastPass = { changes: 0, failures: 1 };
        this.markOutOfSync();
        this.scheduleRetry();
      } finally {
        this.passStartedAt = null;
      }
    }
  }

  private async pass(trigger: Trigger): Promise<PassResult> {
    this.watcher.drain();
    await this.watcher.settled();
    const mirror = this.watcher.mirror;
    const desired = plan(this.config, mirror);
    this.lastPlan = desired;
    for (const planned of desired.interfaces) this.tableInterfaces.set(planned.table, planned.link.name);
    this.reportProblems(desired.problems);
    const phases = computeChanges(desired, mirror, this.config.protocol);
    const changes = phases.flat();
    const drift = changes.filter((change) => change.op !== 'delete' && this.convergedKeys.has(changeKey(change)));
    this.metrics.reconciles.inc({ trigger: drift.length > 0 ? 'drift' : trigger });
    this.metrics.managedInterfaces.set(desired.interfaces.length);
    this.updateInterfaceGauges(desired, changes);
    if (changes.length === 0) {
      this.convergedKeys = new Set([...desired.routes.map(routeKey), ...desired.rules.map(ruleKey)]);
      // In sync, nothing is left to log about interfaces that went away: forget them.
      this.tableInterfaces = new Map(desired.interfaces.map((planned) => [planned.table, planned.link.name]));
      this.recordConvergence(mirror);
      return { changes: 0, failures: 0 };
    }
    for (const change of drift) this.metrics.driftRepairs.inc({ kind: change.kind });
    if (drift.length > 0) this.log.warn({ repairs: drift.length }, `repairing ${drift.length} rules/routes changed by someone else`);
    const outcomes = await applyChanges(this.client, phases, this.linkName);
    this.lastWriteAckedAt = process.hrtime.bigint();
    this.logOutcomes(outcomes);
    const failures = outcomes.filter((o) => o.error);
    if (failures.length < outcomes.length) this.wake(trigger); // verify what we did in a fresh pass
    if (failures.length > 0) {
      this.markOutOfSync();
      if (failures.some(isStaleMirror)) this.watcher.requestResync('stale_mirror');
      this.scheduleRetry();
    }
    return { changes: changes.length, failures: failures.length };
  }

  private recordConvergence(mirror: MirrorView): void {
    this.backoffMs = BACKOFF_START_MS;
    this.isInSync = true;
    this.metrics.inSync.set(1);
    this.updateOwnedGauges(mirror);
    const since = this.pendingEventTime;
    const acked = this.lastWriteAckedAt;
    this.pendingEventTime = null;
    this.lastWriteAckedAt = null;
    // Only a pass that had to write something is a convergence worth timing.
    if (since !== null && acked !== null) {
      const seconds = Number(acked - since) / 1e9;
      const { rules = [], routes = [] } = this.lastPlan ?? {};
      this.metrics.convergenceSeconds.observe(seconds);
      this.metrics.lastConvergence.set(Date.now() / 1000);
      this.log.info(
        { durationSeconds: seconds, rules: rules.length, routes: routes.length },
        `converged in ${(seconds * 1000).toFixed(1)} ms (${rules.length} rules, ${routes.length} routes)`,
      );
    }
    this.onConverged();
  }

  private markOutOfSync(): void {
    this.isInSync = false;
    this.metrics.inSync.set(0);
  }

  private updateOwnedGauges(mirror: MirrorView): void {
    const count = (family: 4 | 6) => ({
      rules: [...mirror.rules.values()]
        .filter(({ rule }) => rule.family === family && rule.protocol === this.config.protocol)
        .reduce((n, { count }) => n + count, 0),
      routes: [...mirror.routes.values()].filter((r) => r.family === family && r.protocol === this.config.protocol).length,
    });
    for (const family of [4, 6] as const) {
      const label = { family: family === 4 ? 'ipv4' : 'ipv6' };
      const owned = count(family);
      this.metrics.managedRules.set(label, owned.rules);
      this.metrics.managedRoutes.set(label, owned.routes);
    }
  }

  /** Per managed interface: its table, and whether a change for it is still pending. */
  private updateInterfaceGauges(desired: Plan, changes: readonly Change[]): void {
    const pending = new Set(changes.map((change) => this.changeInterface(change)));
    const names = new Set<string>();
    for (const { link, table } of desired.interfaces) {
      names.add(link.name);
      this.metrics.interfaceInSync.set({ ifname: link.name }, pending.has(link.name) ? 0 : 1);
      this.metrics.interfaceTable.set({ ifname: link.name }, table);
    }
    for (const ifname of this.gaugedInterfaces) {
      if (names.has(ifname)) continue;
      this.metrics.interfaceInSync.remove({ ifname });
      this.metrics.interfaceTable.remove({ ifname });
    }
    this.gaugedInterfaces = names;
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.stopping) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, BACKOFF_MAX_MS);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.wake('retry');
    }, delay);
    this.retryTimer.unref();
  }

  private reportProblems(problems: readonly string[]): void {
    const current = new Set(problems);
    for (const problem of current) if (!this.lastProblems.has(problem)) this.log.warn(problem);
    this.lastProblems = current;
  }

  private logOutcomes(outcomes: readonly ChangeOutcome[]): void {
    for (const outcome of outcomes) {
      const ifname = this.changeInterface(outcome.change);
      if (outcome.error) {
        this.log.error({ errno: outcome.error.code, ifname }, outcome.error.message);
      } else {
        this.log.info({ ifname }, `${PAST_TENSE[outcome.change.op]} ${outcome.description}${ifname ? ` (${ifname})` : ''}`);
      }
    }
  }

  /** The interface a change is for: a route's device, or the owner of a rule's table. */
  private changeInterface(change: Change): string | undefined {
    if (change.kind === 'route') return change.route.oif !== undefined ? this.linkName(change.route.oif) : undefined;
    return this.tableInterfaces.get(change.rule.table);
  }

  private readonly linkName = (ifindex: number): string => this.watcher.mirror.links.get(ifindex)?.name ?? `if${ifindex}`;
}

const changeKey = (change: Change): string => (change.kind === 'route' ? routeKey(change.route) : ruleKey(change.rule));

/** An add that hit an existing object, or a delete of a missing one: the mirror is behind. */
function isStaleMirror(outcome: ChangeOutcome): boolean {
  const code = outcome.error?.code;
  return outcome.change.op === 'delete' ? code === 'ESRCH' || code === 'ENOENT' : code === 'EEXIST';
}
