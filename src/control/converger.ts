// What one pass does — not when it runs (scheduler.ts decides that): take in what the
// watcher has queued, plan from the mirror, diff against what symroute owns, apply the
// changes, and account for the outcome (drift repairs, convergence time, in-sync state,
// owned gauges, one log line per change).
import type { Config } from '../config/config.js';
import { priorityCollision } from '../domain/collisions.js';
import { changesWithin, computeChanges, wholeScope, type Change } from '../domain/diff.js';
import type { MirrorView } from '../domain/mirror.js';
import type { KernelEvent } from '../domain/events.js';
import { routeKey, routeSlot, ruleKey, slotOfRouteKey, type Route } from '../domain/model.js';
import { DesiredState, type Plan, type Scope, type Update } from '../domain/planner.js';
import { NameFiles, resolveDir } from '../host/names.js';
import { applyChanges, describeChange, type ChangeOutcome } from '../kernel/reconciler.js';
import { ConfFiles, SysctlGuard } from '../host/sysctl.js';
import type { Watcher } from '../kernel/watcher.js';
import type { RtnlClient } from '../netlink/client.js';
import type { Logger } from '../service/log.js';
import type { Metrics } from '../service/metrics.js';
import { ConflictTracker, WINDOW_MS } from './conflicts.js';
import type { PassVerdict, Trigger } from './scheduler.js';

const PAST_TENSE = { add: 'added', replace: 'replaced with', delete: 'deleted' } as const;

export interface PassResult {
  readonly changes: number;
  readonly failures: number;
}

export class Converger {
  /** When the oldest event not yet converged was read off the socket. */
  private pendingEventTime: bigint | null = null;
  /** When the kernel acknowledged the last change made since pendingEventTime, if any. */
  private lastWriteAckedAt: bigint | null = null;
  /**
   * What the kernel fully matched at the last convergence: routes by table (each with its
   * device), route slots, rule keys. Losing one to someone else is drift.
   */
  private convergedRoutes = new Map<number, Map<string, Route>>();
  private convergedSlots = new Map<string, string>();
  private convergedRules = new Set<string>();
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
  /**
   * Notifications symroute's own requests will cause (`write|key`, `delete|key`), counted:
   * they are not drift. Entered before the requests go out, since a notification is sent
   * before the ACK and may be read before it.
   */
  private ownWrites = new Map<string, number>();
  /** Converged objects someone else deleted or displaced since: re-adding one is a drift repair. */
  private drifted = new Set<string>();
  /** Links seen going down since the last convergence: the kernel deletes their routes itself. */
  private wentDown = new Set<number>();
  /** Which interface each table was last planned for, so log lines can name it after it left. */
  private tableInterfaces = new Map<number, string>();
  /** A whole pass ran: at the next convergence, forget the tables of interfaces gone since. */
  private forgetDepartedTables = false;
  /** Interfaces a pending change was for at the last pass (their in-sync gauge is 0). */
  private pendingInterfaces = new Set<string>();
  /**
   * The symroute_interface_* values last exported per interface: only changes are written
   * (prom-client's label lookup per series is most of a pass's cost at 1000 NICs), and
   * departed interfaces have their series removed.
   */
  private gaugedInterfaces = new Map<string, { inSync: number; table: number }>();
  private isInSync = false;
  /** The watcher's generation the current pass planned from. */
  private plannedAt = 0;
  private readonly sysctls: SysctlGuard;
  private names: NameFiles;
  /** Objects someone else keeps removing: repaired with backoff instead of at once. */
  private readonly conflicts = new ConflictTracker();
  private readonly conflictDescriptions = new Map<string, string>();
  private conflictTimer: NodeJS.Timeout | null = null;
  /** Called whenever a pass finds the kernel in sync. */
  onConverged: () => void = () => undefined;
  /** Asks for a pass later (a held repair's turn, or to notice a conflict has ended). */
  requestPass: () => void = () => undefined;
  lastPass: PassResult = { changes: 0, failures: 0 };

