// Keeps a Mirror of the kernel current: subscribes to link, address, route and rule
// notifications first, then dumps everything, then replays what arrived during the dump.
// A receive overrun (ENOBUFS) means notifications were lost, so everything is dumped again.
import type { RtnlClient } from '../netlink/client.js';
import { encodeMessage } from '../netlink/codec.js';
import {
  NLM_F_ACK,
  NLM_F_REQUEST,
  NLMSG_NOOP,
  RTM_GETADDR,
  RTM_GETLINK,
  RTM_GETROUTE,
  RTM_GETRULE,
  RTNLGRP_IPV4_IFADDR,
  RTNLGRP_IPV4_ROUTE,
  RTNLGRP_IPV4_RULE,
  RTNLGRP_IPV6_IFADDR,
  RTNLGRP_IPV6_ROUTE,
  RTNLGRP_IPV6_RULE,
  RTNLGRP_LINK,
} from '../netlink/constants.js';
import { isRtnlBody, type RtnlBody } from '../netlink/messages.js';
import { receiveAll } from '../netlink/receive.js';
import type { KernelEvent } from '../domain/events.js';
import { eventFromMessage } from './events.js';
import { openNetlinkSocket, type NativeNetlinkSocket } from '../netlink/native.js';
import { dumpRequests } from './objects.js';
import { Mirror, type MainRouteFilter, type MirrorView } from '../domain/mirror.js';

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
}


const NOTIFY_RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024;
const DUMP_RETRY_MS = 1000;

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
    ],
    receiveBufferBytes: NOTIFY_RECEIVE_BUFFER_BYTES,
  });
}

export class Watcher {
  private mirrorState: Mirror;
  /** Non-null while a dump is under way: notifications wait here to be replayed over it. */
  private heldBack: KernelEvent[] | null = null;
  private resyncAgain: ResyncReason | null = null;
  private resyncDone: Promise<void> = Promise.resolve();
  private stopped = false;
  /** Counts changes to the mirror: equal generations, same mirror. */
  generation = 0;
  /** The liveness ping awaiting its ACK on this socket (a newer one replaces it). */
  private ping: { readonly seq: number; readonly answered: () => void } | null = null;
  private pingSeq = 0;

  /** `socket` receives notifications: see openNotificationSocket(). */
  constructor(
    private readonly client: RtnlClient,
    private readonly socket: NativeNetlinkSocket,
    private readonly observer: WatcherObserver,
    private readonly keepMainRoute: MainRouteFilter = () => false,
  ) {
    this.mirrorState = new Mirror(keepMainRoute);
  }

  get mirror(): MirrorView {
    return this.mirrorState;
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
      received = receiveAll(this.socket, () => this.observer.discarded('notification not from the kernel'));
    } catch (error) {
      this.requestResync('read_error', (error as Error).message);
      return;
    }
    const eventTime = process.hrtime.bigint();
    const events: KernelEvent[] = [];
    for (const message of received.messages) {
      if (isRtnlBody(message.body)) {
        const event = eventFromMessage(message.type, message.flags, message.body);
        if (event) events.push(event);
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
      this.heldBack.push(...events);
      return;
    }
    const changed = events.filter((event) => this.mirrorState.apply(event));
    if (changed.length === 0) return;
    this.generation++;
    this.observer.changed(eventTime, changed);
  }

  /**
   * Proves the notification socket still delivers: an NLMSG_NOOP asking for an ACK, which
   * arrives through the same receive path as notifications. Rejects after `timeoutMs`.
   */
  pingSocket(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const seq = (this.pingSeq = (this.pingSeq % 0xffffffff) + 1);
      const timer = setTimeout(() => {
        if (this.ping?.seq === seq) this.ping = null;
        reject(new Error(`no answer to a ping within ${timeoutMs} ms`));
      }, timeoutMs);
      this.ping = {
        seq,
        answered: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      try {
        this.socket.send([encodeMessage({ type: NLMSG_NOOP, flags: NLM_F_REQUEST | NLM_F_ACK, seq, portId: this.socket.portId }, new Uint8Array(0))]);
      } catch (error) {
        clearTimeout(timer);
        this.ping = null;
        reject(error as Error);
      }
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
    this.resyncDone = dumpMirror(this.client, this.keepMainRoute).then(
      (fresh) => this.finishResync(fresh),
      (error: Error) => {
        // The dump itself failed: keep the old mirror, replay what came in, and try again
        // shortly (right away would spin, and log, as fast as the kernel can refuse).
        this.finishResync(null);
        setTimeout(() => this.requestResync('dump_failed', error.message), DUMP_RETRY_MS).unref();
        throw error;
      },
    );
    return this.resyncDone;
  }

  private finishResync(fresh: Mirror | null): void {
    if (fresh) this.mirrorState = fresh;
    const heldBack = this.heldBack ?? [];
    this.heldBack = null;
    for (const event of heldBack) this.mirrorState.apply(event, true);
    this.generation++;
    this.observer.changed(process.hrtime.bigint(), null);
    const again = this.resyncAgain;
    this.resyncAgain = null;
    if (again) this.requestResync(again);
  }
}

/** One consistent-enough copy of everything symroute reasons about (each dump retried if interrupted). */
export async function dumpMirror(client: RtnlClient, keepMainRoute?: MainRouteFilter): Promise<Mirror> {
  const mirror = new Mirror(keepMainRoute);
  const dumps: [number, RtnlBody, string][] = [
    [RTM_GETLINK, dumpRequests.link, 'link'],
    [RTM_GETADDR, dumpRequests.address, 'address'],
    [RTM_GETROUTE, dumpRequests.route, 'route'],
    [RTM_GETRULE, dumpRequests.rule, 'rule'],
  ];
  for (const [type, request, kind] of dumps) {
    // GET and NEW differ by 2 in every rtnetlink family of messages.
    for (const body of await client.dump(type, request, `dump_${kind}`, `dumping ${kind}s`)) {
      const event = eventFromMessage(type - 2, 0, body);
      if (event) mirror.apply(event);
    }
  }
  return mirror;
}
