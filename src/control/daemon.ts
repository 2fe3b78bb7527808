// The control loop, assembled: the watcher keeps the mirror and says when something changed,
// the scheduler decides when a pass runs (one at a time, coalesced, retried with backoff),
// the converger does the pass. The kernel's two sockets and the host come from outside, so
// tests can script the kernel's side; what happens is told to an observer.
import { ConfigError, type Config } from '../config/config.js';
import { priorityCollision } from '../domain/collisions.js';
import { mirrorScope, mirrorsDiffer } from '../domain/interest.js';
import { HostFiles, type Host } from '../host/host.js';
import { Watcher, openNotificationSocket } from '../kernel/watcher.js';
import { RtnlClient, openRequestSocket } from '../netlink/client.js';
import type { NativeNetlinkSocket } from '../netlink/native.js';
import { Converger, type PassResult } from './converger.js';
import type { DaemonObserver } from './observer.js';
import { DEFAULT_BACKOFF, PassScheduler, type SchedulerOptions } from './scheduler.js';
import { StageMeter, type StageTimes } from './stages.js';
import { ReplyPathVerifier, touchedNics } from './verifier.js';
import type { KernelEvent } from '../domain/events.js';
import { OffLinkDestinations, verifyReplyPaths } from '../kernel/route-lookups.js';

/** The rtnetlink sockets the daemon talks through: requests and dumps, and notifications. */
export interface KernelSockets {
  readonly requests: NativeNetlinkSocket;
  readonly notifications: NativeNetlinkSocket;
}

export function openKernelSockets(): KernelSockets {
  return { requests: openRequestSocket(), notifications: openNotificationSocket() };
}

export class Daemon {
  private readonly client: RtnlClient;
  private readonly watcher: Watcher;
  private readonly converger: Converger;
  private readonly scheduler: PassScheduler;
  private readonly verifier: ReplyPathVerifier;
  private readonly stages = new StageMeter();
  /** The host's off-link destinations, kept while they stay off every link (null: after a re-dump). */
  private offLink: OffLinkDestinations | null = null;
  /** NICs (by ifindex) whose reply paths events touched since the last pass, or all. */
  private touched: Set<number> | 'all' = 'all';
  private started = false;
  private stopping = false;

  constructor(
    private config: Config,
    observer: DaemonObserver,
    sockets: KernelSockets = openKernelSockets(),
    backoff: SchedulerOptions = DEFAULT_BACKOFF,
    host: Host = new HostFiles(config, observer),
  ) {
    this.client = new RtnlClient(observer, sockets.requests);
    this.watcher = new Watcher(this.client, readsAsStage(sockets.notifications, this.stages, 'receive'), {
      changed: (eventTime, events) => {
        if (!this.started) return; // start() runs the first pass itself
        if (events === null) this.offLink = null;
        else for (const event of events) if (event.kind === 'address') this.offLink?.addressChanged(event.op, event.address);
        this.noteTouched(events);
        this.converger.observe(eventTime, events);
        this.scheduler.request(events ? 'event' : 'resync');
      },
      resyncStarted: (reason, detail) => {
        if (reason !== 'startup' && reason !== 'reload') this.converger.markOutOfSync();
        observer.resyncStarted(reason, detail);
      },
      discarded: (reason) => observer.discarded(reason),
      skipped: (count) => observer.skipped(count),
      fetchingTables: (tables) => observer.fetchingTables(tables),
      // No pass to wait for: the mirror holds no sysctls, only the verdicts change.
      rpFilterChanged: (devices) => this.verifier.request(devices),
    }, () => mirrorScope(this.config));
    this.converger = new Converger(config, this.client, this.watcher, host, observer, this.stages);
    this.verifier = new ReplyPathVerifier(
      {
        current: () => {
          this.watcher.drain();
          return !this.scheduler.busy && this.converger.plannedGeneration === this.watcher.generation;
        },
        verify: (only, between) => {
          this.offLink ??= new OffLinkDestinations(this.watcher.mirror);
          return verifyReplyPaths(this.client, this.watcher.mirror, this.converger.interfacePlans(only), only, this.offLink.get, between);
        },
        stateVersion: () => {
          this.watcher.drain();
          return `${this.scheduler.passes}|${this.watcher.generation}`;
        },
      },
      observer,
    );
    this.scheduler = new PassScheduler(
      async (trigger) => {
        const verdict = await this.converger.pass(trigger);
        // After every pass, in sync or not: replies matter most while something fails.
        this.verifier.request(this.touched);
        this.touched = new Set();
        return verdict;
      },
      (error) => observer.passFailed(error),
      backoff,
    );
  }