  constructor(
    private currentConfig: Config,
    private readonly client: RtnlClient,
    private readonly watcher: Watcher,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {
    this.sysctls = new SysctlGuard(new ConfFiles(), {
      warn: (message) => log.warn(message),
      info: (message) => log.info(message),
      error: (message) => log.error(message),
      problems: (count) => metrics.sysctlProblems.set(count),
      failed: () => metrics.sysctlErrors.inc(),
    });
    this.names = this.nameFiles(currentConfig);
    this.desired = new DesiredState(currentConfig);
  }

  get config(): Config {
    return this.currentConfig;
  }

  /** A reload: files and settings are looked at afresh under the new config. */
  set config(config: Config) {
    if (config.iproute2Dir !== this.currentConfig.iproute2Dir) this.names = this.nameFiles(config);
    this.sysctls.forget();
    this.currentConfig = config;
    this.desired = new DesiredState(config);
    this.wholePassDue = true;
  }

  /** Objects in conflict, described, for /healthz. */
  get conflictList(): string[] {
    return this.conflicts.conflicts.map((key) => this.conflictDescriptions.get(key) ?? key);
  }

  stop(): void {
    if (this.conflictTimer) clearTimeout(this.conflictTimer);
    this.conflictTimer = null;
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
    if (events === null) {
      // Notifications were lost, so the ledger of our own may never be settled, and what
      // went missing meanwhile is only known from the fresh dump.
      this.ownWrites.clear();
      this.wholePassDue = true;
      const mirror = this.watcher.mirror;
      for (const routes of this.convergedRoutes.values()) {
        for (const [key, route] of routes) if (!mirror.routes.has(key) && this.deviceUp(route.oif)) this.drifted.add(key);
      }
      for (const key of this.convergedRules) if (!mirror.rules.has(key)) this.drifted.add(key);
      return;
    }
    for (const event of events) this.noteDrift(event);
  }

  /**
   * Drift is what someone else did to a converged object: an explicit delete of one of its
   * rules or routes, or a route replaced in its slot. The kernel's own consequences are not
   * (a route of a device going down, a route the kernel drops silently), nor are our writes.
   */
  private noteDrift(event: KernelEvent): void {
    if (event.kind === 'link') {
      if (event.op === 'delete' || !event.link.up) this.wentDown.add(event.link.index);
    } else if (event.kind === 'route') {
      const key = routeKey(event.route);
      if (this.settleOwn(event.op === 'delete' ? 'delete' : 'write', key)) return;
      if (event.op === 'delete') {
        if (this.convergedRoutes.get(event.route.table)?.has(key) && this.deviceUp(event.route.oif)) this.drifted.add(key);
      } else if (event.op === 'replace') {
        const displaced = this.convergedSlots.get(routeSlot(event.route));
        if (displaced !== undefined && displaced !== key) this.drifted.add(displaced);
      }
    } else if (event.kind === 'rule') {
      const key = ruleKey(event.rule);
      if (this.settleOwn(event.op === 'delete' ? 'delete' : 'write', key)) return;
      if (event.op === 'delete' && this.convergedRules.has(key)) this.drifted.add(key);
    }
  }

  /** A route of a device that went down or away was removed by the kernel itself. */
  private deviceUp(oif: number | undefined): boolean {
    return oif === undefined || (!this.wentDown.has(oif) && this.watcher.mirror.links.get(oif)?.up === true);
  }

  private expectOwn(kind: 'write' | 'delete', key: string, delta: 1 | -1): void {
    const entry = `${kind}|${key}`;
    const count = (this.ownWrites.get(entry) ?? 0) + delta;
    if (count > 0) this.ownWrites.set(entry, count);
    else this.ownWrites.delete(entry);
  }

  private settleOwn(kind: 'write' | 'delete', key: string): boolean {
    if (!this.ownWrites.has(`${kind}|${key}`)) return false;
    this.expectOwn(kind, key, -1);
    return true;
  }

  markOutOfSync(): void {
    this.isInSync = false;
    this.metrics.inSync.set(0);
  }

  async pass(trigger: Trigger): Promise<PassVerdict> {
    try {
      this.lastPass = await this.reconcile(trigger);
    } catch (error) {
      this.lastPass = { changes: 0, failures: 1 };
      this.markOutOfSync();
      // Whatever this pass had taken in is not accounted for: look at everything next time.
      this.wholePassDue = true;
      throw error;
    }
    return { again: this.lastPass.changes > this.lastPass.failures, failed: this.lastPass.failures > 0 };
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
    this.logOutcomes(await applyChanges(this.client, phases, this.linkName));
  }

  private async reconcile(trigger: Trigger): Promise<PassResult> {
    this.watcher.drain();
    await this.watcher.settled();
    const mirror = this.watcher.mirror;
    this.plannedAt = this.watcher.generation;
    const journal = this.watcher.takeChanges();
    const whole = this.wholePassDue;
    this.wholePassDue = false;
    let update: Update;
    let scope: Scope;
    if (whole) {
      this.desired = new DesiredState(this.config);
      update = this.desired.rebuild(mirror);
      scope = wholeScope(this.desired, mirror, this.config.protocol);
    } else {
      update = this.desired.update(mirror, journal);
      scope = mergeScopes(update.scope, this.unsettled);
    }
    if (whole) this.sinceConverged = null;
    else if (this.sinceConverged) addScope(this.sinceConverged, scope);
    // Appearing after start, someone else's rules at our priority are reported, never removed.
    const foreignRules = journal.rules.some((rule) => rule.protocol !== this.config.protocol);
    this.reportProblems(whole, update, whole || foreignRules ? priorityCollision(this.config, mirror) : this.priorityProblem);
    if (whole || update.sharedChanged) this.sysctls.update(this.desired.sharedSubnetInterfaces(), this.config.sysctl === 'manage');
    // The whole plan, built only when the whole is looked at anyway.
    const wholePlan = whole || update.tablesChanged ? this.desired.toPlan() : undefined;
    if (wholePlan) this.names.update(wholePlan, this.config.protocol);
    // Added to, not replaced: a rule of an interface no longer managed is deleted now and
    // its log line still names the interface.
    if (whole) for (const planned of wholePlan!.interfaces) this.tableInterfaces.set(planned.table, planned.link.name);
    for (const name of update.interfaces) {
      const planned = this.desired.interfaceNamed(name);
      if (planned) this.tableInterfaces.set(planned.table, name);
    }
    const phases = changesWithin(this.desired, mirror, this.config.protocol, scope);
    const changes = phases.flat();
    this.unsettled = scopeOf(changes);
    const drift = changes.filter((change) => change.op !== 'delete' && this.drifted.delete(changeKey(change)));
    const held = this.holdConflicts(drift);
    // A held repair is still drift when its turn comes.
    for (const change of held) this.drifted.add(changeKey(change));
    this.metrics.reconciles.inc({ trigger: drift.length > 0 ? 'drift' : trigger });
    this.metrics.managedInterfaces.set(this.desired.interfaceCount);
    for (const family of [4, 6] as const) {
      this.metrics.unusableGateways.set({ family: family === 4 ? 'ipv4' : 'ipv6' }, this.desired.unusableGateways(family));
    }
    this.updateInterfaceGauges(whole ? wholePlan : undefined, update, changes);
    if (whole) this.forgetDepartedTables = true;
    if (changes.length === 0) {
      this.recordConverged();
      if (this.forgetDepartedTables) {
        this.tableInterfaces = new Map(this.desired.toPlan().interfaces.map((planned) => [planned.table, planned.link.name]));
        this.forgetDepartedTables = false;
      }
      // Every notification of our writes was read before this pass found nothing to do.
      this.ownWrites.clear();
      this.drifted.clear();
      this.wentDown.clear();
      this.settleConflicts();
      this.recordConvergence(mirror);
      return { changes: 0, failures: 0 };
    }
    const applied = held.size === 0 ? phases : phases.map((phase) => phase.filter((c) => !held.has(c))).filter((p) => p.length > 0);
    if (applied.length === 0) {
      // Only held repairs are missing: out of sync until their turn comes (conflictTimer).
      this.markOutOfSync();
      return { changes: 0, failures: 0 };
    }
    const repairs = drift.filter((change) => !held.has(change));
    for (const change of repairs) this.metrics.driftRepairs.inc({ kind: change.kind });
    if (repairs.length > 0) this.log.warn({ repairs: repairs.length }, `repairing ${repairs.length} rules/routes changed by someone else`);
    for (const change of applied.flat()) this.expectOwn(ownKind(change), changeKey(change), 1);
    const outcomes = await applyChanges(this.client, applied, this.linkName);
    for (const { change, error } of outcomes) if (error) this.expectOwn(ownKind(change), changeKey(change), -1);
    const now = Date.now();
    for (const outcome of outcomes) if (!outcome.error) this.conflicts.repaired(changeKey(outcome.change), now);
    if (held.size > 0) this.markOutOfSync();
    this.lastWriteAckedAt = process.hrtime.bigint();
    this.logOutcomes(outcomes);
    const failures = outcomes.filter((o) => o.error);
    if (failures.length > 0) {
      this.markOutOfSync();
      if (failures.some(isStaleMirror)) this.watcher.requestResync('stale_mirror');
    }
    return { changes: changes.length - held.size, failures: failures.length };
  }

  /** Which drift repairs must wait: objects someone keeps removing are put back with backoff. */
  private holdConflicts(drift: readonly Change[]): Set<Change> {
    const held = new Set<Change>();
    const now = Date.now();
    for (const change of drift) {
      const key = changeKey(change);
      const verdict = this.conflicts.removed(key, now);
      if (verdict.counted) this.metrics.conflicts.inc({ kind: change.kind });
      if (verdict.started) {
        const description = describeChange(change, this.linkName);
        this.conflictDescriptions.set(key, description);
        const wait = ((verdict.retryAt ?? now) - now) / 1000;
        this.log.warn(
          { conflict: description },
          `${description} keeps being removed by something else (${verdict.removals} times within ${WINDOW_MS / 1000} s): ` +
            `putting it back less and less often (next in ${wait} s, then at most every 5 min) instead of fighting. ` +
            'Usually another manager of routing policy: systemd-networkd without ManageForeignRoutingPolicyRules=no and ' +
            'ManageForeignRoutes=no ([Network] in /etc/systemd/networkd.conf), NetworkManager owning the table ' +
            '(ipv4.route-table) or nm-cloud-setup, or a cloud agent (README: "Running next to …")',
        );
      }
      if (!verdict.now) held.add(change);
    }
    this.metrics.conflictsActive.set(this.conflicts.conflicts.length);
    this.scheduleConflictPass();
    return held;
  }

  /** A pass for the next held repair, or to notice a conflict has ended (no event may come). */
  private scheduleConflictPass(): void {
    if (this.conflictTimer) clearTimeout(this.conflictTimer);
    this.conflictTimer = null;
    const now = Date.now();
    const next = this.conflicts.nextRetry(now) ?? (this.conflicts.conflicts.length > 0 ? now + WINDOW_MS : undefined);
    if (next === undefined) return;
    this.conflictTimer = setTimeout(() => {
      this.conflictTimer = null;
      this.requestPass();
    }, next - now + 1);
    this.conflictTimer.unref();
  }

  private settleConflicts(): void {
    for (const key of this.conflicts.settle((key) => this.convergedRules.has(key) || this.convergedSlots.get(slotOfRouteKey(key)) === key, Date.now())) {
      this.log.info(`${this.conflictDescriptions.get(key) ?? key} has stayed in place for ${WINDOW_MS / 1000} s: conflict over`);
      this.conflictDescriptions.delete(key);
    }
    this.metrics.conflictsActive.set(this.conflicts.conflicts.length);
    this.scheduleConflictPass();
  }

  private nameFiles(config: Config): NameFiles {
    const { dir, why } = resolveDir(config.iproute2Dir);
    if (dir) this.log.info(`naming tables for ip(8) in ${dir} (${why})`);
    else this.log.debug(`not naming tables for ip(8): ${why}`);
    return new NameFiles(dir, {
      info: (message) => this.log.info(message),
      warn: (message) => this.log.warn(message),
      failed: () => this.metrics.nameFileErrors.inc(),
    });
  }

  private recordConvergence(mirror: MirrorView): void {
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
      const rules = this.desired.rules.size;
      const routes = this.desired.routeCount;
      this.metrics.convergenceSeconds.observe(seconds);
      this.metrics.lastConvergence.set(Date.now() / 1000);
      this.log.info(
        { durationSeconds: seconds, rules, routes },
        `converged in ${(seconds * 1000).toFixed(1)} ms (${rules} rules, ${routes} routes)`,
      );
    }
    this.onConverged();
  }

