// Keeps a Mirror of the kernel current: subscribes to link, address, route and rule
// notifications first, then dumps everything, then replays what arrived during the dump.
// A receive overrun (ENOBUFS) means notifications were lost, so everything is dumped again.
// Routes of tables that do not matter (domain/interest.ts) are passed over before they are
// decoded, in dumps and notifications alike; when a table starts to matter (a link appears
// whose table is base + its index) that one table is dumped and merged the same way.
import { DUMP_ATTEMPTS, type RtnlClient } from '../netlink/client.js';
import type { RawMessage } from '../netlink/codec.js';
import {
  RTM_GETADDR,
  RTM_GETLINK,
  RTM_GETROUTE,
  RTM_GETRULE,
  RTM_NEWROUTE,
  RTNLGRP_IPV4_IFADDR,
  RTNLGRP_IPV4_ROUTE,
  RTNLGRP_IPV4_RULE,
  RTNLGRP_IPV6_IFADDR,
  RTNLGRP_IPV6_ROUTE,
  RTNLGRP_IPV6_RULE,
  RTNLGRP_IPV4_NETCONF,
  RTNLGRP_LINK,
} from '../netlink/constants.js';
import { isRtnlBody, peekRoute, peekRpFilterChange, type RtnlBody } from '../netlink/messages.js';
import { ping } from '../netlink/ping.js';
import { receiveAll, type KeepFilter } from '../netlink/receive.js';
import type { KernelEvent } from '../domain/events.js';
import { isPlumbingRoute } from '../domain/destinations.js';
import { RouteInterest, type MirrorScope, type TableScope } from '../domain/interest.js';
import { RT_TABLE_LOCAL, RT_TABLE_MAIN } from '../domain/constants.js';
import { eventFromEcho, eventFromMessage } from './events.js';
import { openNetlinkSocket, type NativeNetlinkSocket } from '../netlink/native.js';
import { dumpRequests, echoes, routeDumpRequest } from './objects.js';
import type { Change } from '../domain/diff.js';
import { Mirror, type MainRouteFilter, type MirrorChanges, type MirrorView } from '../domain/mirror.js';

/**
 * Why everything is dumped again: reload (the config changed what is mirrored), enobufs (notifications were lost), decode_error (one could
 * not be read), read_error (the socket failed), stale_mirror (the kernel contradicted the
 * mirror: an add hit EEXIST or a delete ESRCH), dump_failed (the previous re-dump failed).
 */
export type ResyncReason = 'startup' | 'reload' | 'enobufs' | 'decode_error' | 'read_error' | 'stale_mirror' | 'dump_failed';

export interface WatcherObserver {
  /**
   * The mirror changed; `eventTime` is when the first message of the batch was read;
   * `events` are the notifications that changed it, or null after a re-dump.
   */
  changed(eventTime: bigint, events: readonly KernelEvent[] | null): void;
  resyncStarted(reason: ResyncReason, detail?: string): void;
  discarded(reason: string): void;
  /** Routes passed over undecoded: their table does not matter. */
  skipped(count: number): void;
  /** Tables that just started to matter are being dumped (not a resync: nothing was lost). */
  fetchingTables(tables: readonly number[]): void;
  /** IPv4 rp_filter changed on these devices, or on all (conf.all or conf.default). */
  rpFilterChanged(devices: ReadonlySet<number> | 'all'): void;
}


const NOTIFY_RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024;
const DUMP_RETRY_MS = 1000;
/**
 * A full dump reads up to this many tables one by one, each filtered by the kernel (a round
 * trip each); more are read from one dump of every route, filtered here (its cost grows with
 * every route the host has, needed or not: BENCHMARKS.md). Tables that start to matter later are always
 * dumped one by one: work in proportion to the links that appeared, however many routes the
 * host holds (one dump of everything per burst of links could cost far more, again and again).
 */
const TABLE_DUMPS_MAX = 32;

