// What one pass does — not when it runs (scheduler.ts decides that): take in what the
// watcher has queued, bring the desired state up to date, diff it against what symroute owns,
// apply the changes, and account for the outcome in the drift ledger and a pass report that
// the observer turns into metrics and log lines.
import type { Config } from '../config/config.js';
import { priorityCollision } from '../domain/collisions.js';
import { changeKey, changesWithin, computeChanges, wholeScope, type Change } from '../domain/diff.js';
import type { KernelEvent } from '../domain/events.js';
import { linkName, type MirrorView } from '../domain/mirror.js';
import { routeKey, ruleKey } from '../domain/keys.js';
import { addScope, DesiredState, emptyScope, type InterfacePlan, type Plan, type Scope, type Update } from '../domain/planner.js';
import type { Host } from '../host/host.js';
import { applyChanges, describeChange, type ChangeOutcome } from '../kernel/reconciler.js';
import type { Watcher } from '../kernel/watcher.js';
import type { RtnlClient } from '../netlink/client.js';
import { ConflictTracker, WINDOW_MS } from './conflicts.js';
import { DriftLedger } from './drift.js';
import { newPassReport, type ChangeReport, type DaemonObserver, type InterfaceState, type PassReport } from './observer.js';
import type { PassVerdict, Trigger } from './scheduler.js';
import { StageMeter } from './stages.js';

export interface PassResult {
  readonly changes: number;
  readonly failures: number;
}

export class Converger {
  /** When the oldest event not yet converged was read off the socket. */
  private pendingEventTime: bigint | null = null;
  /** When the kernel acknowledged the last change made since pendingEventTime, if any. */
  private lastWriteAckedAt: bigint | null = null;
  private readonly ledger = new DriftLedger();
  /** The desired state, kept current from the mirror's journal between whole passes. */
  private desired: DesiredState;
  /** Start-up, a reload or a re-dump: the next pass plans and diffs everything. */
  private wholePassDue = true;
  /** Tables and rules whose last diff found something to do: looked at again until settled. */
  private unsettled: Scope = emptyScope();
  /** Everything the diff looked at since the last convergence (null: everything). */
  private sinceConverged: Scope | null = null;
  /** Which someone-else's rules sit at symroute's priorities (re-checked when foreign rules change). */
  private priorityProblem: string | undefined;
  /** Problems reported and still standing. */
  private reportedProblems = new Set<string>();
  /** Which interface each table was last planned for, so reports can name it after it left. */
  private tableInterfaces = new Map<number, string>();
  /** A whole pass ran: at the next convergence, forget the tables of interfaces gone since. */
  private forgetDepartedTables = false;
  /** Interfaces a pending change was for at the last pass. */
  private pendingInterfaces = new Set<string>();
  private isInSync = false;
  /** The watcher's generation the current pass planned from. */
  private plannedAt = 0;
  /** Objects someone else keeps removing: repaired with backoff instead of at once. */
  private readonly conflicts = new ConflictTracker();
  private readonly conflicted = new Map<string, { readonly change: Change; readonly description: string }>();
  /** Called whenever a pass finds the kernel in sync. */
  onConverged: () => void = () => undefined;
  lastPass: PassResult = { changes: 0, failures: 0 };

  constructor(
    private config: Config,
    private readonly client: RtnlClient,
    private readonly watcher: Watcher,
    private readonly host: Host,
    private readonly observer: DaemonObserver,
    private readonly stages: StageMeter = new StageMeter(),
  ) {
    this.desired = new DesiredState(config);
  }

  /** A reload: the next pass plans everything under the new config; the host looks afresh. */
  reconfigure(config: Config): void {
    this.host.reconfigure(config);
    this.config = config;
    this.desired = new DesiredState(config);
    this.wholePassDue = true;
  }

  /** Objects in conflict, described, for /healthz. */
  /** The watcher's generation the last pass planned from. */
  get plannedGeneration(): number {
    return this.plannedAt;
  }

  /** The desired state's interface plans (all, or those in `only`). */
  interfacePlans(only?: ReadonlySet<number>): InterfacePlan[] {
    return this.desired.interfacePlans(only);
  }

  get conflictList(): string[] {
    return this.conflicts.conflicts.map((key) => this.conflicted.get(key)?.description ?? key);
  }

  /** True once a pass found the kernel matching the plan, until something is known to differ. */
  get inSync(): boolean {
    return this.isInSync;
  }

  /** `8 interfaces, 8 rules, 16 routes, in sync` — for systemd's STATUS= and logs. */
  summary(): string {
    const interfaces = this.desired.interfaceCount;
    const rules = this.desired.rules.size;
    const routes = this.desired.routeCount;
    return `${interfaces} interfaces, ${rules} rules, ${routes} routes, ${this.isInSync ? 'in sync' : 'out of sync'}`;
  }

