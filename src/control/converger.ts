// What one pass does — not when it runs (scheduler.ts decides that): take in what the
// watcher has queued, plan from the mirror, diff against what symroute owns, apply the
// changes, and account for the outcome (drift repairs, convergence time, in-sync state,
// owned gauges, one log line per change).
import type { Config } from '../config/config.js';
import { priorityCollision } from '../domain/collisions.js';
import { computeChanges, type Change } from '../domain/diff.js';
import type { MirrorView } from '../domain/mirror.js';
import type { KernelEvent } from '../domain/events.js';
import { routeKey, routeSlot, ruleKey } from '../domain/model.js';
import { plan, type Plan } from '../domain/planner.js';
import { NameFiles, resolveDir } from '../kernel/names.js';
import { applyChanges, describeChange, type ChangeOutcome } from '../kernel/reconciler.js';
import { ConfFiles, SysctlGuard } from '../kernel/sysctl.js';
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
   * Rule and route keys of the last plan the kernel fully matched, each with its route's
   * device (none for rules): losing one to someone else is drift.
   */
  private convergedKeys = new Map<string, number | undefined>();
  /** The converged route in each route slot, to tell what a replace displaced. */
  private convergedSlots = new Map<string, string>();
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
  private lastPlan: Plan | null = null;
  /** Which interface each table was last planned for, so log lines can name it after it left. */
  private tableInterfaces = new Map<number, string>();
  private lastProblems = new Set<string>();
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
  }

  get config(): Config {
    return this.currentConfig;
  }

  /** A reload: files and settings are looked at afresh under the new config. */
  set config(config: Config) {
    if (config.iproute2Dir !== this.currentConfig.iproute2Dir) this.names = this.nameFiles(config);
    this.sysctls.forget();
    this.currentConfig = config;
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
    const interfaces = this.lastPlan?.interfaces.length ?? 0;
    const rules = this.lastPlan?.rules.length ?? 0;
    const routes = this.lastPlan?.routes.length ?? 0;
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
      const mirror = this.watcher.mirror;
      for (const [key, oif] of this.convergedKeys) {
        if (mirror.routes.has(key) || mirror.rules.has(key)) continue;
        if (this.deviceUp(oif)) this.drifted.add(key);
      }
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
        if (this.convergedKeys.has(key) && this.deviceUp(event.route.oif)) this.drifted.add(key);
      } else if (event.op === 'replace') {
        const displaced = this.convergedSlots.get(routeSlot(event.route));
        if (displaced !== undefined && displaced !== key) this.drifted.add(displaced);
      }
    } else if (event.kind === 'rule') {
      const key = ruleKey(event.rule);
      if (this.settleOwn(event.op === 'delete' ? 'delete' : 'write', key)) return;
      if (event.op === 'delete' && this.convergedKeys.has(key)) this.drifted.add(key);
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
      protectedTables: this.lastPlan?.protectedTables ?? new Set(),
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
    const desired = plan(this.config, mirror);
    this.lastPlan = desired;
    for (const planned of desired.interfaces) this.tableInterfaces.set(planned.table, planned.link.name);
    // Appearing after start, someone else's rules at our priority are reported, never removed.
    const collision = priorityCollision(this.config, mirror);
    this.reportProblems(collision ? [collision, ...desired.problems] : desired.problems);
    this.sysctls.update(desired, this.config.sysctl === 'manage');
    this.names.update(desired, this.config.protocol);
    const phases = computeChanges(desired, mirror, this.config.protocol);
    const changes = phases.flat();
    const drift = changes.filter((change) => change.op !== 'delete' && this.drifted.delete(changeKey(change)));
    const held = this.holdConflicts(drift);
    // A held repair is still drift when its turn comes.
    for (const change of held) this.drifted.add(changeKey(change));
    this.metrics.reconciles.inc({ trigger: drift.length > 0 ? 'drift' : trigger });
    this.metrics.managedInterfaces.set(desired.interfaces.length);
    for (const family of [4, 6] as const) {
      const unusable = desired.interfaces.filter((i) => i.families.some((f) => f.family === family && f.unusableGateway));
      this.metrics.unusableGateways.set({ family: family === 4 ? 'ipv4' : 'ipv6' }, unusable.length);
    }
    this.updateInterfaceGauges(desired, changes);
    if (changes.length === 0) {
      this.convergedKeys = new Map([
        ...desired.routes.map((route) => [routeKey(route), route.oif] as const),
        ...desired.rules.map((rule) => [ruleKey(rule), undefined] as const),
      ]);
      this.convergedSlots = new Map(desired.routes.map((route) => [routeSlot(route), routeKey(route)]));
      // Every notification of our writes was read before this pass found nothing to do.
      this.ownWrites.clear();
      this.drifted.clear();
      this.wentDown.clear();
      // In sync, nothing is left to log about interfaces that went away: forget them.
      this.tableInterfaces = new Map(desired.interfaces.map((planned) => [planned.table, planned.link.name]));
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
    for (const key of this.conflicts.settle((key) => this.convergedKeys.has(key), Date.now())) {
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
    const exported = new Map<string, { inSync: number; table: number }>();
    for (const { link, table } of desired.interfaces) {
      const now = { inSync: pending.has(link.name) ? 0 : 1, table };
      const before = this.gaugedInterfaces.get(link.name);
      if (before?.inSync !== now.inSync) this.metrics.interfaceInSync.set({ ifname: link.name }, now.inSync);
      if (before?.table !== now.table) this.metrics.interfaceTable.set({ ifname: link.name }, now.table);
      exported.set(link.name, now);
    }
    for (const ifname of this.gaugedInterfaces.keys()) {
      if (exported.has(ifname)) continue;
      this.metrics.interfaceInSync.remove({ ifname });
      this.metrics.interfaceTable.remove({ ifname });
    }
    this.gaugedInterfaces = exported;
  }


  private reportProblems(problems: readonly string[]): void {
    const current = new Set(problems);
    for (const problem of current) if (!this.lastProblems.has(problem)) this.log.warn(problem);
    this.lastProblems = current;
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

const changeKey = (change: Change): string => (change.kind === 'route' ? routeKey(change.route) : ruleKey(change.rule));
const ownKind = (change: Change): 'write' | 'delete' => (change.op === 'delete' ? 'delete' : 'write');

/** An add that hit an existing object, or a delete of a missing one: the mirror is behind. */
function isStaleMirror(outcome: ChangeOutcome): boolean {
  const code = outcome.error?.code;
  return outcome.change.op === 'delete' ? code === 'ESRCH' || code === 'ENOENT' : code === 'EEXIST';
}