/** A socket subscribed to every notification the mirror needs. */
export function openNotificationSocket(): NativeNetlinkSocket {
  return openNetlinkSocket({
    groups: [
      RTNLGRP_LINK,
      RTNLGRP_IPV4_IFADDR,
      RTNLGRP_IPV6_IFADDR,
      RTNLGRP_IPV4_ROUTE,
      RTNLGRP_IPV6_ROUTE,
      RTNLGRP_IPV4_RULE,
      RTNLGRP_IPV6_RULE,
      // rp_filter decides whether requests reach a NIC's addresses (reply-path verification).
      RTNLGRP_IPV4_NETCONF,
    ],
    receiveBufferBytes: NOTIFY_RECEIVE_BUFFER_BYTES,
  });
}

export class Watcher {
  private mirrorState: Mirror;
  /** Which routes are decoded: replaced at each full dump, grown as links appear. */
  private interest: RouteInterest;
  /** Which main routes the mirror keeps whole: those of plumbing. */
  private readonly keepMainRoute: MainRouteFilter;
  /** Tables that started to matter and wait to be dumped. */
  private pendingTables = new Set<number>();
  private skippedRoutes = 0;
  /** Devices whose rp_filter changed since the last report, or all of them. */
  private rpFilterChanges: Set<number> | 'all' = new Set();
  /** Non-null while a dump (full, or of tables) is under way: notifications wait here to be replayed over it. */
  private heldBack: KernelEvent[] | null = null;
  private resyncAgain: ResyncReason | null = null;
  private resyncDone: Promise<void> = Promise.resolve();
  private stopped = false;
  /** Counts changes to the mirror: equal generations, same mirror. */
  generation = 0;
  /** The liveness ping awaiting its ACK on this socket (a newer one replaces it). */
  private ping: { readonly seq: number; readonly answered: () => void } | null = null;
  private pingSeq = 0;

  /**
   * `socket` receives notifications: see openNotificationSocket(). `scope` is all the watcher
   * knows of the config, read at every full dump: a config that changes it must ask for one
   * (requestResync('reload')).
   */
  constructor(
    private readonly client: RtnlClient,
    private readonly socket: NativeNetlinkSocket,
    private readonly observer: WatcherObserver,
    private readonly scope: () => MirrorScope,
  ) {
    this.keepMainRoute = (route, linkName) => isPlumbingRoute(scope().plumbing, route, linkName);
    // A long stretch of writes causes as many notifications: read them as it goes, before
    // they overrun this socket's buffer.
    client.afterBatch = () => this.drain();
    this.mirrorState = new Mirror(this.keepMainRoute);
    this.interest = new RouteInterest(scope().tables);
  }

  get mirror(): MirrorView {
    return this.mirrorState;
  }

  /** What changed in the mirror since the last call (after a re-dump: everything). */
  takeChanges(): MirrorChanges {
    return this.mirrorState.takeChanges();
  }

  /** Subscribes, then takes the first full dump. */
  async start(): Promise<void> {
    this.socket.startReading(() => this.drain());
    await this.resync('startup');
  }

  stop(): void {
    this.stopped = true;
    this.socket.close();
  }

  /** Resolves once no resync is under way or pending. */
  async settled(): Promise<void> {
    while (this.heldBack !== null) await this.resyncDone;
  }

  /** Reads and applies every notification already queued on the socket. */
  drain(): void {
    let received;
    try {
      received = receiveAll(this.socket, () => this.observer.discarded('notification not from the kernel'), this.keepRoute, this.recogniseEcho);
    } catch (error) {
      this.requestResync('read_error', (error as Error).message);
      return;
    }
    this.reportSkipped();
    this.reportRpFilterChanges();
    const eventTime = process.hrtime.bigint();
    const events: KernelEvent[] = [];
    for (const message of received.messages) {
      if ('recognised' in message) {
        events.push(message.recognised);
        continue;
      }
      if (isRtnlBody(message.body)) {
        const event = eventFromMessage(message.type, message.flags, message.body);
        if (event) events.push(event);
        // From now on the routes of its table are read; those passed over so far (in this
        // very batch too) are older than the dump of that table about to be taken.
        if (event?.kind === 'link' && event.op === 'set') this.cover(event.link.index);
      } else if (message.body.kind === 'ack' && message.portId === this.socket.portId) {
        this.answered(message.seq);
      }
    }
    if (received.undecodable) this.requestResync('decode_error', received.undecodable.message);
    if (received.lost) {
      // Everything read so far predates the dump about to be taken, and some of what came
      // after it was lost: replaying these over that dump could undo newer state.
      this.requestResync('enobufs');
      this.heldBack = [];
      return;
    }
    if (this.heldBack) {
      // One read can hold 100k+ notifications (a routing daemon filling main): a spread
      // call of that many arguments would overflow the stack.
      for (const event of events) this.heldBack.push(event);
      return;
    }
    const changed = events.filter((event) => this.mirrorState.apply(event));
    if (changed.length > 0) {
      this.generation++;
      this.observer.changed(eventTime, changed);
    }
    if (this.pendingTables.size > 0) this.fetchTables();
  }