  /** Subscribes, dumps, and runs passes until the first one that needs nothing more. */
  async start(): Promise<void> {
    await this.watcher.start();
    // Up front: rules beside someone else's at the same priority would interleave with them.
    const collision = priorityCollision(this.config, this.watcher.mirror);
    if (collision) throw new ConfigError([collision]);
    this.started = true;
    this.verifier.sweepEvery(sweepInterval(this.config));
    this.converger.observe(process.hrtime.bigint(), null);
    this.scheduler.request('startup');
    await this.scheduler.idle();
  }

  /**
   * For `run --once`: starts, then retries failed passes a few times (after a re-dump and a
   * pause) before giving up. Resolves true when the kernel ended up in sync.
   */
  async converge(attempts: number): Promise<boolean> {
    await this.start();
    for (let attempt = 1; attempt < attempts && this.lastPass.failures > 0 && !this.stopping; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, DEFAULT_BACKOFF.backoffStartMs * 2 ** attempt));
      await this.watcher.settled();
      this.scheduler.request('retry');
      await this.scheduler.idle();
    }
    return this.lastPass.failures === 0;
  }

  /** Resolves when no pass is running or scheduled. */
  idle(): Promise<void> {
    return this.scheduler.idle();
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
    const collision = priorityCollision(config, this.watcher.mirror);
    if (collision) throw new ConfigError([collision]);
    // The mirror keeps main's routes through plumbing, and the routes of the tables symroute
    // uses or could use: a new idea of either needs a re-dump.
    const remirror = mirrorsDiffer(mirrorScope(config), mirrorScope(this.config));
    this.config = config;
    this.converger.reconfigure(config);
    this.verifier.sweepEvery(sweepInterval(config));
    this.touched = 'all';
    if (remirror) this.watcher.requestResync('reload');
    this.scheduler.request('reload');
    await this.scheduler.idle();
  }

  get lastPass(): PassResult {
    return this.converger.lastPass;
  }

  /** Time spent in each stage of following the kernel since start (for metrics). */
  get stageTotals(): StageTimes {
    return this.stages.totals;
  }

  /** Passes run so far. */
  get passes(): number {
    return this.scheduler.passes;
  }

  /** True once a pass found the kernel matching the plan, until something is known to differ. */
  get inSync(): boolean {
    return this.converger.inSync;
  }

  /** Rules and routes something else keeps removing, described (for /healthz). */
  get conflictList(): string[] {
    return this.converger.conflictList;
  }

  set onConverged(callback: () => void) {
    this.converger.onConverged = callback;
  }

  /** Adds the NICs whose reply paths `events` may have changed (null: a re-dump, all of them). */
  private noteTouched(events: readonly KernelEvent[] | null): void {
    if (this.touched === 'all') return;
    if (events === null) return void (this.touched = 'all');
    const ownTable = (table: number) => {
      const pinned = Object.entries(this.config.table.pinned).find(([, id]) => id === table);
      if (pinned) return [...this.watcher.mirror.links.values()].find((link) => link.name === pinned[0])?.index;
      const ifindex = table - this.config.table.base;
      return this.watcher.mirror.links.has(ifindex) ? ifindex : undefined;
    };
    this.touched = touchedNics(events, this.config.protocol, ownTable, this.touched);
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
    const since = this.scheduler.runningSince;
    return since === null || Date.now() - since < maxPassMs;
  }

  /** `8 interfaces, 8 rules, 16 routes, in sync` — for systemd's STATUS= and logs. */
  summary(): string {
    return this.converger.summary();
  }

  /**
   * Lets the pass under way finish and starts no other, so that a stop during start-up
   * makes start() and converge() return early; stop() follows.
   */
  interrupt(): void {
    this.stopping = true;
    this.scheduler.stop();
  }

  /** Call once start() or converge() has returned. */
  async stop(removeOwned: boolean): Promise<void> {
    this.interrupt();
    this.verifier.stop();
    await this.verifier.idle();
    await this.scheduler.idle();
    if (removeOwned) await this.converger.removeOwned();
    this.watcher.stop();
    this.client.close();
  }
}

/** `socket`, whose readable callbacks (reading, decoding, taking in) are charged to `stage`. */
function readsAsStage(socket: NativeNetlinkSocket, stages: StageMeter, stage: 'receive'): NativeNetlinkSocket {
  return {
    get portId() {
      return socket.portId;
    },
    send: (messages) => socket.send(messages),
    readAll: (maxBytes) => socket.readAll(maxBytes),
    startReading: (onReadable) => socket.startReading(() => stages.run(stage, onReadable)),
    stopReading: () => socket.stopReading(),
    close: () => socket.close(),
  };
}

/** verify.interval in ms, or false for no periodic sweep. */
function sweepInterval(config: Config): number | false {
  return config.verify.interval === false ? false : config.verify.interval * 1000;
}