  private updateOwnedGauges(mirror: MirrorView): void {
    for (const family of [4, 6] as const) {
      const label = { family: family === 4 ? 'ipv4' : 'ipv6' };
      this.metrics.managedRules.set(label, mirror.ruleCount(this.config.protocol, family));
      this.metrics.managedRoutes.set(label, mirror.routeCount(this.config.protocol, family));
    }
  }

  /** The desired state becomes what converged: in the tables and rules looked at since the last time. */
  private recordConverged(): void {
    const since = this.sinceConverged;
    this.sinceConverged = emptyScope();
    if (since === null) {
      this.convergedRoutes = new Map();
      this.convergedSlots = new Map();
      this.convergedRules = new Set(this.desired.rules.keys());
      for (const table of this.desired.tables()) this.convergeTable(table);
      return;
    }
    for (const table of since.tables) this.convergeTable(table);
    for (const key of since.ruleKeys) {
      if (this.desired.rules.has(key)) this.convergedRules.add(key);
      else this.convergedRules.delete(key);
    }
  }

  private convergeTable(table: number): void {
    for (const route of this.convergedRoutes.get(table)?.values() ?? []) this.convergedSlots.delete(routeSlot(route));
    const routes = this.desired.routesIn(table);
    if (routes.length === 0) {
      this.convergedRoutes.delete(table);
      return;
    }
    this.convergedRoutes.set(table, new Map(routes.map((route) => [routeKey(route), route])));
    for (const route of routes) this.convergedSlots.set(routeSlot(route), routeKey(route));
  }