  /**
   * The mirror changed at `time` (convergence is timed from the oldest change not yet
   * converged), through these notifications, or through a re-dump when `events` is null.
   */
  observe(time: bigint, events: readonly KernelEvent[] | null): void {
    this.pendingEventTime ??= time;
    if (events !== null) return this.ledger.observe(events, this.watcher.mirror);
    this.wholePassDue = true;
    this.ledger.redumped(this.watcher.mirror);
  }

  markOutOfSync(): void {
    this.isInSync = false;
    this.observer.outOfSync();
  }

  async pass(trigger: Trigger): Promise<PassVerdict> {
    const report = newPassReport(this.isInSync);
    const depth = this.stages.begin('plan');
    try {
      this.lastPass = await this.reconcile(trigger, report);
    } catch (error) {
      this.lastPass = { changes: 0, failures: 1 };
      this.isInSync = false;
      // Whatever this pass had taken in is not accounted for: look at everything next time.
      this.wholePassDue = true;
      throw error;
    } finally {
      report.inSync = this.isInSync;
      // Whatever the pass had open (a stage it threw in) ends here.
      this.stages.end(depth + 1);
      this.stages.next('report');
      try {
        this.observer.passed(report);
      } finally {
        this.stages.end(depth);
      }
    }
    if (report.owned) this.onConverged();
    return {
      again: this.lastPass.changes > this.lastPass.failures,
      failed: this.lastPass.failures > 0,
      requeueAfterMs: this.conflictRequeue(),
    };
  }

  /** Deletes everything symroute owns (on_exit: remove). */
  async removeOwned(): Promise<void> {
    const nothing: Plan = {
      routes: [],
      rules: [],
      interfaces: [],
      protectedTables: new Set(this.desired.protectedTables),
      sharedSubnets: [],
      problems: [],
    };
    // What the last pass installed, as its notifications tell; a re-dump under way first ends.
    this.watcher.drain();
    await this.watcher.settled();
    const phases = computeChanges(nothing, this.watcher.mirror, this.config.protocol);
    this.observer.removed(this.changeReports(await applyChanges(this.client, phases, this.linkName)));
  }

  /**
   * Only what decides the requests comes before them: take in the queued notifications,
   * update the desired state, diff, hold back conflicted repairs. The report's figures, the
   * host's files (sysctls, table names) and the problems found wait until the kernel has
   * answered the last request.
   */
  private async reconcile(trigger: Trigger, report: PassReport): Promise<PassResult> {
    const { stages } = this;
    stages.run('receive', () => this.watcher.drain());
    await this.watcher.settled();
    const mirror = this.watcher.mirror;
    this.plannedAt = this.watcher.generation;
    const journal = this.watcher.takeChanges();
    const whole = this.wholePassDue;
    this.wholePassDue = false;
    const update = whole ? this.rebuild(mirror) : this.desired.update(mirror, journal);
    const scope = whole ? wholeScope(this.desired, mirror, this.config.protocol) : mergeScopes(update.scope, this.unsettled);
    if (whole) this.sinceConverged = null;
    else if (this.sinceConverged) addScope(this.sinceConverged, scope);
    stages.next('diff');
    const phases = changesWithin(this.desired, mirror, this.config.protocol, scope);
    const changes = phases.flat();
    this.unsettled = scopeOf(changes);
    const drift = changes.filter((change) => this.ledger.isRepair(change));
    const held = this.holdConflicts(drift, report);
    // A held repair is still drift when its turn comes.
    for (const change of held) this.ledger.stillDrifted(change);
    const applied = held.size === 0 ? phases : phases.map((phase) => phase.filter((c) => !held.has(c))).filter((p) => p.length > 0);
    for (const change of applied.flat()) this.ledger.expect(change, true);
    let outcomes: ChangeOutcome[] = [];
    if (applied.length > 0) {
      stages.next('apply');
      outcomes = await applyChanges(this.client, applied, this.linkName);
      this.lastWriteAckedAt = process.hrtime.bigint();
    }
    stages.next('host');
    const wholePlan = this.afterWrites(whole, update, journal.rules.some((rule) => rule.protocol !== this.config.protocol), report);
    stages.next('report');
    report.countedAs = drift.length > 0 ? 'drift' : trigger;
    report.managedInterfaces = this.desired.interfaceCount;
    report.unusableGateways = { 4: this.desired.unusableGateways(4), 6: this.desired.unusableGateways(6) };
    report.interfaces = this.interfaceStates(wholePlan, update, changes);
    if (whole) this.forgetDepartedTables = true;
    if (changes.length === 0) {
      this.converged(mirror, report);
      return { changes: 0, failures: 0 };
    }
    // Only held repairs are missing: out of sync until their turn comes.
    if (applied.length === 0) {
      this.isInSync = false;
      return { changes: 0, failures: 0 };
    }
    report.repairs.push(...drift.filter((change) => !held.has(change)));
    for (const { change, error } of outcomes) if (error) this.ledger.expect(change, false);
    const now = Date.now();
    for (const outcome of outcomes) if (!outcome.error) this.conflicts.repaired(changeKey(outcome.change), now);
    if (held.size > 0) this.isInSync = false;
    const reports = this.changeReports(outcomes);
    report.outcomes.push(...reports);
    const failures = outcomes.filter((o) => o.error);
    if (failures.length > 0) {
      this.isInSync = false;
      // Only a refusal that stands says the mirror is behind; an overtaken one is planned again.
      if (reports.some((r) => !r.overtaken && isStaleMirror(r))) this.watcher.requestResync('stale_mirror');
    }
    return { changes: changes.length - held.size, failures: failures.length };
  }