  /**
   * Decodes a notification or dump part unless it is a route of a table that does not matter,
   * or a change of rp_filter (noted here; the mirror holds no sysctls).
   */
  private readonly keepRoute: KeepFilter = (raw: RawMessage) => {
    const rpFilter = peekRpFilterChange(raw);
    if (rpFilter !== undefined) {
      if (rpFilter === 'all' || this.rpFilterChanges === 'all') this.rpFilterChanges = 'all';
      else this.rpFilterChanges.add(rpFilter);
      return false;
    }
    const tag = peekRoute(raw);
    if (!tag || this.interest.matters(tag)) return true;
    this.skippedRoutes++;
    return false;
  };

  /**
   * A notification of symroute's own write (its echo: the request socket's port and the
   * request's sequence number), recognised from its header, and if it says exactly what the
   * request asked for, taken as the request's object without being decoded.
   */
  private readonly recogniseEcho = (raw: RawMessage): KernelEvent | undefined => {
    const sent = this.client.takeEcho(raw);
    if (!sent || !echoes(raw, sent)) return undefined;
    return eventFromEcho(raw.type, raw.flags, sent.echo as Change);
  };

  private reportRpFilterChanges(): void {
    const changes = this.rpFilterChanges;
    if (changes !== 'all' && changes.size === 0) return;
    this.rpFilterChanges = new Set();
    this.observer.rpFilterChanged(changes);
  }

  private reportSkipped(): void {
    if (this.skippedRoutes === 0) return;
    this.observer.skipped(this.skippedRoutes);
    this.skippedRoutes = 0;
  }

  /** A link is known: if its table did not matter before, it is to be dumped. */
  private cover(ifindex: number): void {
    const table = this.interest.cover(ifindex);
    if (table !== undefined) this.pendingTables.add(table);
  }

  /**
   * Proves the notification socket still delivers: an NLMSG_NOOP asking for an ACK, which
   * arrives through the same receive path as notifications. Rejects after `timeoutMs`.
   */
  pingSocket(timeoutMs: number): Promise<void> {
    const seq = (this.pingSeq = (this.pingSeq % 0xffffffff) + 1);
    return ping(this.socket, seq, timeoutMs, (answered) => {
      this.ping = { seq, answered: () => answered() };
      return () => {
        if (this.ping?.seq === seq) this.ping = null;
      };
    });
  }

  private answered(seq: number): void {
    if (this.ping?.seq !== seq) return;
    const { answered } = this.ping;
    this.ping = null;
    answered();
  }

  /** Dumps everything again (coalescing requests that arrive while one is running). */
  requestResync(reason: ResyncReason, detail?: string): void {
    if (this.stopped) return;
    if (this.heldBack) {
      this.resyncAgain = reason;
      return;
    }
    this.resync(reason, detail).catch(() => undefined);
  }