  /**
   * Per managed interface: its table, and whether a change for it is still pending. After a
   * whole pass every interface is looked at; otherwise only those that came, went, changed,
   * or had or have a pending change.
   */
  private updateInterfaceGauges(wholePlan: Plan | undefined, update: Update, changes: readonly Change[]): void {
    const pending = new Set(changes.map((change) => this.changeInterface(change)).filter((name) => name !== undefined));
    const affected = wholePlan
      ? new Set([...this.gaugedInterfaces.keys(), ...wholePlan.interfaces.map((planned) => planned.link.name)])
      : new Set([...update.interfaces, ...pending, ...this.pendingInterfaces]);
    this.pendingInterfaces = pending;
    for (const ifname of affected) {
      const planned = this.desired.interfaceNamed(ifname);
      if (!planned) {
        if (!this.gaugedInterfaces.delete(ifname)) continue;
        this.metrics.interfaceInSync.remove({ ifname });
        this.metrics.interfaceTable.remove({ ifname });
        continue;
      }
      const now = { inSync: pending.has(ifname) ? 0 : 1, table: planned.table };
      const before = this.gaugedInterfaces.get(ifname);
      if (before?.inSync !== now.inSync) this.metrics.interfaceInSync.set({ ifname }, now.inSync);
      if (before?.table !== now.table) this.metrics.interfaceTable.set({ ifname }, now.table);
      this.gaugedInterfaces.set(ifname, now);
    }
  }

