// The control loop's reports, turned into metrics and log lines: all of symroute's wording
// about passes, re-dumps, conflicts and host files, and every metric a pass moves.
import type { ChangeReport, DaemonObserver, InterfaceState, PassReport } from '../control/observer.js';
import type { StageTimes } from '../control/stages.js';
import type { PathVerdict } from '../domain/reply-paths.js';
import type { ResyncReason } from '../kernel/watcher.js';
import { WINDOW_MS } from '../control/conflicts.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';

/** Whole µs per stage, for a log line. */
const micros = (stages: StageTimes): Record<string, number> =>
  Object.fromEntries(Object.entries(stages).map(([stage, seconds]) => [stage, Math.round(seconds * 1e6)]));

const PAST_TENSE = { add: 'added', replace: 'replaced with', delete: 'deleted' } as const;
const FAMILY_LABEL = { 4: 'ipv4', 6: 'ipv6' } as const;

export class Telemetry implements DaemonObserver {
  /**
   * The symroute_interface_* values last exported per interface: only changes are written
   * (prom-client's label lookup per series is most of a pass's cost at 1000 NICs), and
   * departed interfaces have their series removed.
   */
  private readonly gaugedInterfaces = new Map<string, { inSync: number; table: number }>();
  /** Some object is in conflict now: the fight has been warned about. */
  private fighting = false;
  /** When drift was last repaired: repairs within a window of it are not warned about again. */
  private lastRepairAt = -Infinity;
  /** Requests answered and not counted yet, by operation and errno (see completed()). */
  private readonly completions = new Map<string, { readonly op: string; readonly errno: string | undefined; count: number }>();

  constructor(
    private readonly log: Logger,
    readonly metrics: Metrics,
  ) {
    metrics.beforeRead = () => this.countCompletions();
  }

  passed(report: PassReport): void {
    const { log, metrics } = this;
    this.countCompletions();
    for (const problem of report.problems) log.warn(problem);
    // One warning per fight: the first object another manager keeps removing names the usual
    // causes; those that join the fight while it lasts are logged at info.
    for (const { description, removals, waitSeconds } of report.conflictsStarted) {
      const what =
        `${description} keeps being removed by something else (${removals} times within ${WINDOW_MS / 1000} s): ` +
        `putting it back less and less often (next in ${waitSeconds} s, then at most every 5 min) instead of fighting`;
      if (this.fighting) {
        log.info({ conflict: description }, `${what}, like the others in this conflict`);
        continue;
      }
      this.fighting = true;
      log.warn(
        { conflict: description },
        `${what}. Usually another manager of routing policy: systemd-networkd without ManageForeignRoutingPolicyRules=no and ` +
          'ManageForeignRoutes=no ([Network] in /etc/systemd/networkd.conf), nm-cloud-setup, or a cloud agent ' +
          '(README: "Running next to …")',
      );
    }
    for (const kind of report.conflictRemovals) metrics.conflicts.inc({ kind });
    if (report.countedAs !== undefined) metrics.reconciles.inc({ trigger: report.countedAs });
    if (report.managedInterfaces !== undefined) metrics.managedInterfaces.set(report.managedInterfaces);
    if (report.unusableGateways) {
      for (const family of [4, 6] as const) metrics.unusableGateways.set({ family: FAMILY_LABEL[family] }, report.unusableGateways[family]);
    }
    if (report.interfaces) this.gaugeInterfaces(report.interfaces.complete, report.interfaces.states);
    for (const ended of report.conflictsEnded) log.info(`${ended} has stayed in place for ${WINDOW_MS / 1000} s: conflict over`);
    if (report.conflictsActive !== undefined) {
      metrics.conflictsActive.set(report.conflictsActive);
      if (report.conflictsActive === 0) this.fighting = false;
    }
    metrics.inSync.set(report.inSync ? 1 : 0);
    if (report.owned) {
      for (const family of [4, 6] as const) {
        const label = { family: FAMILY_LABEL[family] };
        metrics.managedRules.set(label, report.owned.rules[family]);
        metrics.managedRoutes.set(label, report.owned.routes[family]);
      }
    }
    if (report.convergence) {
      const { seconds, rules, routes, stages } = report.convergence;
      metrics.convergenceSeconds.observe(seconds);
      metrics.lastConvergence.set(Date.now() / 1000);
      log.info(
        { durationSeconds: seconds, rules, routes, stageMicros: micros(stages) },
        `converged in ${(seconds * 1000).toFixed(1)} ms (${rules} rules, ${routes} routes)`,
      );
    }
    for (const change of report.repairs) metrics.driftRepairs.inc({ kind: change.kind });
    if (report.repairs.length > 0) {
      // Repairs again within a window of the last ones are the same disturbance: warned once.
      const now = Date.now();
      const again = now - this.lastRepairAt < WINDOW_MS;
      this.lastRepairAt = now;
      const message = `repairing ${report.repairs.length} rules/routes changed by someone else`;
      if (again) log.info({ repairs: report.repairs.length }, `${message}, again within ${WINDOW_MS / 1000} s`);
      else log.warn({ repairs: report.repairs.length }, message);
    }
    this.logOutcomes(report.outcomes);
  }