  /**
   * What a pass does once its requests are answered: problems noted for the report, the
   * host's sysctls and table names brought in line. Returns the whole plan when it was built
   * (a whole pass, or tables that changed).
   */
  private afterWrites(whole: boolean, update: Update, foreignRules: boolean, report: PassReport): Plan | undefined {
    const mirror = this.watcher.mirror;
    // Appearing after start, someone else's rules at our priority are reported, never removed.
    this.noteProblems(whole, update, whole || foreignRules ? priorityCollision(this.config, mirror) : this.priorityProblem, report);
    if (whole || update.sharedChanged) this.host.sharedSubnets(this.desired.sharedSubnetInterfaces(), this.config.sysctl === 'manage');
    const wholePlan = whole || update.tablesChanged ? this.desired.toPlan() : undefined;
    if (wholePlan) this.host.tablesPlanned(wholePlan, this.config.protocol);
    this.noteTableInterfaces(whole ? wholePlan : undefined, update);
    return whole ? wholePlan : undefined;
  }

  private rebuild(mirror: MirrorView): Update {
    this.desired = new DesiredState(this.config);
    return this.desired.rebuild(mirror);
  }

  /** The kernel matches the desired state. */
  private converged(mirror: MirrorView, report: PassReport): void {
    this.ledger.converged(this.desired, this.sinceConverged);
    this.sinceConverged = emptyScope();
    if (this.forgetDepartedTables) {
      this.tableInterfaces = new Map(this.desired.toPlan().interfaces.map((planned) => [planned.table, planned.link.name]));
      this.forgetDepartedTables = false;
    }
    this.settleConflicts(report);
    this.isInSync = true;
    report.owned = {
      rules: { 4: mirror.ruleCount(this.config.protocol, 4), 6: mirror.ruleCount(this.config.protocol, 6) },
      routes: { 4: mirror.routeCount(this.config.protocol, 4), 6: mirror.routeCount(this.config.protocol, 6) },
    };
    const since = this.pendingEventTime;
    const acked = this.lastWriteAckedAt;
    this.pendingEventTime = null;
    this.lastWriteAckedAt = null;
    // Only a pass that had to write something is a convergence worth timing.
    if (since !== null && acked !== null) {
      report.convergence = {
        seconds: Number(acked - since) / 1e9,
        rules: this.desired.rules.size,
        routes: this.desired.routeCount,
        stages: this.stages.since(),
      };
    }
  }

  /** Which drift repairs must wait: objects someone keeps removing are put back with backoff. */
  private holdConflicts(drift: readonly Change[], report: PassReport): Set<Change> {
    const held = new Set<Change>();
    const now = Date.now();
    for (const change of drift) {
      const key = changeKey(change);
      const verdict = this.conflicts.removed(key, now);
      if (verdict.counted) report.conflictRemovals.push(change.kind);
      if (verdict.started) {
        const description = describeChange(change, this.linkName);
        this.conflicted.set(key, { change, description });
        report.conflictsStarted.push({ description, removals: verdict.removals, waitSeconds: ((verdict.retryAt ?? now) - now) / 1000 });
      }
      if (!verdict.now) held.add(change);
    }
    report.conflictsActive = this.conflicts.conflicts.length;
    return held;
  }

  private settleConflicts(report: PassReport): void {
    const present = (key: string) => {
      const conflicted = this.conflicted.get(key);
      return conflicted !== undefined && this.ledger.holds(conflicted.change);
    };
    for (const key of this.conflicts.settle(present, Date.now())) {
      report.conflictsEnded.push(this.conflicted.get(key)?.description ?? key);
      this.conflicted.delete(key);
    }
    report.conflictsActive = this.conflicts.conflicts.length;
  }