  /** Logs each problem once, when it appears (again). */
  private reportProblems(whole: boolean, update: Update, priorityProblem: string | undefined): void {
    if (priorityProblem !== undefined && priorityProblem !== this.priorityProblem) this.log.warn(priorityProblem);
    this.priorityProblem = priorityProblem;
    const before = this.reportedProblems;
    const standing = whole ? new Set<string>() : before;
    for (const problem of update.cleared) standing.delete(problem);
    for (const problem of update.raised) {
      if (!before.has(problem)) this.log.warn(problem);
      standing.add(problem);
    }
    this.reportedProblems = standing;
  }

  private logOutcomes(outcomes: readonly ChangeOutcome[]): void {
    for (const outcome of outcomes) {
      const ifname = this.changeInterface(outcome.change);
      if (outcome.error && this.overtaken(outcome)) {
        this.log.info({ errno: outcome.error.code, ifname }, `${outcome.error.message}; the kernel changed meanwhile, planning again`);
      } else if (outcome.error) {
        this.log.error({ errno: outcome.error.code, ifname }, outcome.error.message);
      } else {
        this.log.info({ ifname }, `${PAST_TENSE[outcome.change.op]} ${outcome.description}${ifname ? ` (${ifname})` : ''}`);
      }
    }
  }

  /**
   * A refusal the kernel's state had already moved past (a device went down, an address went
   * away while the request was on its way): the mirror changed since the pass planned, and
   * the pass that follows plans from that. A refusal that stands is logged as an error then.
   */
  private overtaken(outcome: ChangeOutcome): boolean {
    if (!outcome.error || outcome.change.op === 'delete') return false;
    this.watcher.drain();
    return this.watcher.generation !== this.plannedAt;
  }