  replyPathBroke({ probe, failure }: PathVerdict): void {
    this.metrics.replyPathFailures.inc({ reason: failure!.reason });
    const fields = { ifname: probe.ifname, family: probe.family, reason: failure!.reason, address: probe.address, peer: probe.peer };
    // A table someone else holds is already reported as the interface's problem, once.
    if (failure!.reason === 'table_collision') return this.log.info(fields, `reply path of ${probe.ifname} broken, its table left alone: ${failure!.detail}`);
    this.log.warn(fields, `reply path broken on ${probe.ifname}: ${failure!.detail} [${failure!.reason}]`);
  }

  replyPathHealed({ probe }: PathVerdict): void {
    const path = probe.direction === 'egress' ? `a reply from ${probe.address} to ${probe.peer}` : `a request from ${probe.peer} to ${probe.address}`;
    this.log.info({ ifname: probe.ifname, family: probe.family }, `reply path healed on ${probe.ifname}: ${path} takes ${probe.ifname} again`);
  }

  replyPathsOfNic(ifname: string, family: 4 | 6, ok: boolean | null): void {
    const labels = { ifname, family: FAMILY_LABEL[family] };
    if (ok === null) this.metrics.replyPathOk.remove(labels);
    else this.metrics.replyPathOk.set(labels, ok ? 1 : 0);
  }

  verifyFailed(error: Error): void {
    this.metrics.replyPathVerifyErrors.inc();
    this.log.error({ err: error }, `verifying reply paths failed: ${error.message}`);
  }

  passFailed(error: Error): void {
    this.log.error({ err: error }, `reconcile pass failed: ${error.message}`);
  }

  outOfSync(): void {
    this.metrics.inSync.set(0);
  }

  removed(outcomes: readonly ChangeReport[]): void {
    this.countCompletions();
    this.logOutcomes(outcomes);
  }

  /**
   * Counted when the report of a pass is made or the metrics are read, whichever comes
   * first: a pass's next phase of requests goes out as soon as the ACKs of the one before
   * are in, and no metric stands between them.
   */
  completed(op: string, error?: { readonly code: string }): void {
    const key = error ? `${op} ${error.code}` : op;
    const pending = this.completions.get(key);
    if (pending) pending.count++;
    else this.completions.set(key, { op, errno: error?.code, count: 1 });
  }

  private countCompletions(): void {
    for (const { op, errno, count } of this.completions.values()) {
      this.metrics.netlinkRequests.inc({ op, result: errno === undefined ? 'ok' : 'error' }, count);
      if (errno !== undefined) this.metrics.netlinkErrors.inc({ op, errno }, count);
    }
    this.completions.clear();
  }

  dumpInterrupted(action: string): void {
    this.metrics.resyncs.inc({ reason: 'dump_interrupted' });
    this.log.info({ action }, 'dump interrupted by concurrent changes, dumping again');
  }

  discarded(reason: string): void {
    this.metrics.discardedMessages.inc();
    this.log.warn({ reason }, 'discarded a netlink message');
  }

  resyncStarted(reason: ResyncReason, detail?: string): void {
    if (reason === 'startup') return this.log.debug('dumping kernel state');
    if (reason === 'reload') return this.log.info('dumping kernel state again: the new config mirrors other routes');
    this.metrics.resyncs.inc({ reason });
    this.log.warn({ reason, detail }, `dumping kernel state again (${reason})`);
  }

  skipped(count: number): void {
    this.metrics.routesSkipped.inc(count);
  }

  fetchingTables(tables: readonly number[]): void {
    this.log.debug({ tables: tables.length <= 8 ? tables : tables.length }, 'dumping the routes of tables that now matter');
  }

  debug(message: string): void {
    this.log.debug(message);
  }

  info(message: string): void {
    this.log.info(message);
  }

  warn(message: string): void {
    this.log.warn(message);
  }

  error(message: string): void {
    this.log.error(message);
  }

  sysctlProblems(count: number): void {
    this.metrics.sysctlProblems.set(count);
  }

  sysctlFailed(): void {
    this.metrics.sysctlErrors.inc();
  }

  nameFileFailed(): void {
    this.metrics.nameFileErrors.inc();
  }

  private gaugeInterfaces(complete: boolean, states: ReadonlyMap<string, InterfaceState>): void {
    const departed = complete ? [...this.gaugedInterfaces.keys()].filter((ifname) => !states.has(ifname)) : [];
    for (const ifname of departed) this.gauge(ifname, null);
    for (const [ifname, state] of states) this.gauge(ifname, state);
  }

  private gauge(ifname: string, state: InterfaceState): void {
    const { metrics } = this;
    if (!state) {
      if (!this.gaugedInterfaces.delete(ifname)) return;
      metrics.interfaceInSync.remove({ ifname });
      metrics.interfaceTable.remove({ ifname });
      return;
    }
    const now = { inSync: state.inSync ? 1 : 0, table: state.table };
    const before = this.gaugedInterfaces.get(ifname);
    if (before?.inSync !== now.inSync) metrics.interfaceInSync.set({ ifname }, now.inSync);
    if (before?.table !== now.table) metrics.interfaceTable.set({ ifname }, now.table);
    this.gaugedInterfaces.set(ifname, now);
  }

  private logOutcomes(outcomes: readonly ChangeReport[]): void {
    for (const { change, description, error, ifname, overtaken } of outcomes) {
      if (error && overtaken) {
        this.log.info({ errno: error.code, ifname }, `${error.message}; the kernel changed meanwhile, planning again`);
      } else if (error) {
        this.log.error({ errno: error.code, ifname }, error.message);
      } else {
        this.log.info({ ifname }, `${PAST_TENSE[change.op]} ${description}${ifname ? ` (${ifname})` : ''}`);
      }
    }
  }
}