  private resync(reason: ResyncReason, detail?: string): Promise<void> {
    this.observer.resyncStarted(reason, detail);
    this.heldBack = [];
    this.pendingTables.clear(); // the full dump takes every table that matters
    const previous = this.interest;
    // Once the links are dumped, the routes of their tables are what matters, in the route
    // dump and in the notifications from then on (those before are older than that dump).
    const adopt = (fresh: RouteInterest): KeepFilter => ((this.interest = fresh), this.keepRoute);
    this.resyncDone = dumpMirror(this.client, this.scope().tables, this.keepMainRoute, adopt).then(
      (fresh) => this.finishResync(fresh),
      (error: Error) => {
        // The dump itself failed: keep the old mirror (and what it reads), replay what came
        // in, and try again shortly (right away would spin, and log, as fast as the kernel
        // can refuse).
        this.interest = previous;
        this.finishResync(null);
        setTimeout(() => this.requestResync('dump_failed', error.message), DUMP_RETRY_MS).unref();
        throw error;
      },
    );
    return this.resyncDone;
  }

  private finishResync(fresh: Mirror | null): void {
    this.reportSkipped();
    if (fresh) this.mirrorState = fresh;
    const heldBack = this.heldBack ?? [];
    this.heldBack = null;
    for (const event of heldBack) {
      // Held back under what mattered before the dump: judged again by what matters now.
      if (event.kind === 'route' && !this.interest.matters(event.route)) continue;
      if (event.kind === 'link' && event.op === 'set') this.cover(event.link.index);
      this.mirrorState.apply(event, true);
    }
    this.generation++;
    this.observer.changed(process.hrtime.bigint(), null);
    this.next();
  }

  /** After a dump: a resync asked for meanwhile, else the tables that started to matter. */
  private next(): void {
    const again = this.resyncAgain;
    this.resyncAgain = null;
    if (again) this.requestResync(again);
    else if (this.pendingTables.size > 0) this.fetchTables();
  }

  /**
   * Dumps the tables that started to matter and merges their routes into the mirror; like a
   * full resync, notifications wait meanwhile and are replayed over it, so no pass plans from
   * a table half known. Of their foreign routes the mirror holds only those announced since
   * they started to matter (before, they were passed over; and tables never stop mattering,
   * so every later change to them is read), so the dump is merged as plain additions.
   */
  private fetchTables(): void {
    const tables = [...this.pendingTables];
    this.pendingTables.clear();
    this.heldBack = [];
    this.observer.fetchingTables(tables);
    this.resyncDone = this.dumpTables(tables).then(
      (routes) => this.finishTables(routes),
      (error: Error) => {
        this.finishTables([]);
        this.requestResync('dump_failed', error.message);
      },
    );
  }

  private finishTables(routes: readonly RtnlBody[]): void {
    this.reportSkipped();
    const changed: KernelEvent[] = [];
    for (const body of routes) {
      const event = eventFromMessage(RTM_NEWROUTE, 0, body);
      if (event && this.mirrorState.apply(event)) changed.push(event);
    }
    const heldBack = this.heldBack ?? [];
    this.heldBack = null;
    // Nothing but these tables was dumped: the rest of what came in is applied as it would
    // have been (a rule added twice counts twice).
    for (const event of heldBack) if (this.mirrorState.apply(event)) changed.push(event);
    if (changed.length > 0) {
      this.generation++;
      // Routes found in the dump are events like any other: they are not drift.
      this.observer.changed(process.hrtime.bigint(), changed);
    }
    this.next();
  }

  /** The routes of these tables, one kernel-filtered dump each (only theirs are decoded). */
  private async dumpTables(tables: readonly number[]): Promise<RtnlBody[]> {
    const wanted = new Set(tables);
    const inTables: KeepFilter = (raw) => {
      const tag = peekRoute(raw);
      if (tag === undefined || wanted.has(tag.table)) return true;
      this.skippedRoutes++;
      return false;
    };
    const routes: RtnlBody[] = [];
    for (const table of tables) {
      const dumped = await this.client.dump(RTM_GETROUTE, routeDumpRequest({ table }), 'dump_route', `dumping routes of table ${table}`, inTables);
      // One by one, not spread into push(): a table may hold more routes than a call takes arguments.
      for (const route of dumped) routes.push(route);
    }
    return routes;
  }
}