  /** When a pass is due for the next held repair, or to notice a conflict has ended (no event may come). */
  private conflictRequeue(): number | undefined {
    const now = Date.now();
    const next = this.conflicts.nextRetry(now) ?? (this.conflicts.conflicts.length > 0 ? now + WINDOW_MS : undefined);
    return next === undefined ? undefined : next - now + 1;
  }

  /**
   * Added to, not replaced: a rule of an interface no longer managed is deleted now and its
   * report still names the interface.
   */
  private noteTableInterfaces(wholePlan: Plan | undefined, update: Update): void {
    if (wholePlan) for (const planned of wholePlan.interfaces) this.tableInterfaces.set(planned.table, planned.link.name);
    for (const name of update.interfaces) {
      const planned = this.desired.interfaceNamed(name);
      if (planned) this.tableInterfaces.set(planned.table, name);
    }
  }

  /**
   * Per managed interface: its table, and whether a change for it is still pending. After a
   * whole pass every interface is looked at; otherwise only those that came, went, changed,
   * or had or have a pending change.
   */
  private interfaceStates(wholePlan: Plan | undefined, update: Update, changes: readonly Change[]): PassReport['interfaces'] {
    const pending = new Set(changes.map((change) => this.changeInterface(change)).filter((name) => name !== undefined));
    const affected = wholePlan
      ? wholePlan.interfaces.map((planned) => planned.link.name)
      : new Set([...update.interfaces, ...pending, ...this.pendingInterfaces]);
    this.pendingInterfaces = pending;
    const states = new Map<string, InterfaceState>();
    for (const ifname of affected) {
      const planned = this.desired.interfaceNamed(ifname);
      states.set(ifname, planned ? { table: planned.table, inSync: !pending.has(ifname) } : null);
    }
    return { complete: wholePlan !== undefined, states };
  }

  /** Logs each problem once, when it appears (again). */
  private noteProblems(whole: boolean, update: Update, priorityProblem: string | undefined, report: PassReport): void {
    if (priorityProblem !== undefined && priorityProblem !== this.priorityProblem) report.problems.push(priorityProblem);
    this.priorityProblem = priorityProblem;
    const before = this.reportedProblems;
    const standing = whole ? new Set<string>() : before;
    for (const problem of update.cleared) standing.delete(problem);
    for (const problem of update.raised) {
      if (!before.has(problem)) report.problems.push(problem);
      standing.add(problem);
    }
    this.reportedProblems = standing;
  }

  private changeReports(outcomes: readonly ChangeOutcome[]): ChangeReport[] {
    return outcomes.map((outcome) => ({ ...outcome, ifname: this.changeInterface(outcome.change), overtaken: this.overtaken(outcome) }));
  }

  /**
   * A refusal the kernel's state had already moved past: an add after a device went down or
   * an address went away while the request was on its way (the mirror changed since the
   * pass planned), or a delete of an object the kernel dropped meanwhile on its own (the last
   * IPv4 address of a device takes its routes, unannounced) or someone else deleted: the
   * mirror, having read of it, holds the object no more. The pass that follows plans from
   * that. A refusal that stands is an error then.
   */
  private overtaken(outcome: ChangeOutcome): boolean {
    if (!outcome.error) return false;
    this.watcher.drain();
    const change = outcome.change;
    if (change.op === 'delete') {
      const mirror = this.watcher.mirror;
      return change.kind === 'route' ? !mirror.routes.has(routeKey(change.route)) : !mirror.rules.has(ruleKey(change.rule));
    }
    return this.watcher.generation !== this.plannedAt;
  }

  /** The interface a change is for: a route's device, or the owner of a rule's table. */
  private changeInterface(change: Change): string | undefined {
    if (change.kind === 'route') return change.route.oif !== undefined ? this.linkName(change.route.oif) : undefined;
    return this.tableInterfaces.get(change.rule.table);
  }

  private readonly linkName = (ifindex: number): string => linkName(this.watcher.mirror, ifindex);
}

const mergeScopes = (a: Scope, b: Scope): Scope => addScope(addScope(emptyScope(), a), b);

/** The tables and rules these changes are about: what the next pass must look at again. */
function scopeOf(changes: readonly Change[]): Scope {
  const scope = emptyScope();
  for (const change of changes) {
    if (change.kind === 'route') scope.tables.add(change.route.table);
    else scope.ruleKeys.add(ruleKey(change.rule));
  }
  return scope;
}

/** An add that hit an existing object, or a delete of a missing one: the mirror is behind. */
function isStaleMirror(outcome: ChangeOutcome): boolean {
  const code = outcome.error?.code;
  return outcome.change.op === 'delete' ? code === 'ESRCH' || code === 'ENOENT' : code === 'EEXIST';
}
