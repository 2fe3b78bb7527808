// What the control loop tells whoever watches it (service/telemetry.ts turns it into metrics
// and log lines): a report per pass, and the watcher's and the request client's events.
// Facts only; the wording and the metric names live with the observer.
import type { Family } from '../net/ip.js';
import type { Change } from '../domain/diff.js';
import type { HostReport } from '../host/host.js';
import type { ChangeOutcome } from '../kernel/reconciler.js';
import type { WatcherObserver } from '../kernel/watcher.js';
import type { ClientObserver } from '../netlink/client.js';
import type { Trigger as PassTrigger } from './scheduler.js';
import type { StageTimes } from './stages.js';
import type { VerifierObserver } from './verifier.js';

/** What a pass is counted under: its trigger, or drift when it repairs some. */
export type Trigger = PassTrigger | 'drift';

/** A change the kernel answered, and for which interface. */
export interface ChangeReport extends ChangeOutcome {
  readonly ifname: string | undefined;
  /** Refused, but the kernel had moved on meanwhile: the next pass plans from the new state. */
  readonly overtaken: boolean;
}

/** Per managed interface: its table, and whether no change for it is pending. null: gone. */
export type InterfaceState = { readonly table: number; readonly inSync: boolean } | null;

export interface ConflictStart {
  readonly description: string;
  readonly removals: number;
  readonly waitSeconds: number;
}

/** One pass, as far as it got. */
export interface PassReport {
  countedAs?: Trigger;
  /** Problems that appeared (again): each reported once. */
  readonly problems: string[];
  readonly conflictsStarted: ConflictStart[];
  /** Removals of objects already in conflict, by kind. */
  readonly conflictRemovals: Change['kind'][];
  readonly conflictsEnded: string[];
  conflictsActive?: number;
  managedInterfaces?: number;
  unusableGateways?: Readonly<Record<Family, number>>;
  /** Interfaces whose state may have changed; `complete`: these are all there are. */
  interfaces?: { readonly complete: boolean; readonly states: ReadonlyMap<string, InterfaceState> };
  /** Drift put back (the requests were sent). */
  readonly repairs: Change[];
  readonly outcomes: ChangeReport[];
  /** The kernel matched the desired state: what symroute owns, per family. */
  owned?: { readonly rules: Readonly<Record<Family, number>>; readonly routes: Readonly<Record<Family, number>> };
  /**
   * Time from the oldest unconverged event to the last write's ACK (passes that wrote), and
   * the time each stage took since the previous convergence (the report of the pass that
   * converged is in the next one's).
   */
  convergence?: { readonly seconds: number; readonly rules: number; readonly routes: number; readonly stages: StageTimes };
  inSync: boolean;
}

export const newPassReport = (inSync: boolean): PassReport => ({
  problems: [],
  conflictsStarted: [],
  conflictRemovals: [],
  conflictsEnded: [],
  repairs: [],
  outcomes: [],
  inSync,
});

export interface DaemonObserver
  extends HostReport,
    VerifierObserver,
    Required<Omit<ClientObserver, 'discarded'>>,
    Omit<WatcherObserver, 'changed' | 'rpFilterChanged'> {
  passed(report: PassReport): void;
  passFailed(error: Error): void;
  /** Something is known to differ from the plan, outside a pass. */
  outOfSync(): void;
  /** Everything symroute owned, deleted on the way out. */
  removed(outcomes: readonly ChangeReport[]): void;
}