/**
 * One consistent-enough copy of everything symroute reasons about, routes only of the tables
 * that matter given `scope` and the links dumped first. `adopt` is told what matters before
 * the routes are dumped and returns the filter to dump them with (by default, that interest
 * as it is). Each dump streams into the mirror as it is read, so a host's full routing table
 * is never held whole; one the kernel flags interrupted (NLM_F_DUMP_INTR: the objects changed
 * under it, so some may be missing or doubled) throws the whole copy away and starts over.
 */
export async function dumpMirror(
  client: RtnlClient,
  scope: TableScope,
  keepMainRoute?: MainRouteFilter,
  adopt: (interest: RouteInterest) => KeepFilter = keepOf,
  pause: (attempt: number) => Promise<void> = settleBackoff,
): Promise<Mirror> {
  for (let attempt = 1; ; attempt++) {
    const mirror = await dumpMirrorOnce(client, scope, keepMainRoute, adopt);
    if (mirror) return mirror;
    if (attempt === DUMP_ATTEMPTS) throw new Error(`dumping the kernel's objects: interrupted by concurrent changes ${DUMP_ATTEMPTS} times in a row`);
    await pause(attempt);
  }
}

/**
 * Changes come in bursts (a thousand links appearing, each with its IPv6 addresses going
 * through DAD) that outlast several whole dumps of a large host: wait longer after each
 * interrupted round, 50 ms doubling to 5 s (about 16 s over all ten rounds).
 */
const settleBackoff = (attempt: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, Math.min(50 * 2 ** (attempt - 1), 5000)));

/** A mirror from one round of dumps, or null if one of them was interrupted. */
async function dumpMirrorOnce(
  client: RtnlClient,
  scope: TableScope,
  keepMainRoute: MainRouteFilter | undefined,
  adopt: (interest: RouteInterest) => KeepFilter,
): Promise<Mirror | null> {
  // Not journaled while it fills: a fresh mirror is planned from as a whole, and a journal
  // of a full table's worth of routes would only be garbage held until the first pass.
  const mirror = new Mirror(keepMainRoute, false);
  // GET and NEW differ by 2 in every rtnetlink family of messages.
  const dump = async (type: number, request: RtnlBody, op: string, what: string, keep?: KeepFilter): Promise<boolean> => {
    const onPart = (body: RtnlBody) => {
      const event = eventFromMessage(type - 2, 0, body);
      if (event) mirror.apply(event);
    };
    const { interrupted } = await client.dumpEach(type, request, op, `dumping ${what}`, onPart, keep);
    return !interrupted;
  };
  if (!(await dump(RTM_GETLINK, dumpRequests.link, 'dump_link', 'links'))) return null;
  if (!(await dump(RTM_GETADDR, dumpRequests.address, 'dump_address', 'addresses'))) return null;
  const interest = new RouteInterest(scope, mirror.links.keys());
  const keep = adopt(interest);
  // The local table for the addresses it delivers (Mirror.delivers): `keep` passes over the rest.
  for (const [request, what] of routeDumps([RT_TABLE_MAIN, RT_TABLE_LOCAL, ...interest.tables], interest.protocol)) {
    if (!(await dump(RTM_GETROUTE, request, 'dump_route', what, keep))) return null;
  }
  if (!(await dump(RTM_GETRULE, dumpRequests.rule, 'dump_rule', 'rules'))) return null;
  mirror.startJournal();
  return mirror;
}

/**
 * The dumps that read the routes of these tables and of this protocol in any table: one per
 * table and one for the protocol, each filtered by the kernel, or for many tables one dump
 * of every route. Either way what the dump's `keep` turns down is not decoded.
 */
function routeDumps(tables: readonly number[], protocol: number): Array<[RtnlBody, string]> {
  if (tables.length > TABLE_DUMPS_MAX) return [[dumpRequests.route, 'routes']];
  return [[routeDumpRequest({ protocol }), `routes of protocol ${protocol}`], ...tables.map((table): [RtnlBody, string] => [routeDumpRequest({ table }), `routes of table ${table}`])];
}

/** Decodes what matters to `interest`, and every message that is not a route. */
function keepOf(interest: RouteInterest): KeepFilter {
  return (raw) => {
    const tag = peekRoute(raw);
    return tag === undefined || interest.matters(tag);
  };
}
