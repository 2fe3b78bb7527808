// The control loop: watcher events mark the state dirty; a pass drains what is queued,
// plans, diffs and applies; passes repeat until one finds nothing to do. Bursts of events
// coalesce into one pass because a pass always starts by draining the socket, and a pass
// is started with setImmediate, never after a delay. Failures are retried with backoff.
import { computeChanges, type Change } from './diff.js';
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { RtnlClient } from './netlink/client.js';
import { plan, type Plan } from './planner.js';
import { applyChanges, type ChangeOutcome } from './reconciler.js';
import { Watcher } from './watcher.js';

const BACKOFF_START_MS = 100;
const BACKOFF_MAX_MS = 30_000;
const PAST_TENSE = { add: 'added', replace: 'replaced with', delete: 'deleted' } as const;

export interface PassResult {
  readonly changes: number;
  readonly failures: number;
}

export class Daemon {
  private readonly client: RtnlClient;
  private readonly watcher: Watcher;
  private dirty = false;
  private loop: Promise<void> | null = null;
  private immediate: NodeJS.Immediate | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private backoffMs = BACKOFF_START_MS;
  /** When the oldest event not yet converged was read off the socket. */
  private pendingEventTime: bigint | null = null;
  private lastPlan: Plan | null = null;
  private lastProblems = new Set<string>();
  /** Whether a pass since pendingEventTime wrote anything (only then is it a convergence). */
  private wroteSinceEvent = false;
  private stopping = false;
  lastPass: PassResult = { changes: 0, failures: 0 };

  constructor(
    private config: Config,
    private readonly log: Logger,
  ) {
    this.client = new RtnlClient({
      dumpInterrupted: (action) => log.info({ action }, 'dump interrupted by concurrent changes, dumping again'),
      discarded: (reason) => log.warn({ reason }, 'discarded a netlink message'),
    });
    this.watcher = new Watcher(this.client, {
      changed: (eventTime) => {
        this.pendingEventTime ??= eventTime;
        this.wake();
      },
      resyncStarted: (reason, detail) =>
        (reason === 'startup' ? log.debug : log.warn).call(log, { reason, detail }, 'dumping kernel state'),
      discarded: (reason) => log.warn({ reason }, 'discarded a netlink message'),
    });
  }

  /** Subscribes, dumps, and runs passes until the first one that needs nothing more. */
  async start(): Promise<void> {
    await this.watcher.start();
    this.wake();
    await this.idle();
  }

  /** Resolves when no pass is running or scheduled. */
  async idle(): Promise<void> {
    while (this.loop || this.immediate) {
      if (this.immediate) await new Promise((resolve) => setImmediate(resolve));
      if (this.loop) await this.loop;
    }
  }

  async stop(removeOwned: boolean): Promise<void> {
    this.stopping = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.idle();
    if (removeOwned) {
      const nothing: Plan = { routes: [], rules: [], interfaces: [], protectedTables: this.lastPlan?.protectedTables ?? new Set(), problems: [] };
      const outcomes = await applyChanges(this.client, computeChanges(nothing, this.watcher.mirror, this.config.protocol), this.linkName);
      this.logOutcomes(outcomes);
    }
    this.watcher.stop();
    this.client.close();
  }

  private wake(): void {
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
      try {
        this.lastPass = await this.pass();
      } catch (error) {
        this.log.error({ err: error }, 'reconcile pass failed');
        this.lastPass = { changes: 0, failures: 1 };
        this.scheduleRetry();
      }
    }
  }

  private async pass(): Promise<PassResult> {
    this.watcher.drain();
    await this.watcher.settled();
    const mirror = this.watcher.mirror;
    const desired = plan(this.config, mirror);
    this.lastPlan = desired;
    this.reportProblems(desired.problems);
    const phases = computeChanges(desired, mirror, this.config.protocol);
    const total = phases.reduce((n, phase) => n + phase.length, 0);
    if (total === 0) {
      this.converged();
      return { changes: 0, failures: 0 };
    }
    const outcomes = await applyChanges(this.client, phases, this.linkName);
    this.wroteSinceEvent = true;
    this.logOutcomes(outcomes);
    const failures = outcomes.filter((o) => o.error);
    if (failures.length < outcomes.length) this.dirty = true; // verify what we did in a fresh pass
    if (failures.some((o) => isStaleMirror(o))) this.watcher.requestResync('stale');
    if (failures.length > 0) this.scheduleRetry();
    return { changes: total, failures: failures.length };
  }

  private converged(): void {
    this.backoffMs = BACKOFF_START_MS;
    const since = this.pendingEventTime;
    const wrote = this.wroteSinceEvent;
    this.pendingEventTime = null;
    this.wroteSinceEvent = false;
    if (since === null || !wrote) return;
    const seconds = Number(process.hrtime.bigint() - since) / 1e9;
    const { rules = [], routes = [] } = this.lastPlan ?? {};
    this.log.info(
      { durationSeconds: seconds, rules: rules.length, routes: routes.length },
      `converged in ${(seconds * 1000).toFixed(1)} ms (${rules.length} rules, ${routes.length} routes)`,
    );
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.stopping) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, BACKOFF_MAX_MS);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.wake();
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
      const ifname = changeInterface(outcome.change, this.linkName);
      if (outcome.error) {
        this.log.error({ errno: outcome.error.code, ifname }, outcome.error.message);
      } else {
        this.log.info({ ifname }, `${PAST_TENSE[outcome.change.op]} ${outcome.description}${ifname ? ` (${ifname})` : ''}`);
      }
    }
  }

  private readonly linkName = (ifindex: number): string => this.watcher.mirror.links.get(ifindex)?.name ?? `if${ifindex}`;
}

/** An add that hit an existing object, or a delete of a missing one: the mirror is behind. */
function isStaleMirror(outcome: ChangeOutcome): boolean {
  const code = outcome.error?.code;
  return outcome.change.op === 'delete' ? code === 'ESRCH' || code === 'ENOENT' : code === 'EEXIST';
}

function changeInterface(change: Change, linkName: (ifindex: number) => string): string | undefined {
  return change.kind === 'route' && change.route.oif !== undefined ? linkName(change.route.oif) : undefined;
}