  /** The interface a change is for: a route's device, or the owner of a rule's table. */
  private changeInterface(change: Change): string | undefined {
    if (change.kind === 'route') return change.route.oif !== undefined ? this.linkName(change.route.oif) : undefined;
    return this.tableInterfaces.get(change.rule.table);
  }

  private readonly linkName = (ifindex: number): string => this.watcher.mirror.links.get(ifindex)?.name ?? `if${ifindex}`;
}

const emptyScope = (): Scope => ({ tables: new Set(), ruleKeys: new Set() });
const mergeScopes = (a: Scope, b: Scope): Scope => addScope(addScope(emptyScope(), a), b);

function addScope(into: Scope, scope: Scope): Scope {
  for (const table of scope.tables) into.tables.add(table);
  for (const key of scope.ruleKeys) into.ruleKeys.add(key);
  return into;
}

/** The tables and rules these changes are about: what the next pass must look at again. */
function scopeOf(changes: readonly Change[]): Scope {
  const scope = emptyScope();
  for (const change of changes) {
    if (change.kind === 'route') scope.tables.add(change.route.table);
    else scope.ruleKeys.add(ruleKey(change.rule));
  }
  return scope;
}

const changeKey = (change: Change): string => (change.kind === 'route' ? routeKey(change.route) : ruleKey(change.rule));
const ownKind = (change: Change): 'write' | 'delete' => (change.op === 'delete' ? 'delete' : 'write');

/** An add that hit an existing object, or a delete of a missing one: the mirror is behind. */
function isStaleMirror(outcome: ChangeOutcome): boolean {
  const code = outcome.error?.code;
  return outcome.change.op === 'delete' ? code === 'ESRCH' || code === 'ENOENT' : code === 'EEXIST';
}
