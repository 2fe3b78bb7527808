// A scripted stand-in for the kernel's rtnetlink side, for unit tests of the daemon's
// concurrency without root: it answers dumps, applies rule and route requests with the
// kernel's EEXIST/ENOENT/ESRCH semantics (NLM_F_EXCL, NLM_F_REPLACE, a delete naming every
// attribute), answers route lookups, multicasts a notification for every change (before the ACK, like the kernel),
// and lets a test play "someone else" (ip rule del, an address removed) or hold notifications
// back to force interleavings. It models only what symroute relies on.
import { BlockList } from 'node:net';
import type { Nexthop, Route, Rule } from '../../src/domain/model.js';
import { concat, decodeAttributes, encodeMessage, splitDatagram } from '../../src/netlink/codec.js';
import { RTMSG_PROTOCOL_OFFSET, RTMSG_TABLE_OFFSET, routeSchema } from '../../src/netlink/schemas.js';
import {
  NLM_F_DUMP,
  NLM_F_EXCL,
  NLM_F_MULTI,
  NLM_F_REPLACE,
  NLMSG_DONE,
  NLMSG_ERROR,
  RTM_DELADDR,
  RTM_DELROUTE,
  RTM_DELRULE,
  RTM_GETADDR,
  RTM_GETLINK,
  RTM_GETROUTE,
  RTM_GETRULE,
  RTM_NEWADDR,
  RTM_NEWLINK,
  RTM_NEWROUTE,
  RTM_NEWRULE,
} from '../../src/netlink/constants.js';
import { decodeMessage, encodeRequest, type AddressMessage, type LinkMessage, type RouteMessage, type RtnlBody } from '../../src/netlink/messages.js';
import type { NativeNetlinkSocket, ReadResult } from '../../src/netlink/native.js';
import { routeFromMessage, routeToMessage, ruleFromMessage, ruleToMessage } from '../../src/kernel/objects.js';
import { addressMessage, linkMessage, localRouteOf, type AddressSpec, type LinkSpec } from './builders.js';

/**
 * Written from the kernel's rules, not from src/, so that a mistake in symroute's keys is
 * caught rather than mirrored. One place for a route (what NLM_F_EXCL refuses and
 * NLM_F_REPLACE takes over): its table, destination, IPv6 source and metric (fib_table_insert
 * and fib6_add compare these; symroute sets no tos).
 */
const placeOf = (r: Route): string =>
  JSON.stringify([r.family, r.table, r.dst, r.dstLength, r.family === 6 ? [r.src ?? null, r.srcLength ?? 0] : null, r.metric]);

/** Every attribute, nexthops in any order: what a delete that names them all matches. */
function identityOf(o: Route | Rule): string {
  let text = '';
  for (const key of Object.keys(o).sort()) {
    const value = (o as unknown as Record<string, unknown>)[key];
    if (value === undefined) continue;
    const shown = key === 'nexthops' ? (value as Nexthop[]).map((n) => `${n.ifindex} ${n.gateway}`).sort().join(',') : String(value);
    text += `${key}=${shown};`;
  }
  return text;
}

const EEXIST = 17;
const ENOENT = 2;
const ESRCH = 3;
const ENETUNREACH = 101;
// Rule actions (fib_rules.h).
const FR_ACT_TO_TBL = 1;
const FR_ACT_GOTO = 2;

/** One end of a netlink socket: datagrams queue up and readability is signalled on the next turn. */
export class ScriptedSocket implements NativeNetlinkSocket {
  private queue: Buffer[] = [];
  private overrunPending = false;
  private onReadable: (() => void) | null = null;
  private signalled = false;
  held = false;
  reads = 0;

  constructor(
    readonly portId: number,
    private readonly onSend: (messages: readonly Uint8Array[]) => void = () => undefined,
  ) {}

  send(messages: readonly Uint8Array[]): number {
    this.onSend(messages);
    return messages.reduce((n, m) => n + m.length, 0);
  }
  readAll(): ReadResult {
    this.reads++;
    const datagrams = this.held ? [] : this.queue;
    if (!this.held) this.queue = [];
    const overrun = this.overrunPending;
    this.overrunPending = false;
    return { datagrams, senderPortIds: datagrams.map(() => 0), overrun, truncated: false };
  }
  startReading(onReadable: () => void): void {
    this.onReadable = onReadable;
  }
  stopReading(): void {
    this.onReadable = null;
  }
  close(): void {
    this.onReadable = null;
  }

  deliver(datagram: Buffer): void {
    if (!this.onReadable) return; // nobody has this socket open yet
    this.queue.push(datagram);
    this.signal();
  }
  /** The kernel dropped messages for this socket (ENOBUFS on the next read). */
  overrun(): void {
    this.queue = [];
    this.overrunPending = true;
    this.signal();
  }
  /** Delivers what was held back. */
  release(): void {
    this.held = false;
    this.signal();
  }
  /** Whether anyone has this socket open (else what is delivered is lost). */
  get listening(): boolean {
    return this.onReadable !== null;
  }
  get queued(): number {
    return this.queue.length;
  }

  private signal(): void {
    if (this.signalled || this.held) return;
    this.signalled = true;
    setImmediate(() => {
      this.signalled = false;
      if (!this.held) this.onReadable?.();
    });
  }
}

/** Counts of what the daemon asked for: `add_route ok`, `add_rule EEXIST`, `dump_route`, … */
export type RequestLog = Map<string, number>;

export class ScriptedKernel {
  readonly requests = new ScriptedSocket(4242, (messages) => this.receive(messages));
  readonly notifications = new ScriptedSocket(4243);
  readonly log: RequestLog = new Map();
  private readonly links = new Map<number, LinkMessage>();
  private readonly addresses = new Map<string, AddressMessage>();
  /** Routes by identityOf; which of them hold each place (placeOf). */
  private readonly routes = new Map<string, Route>();
  private readonly placed = new Map<string, Set<string>>();
  /** Identical rules side by side, as the kernel keeps them. */
  private rules: { readonly id: string; readonly rule: Rule }[] = [];
  private pendingAct: (() => void) | undefined;

  // ---- someone else acting on the kernel (ip link, ip address, ip rule, ip route) ----

  link(index: number, name: string, spec: LinkSpec = {}): void {
    const message = linkMessage(index, name, spec);
    this.links.set(index, message);
    if (spec.up === false) this.dropRoutesVia(index);
    this.notify(RTM_NEWLINK, 0, message);
  }
  address(spec: AddressSpec): void {
    const message = addressMessage(spec);
    this.addresses.set(addressId(message), message);
    this.notify(RTM_NEWADDR, 0, message);
    const local = localRouteOf(spec);
    if (local) this.addRoute(local);
  }
  delAddress(spec: AddressSpec): void {
    const message = addressMessage(spec);
    if (!this.addresses.delete(addressId(message))) throw new Error(`no address ${spec.cidr}`);
    const family = message.header.family;
    const others = [...this.addresses.values()].some((a) => a.header.index === spec.ifindex && a.header.family === family);
    // The last IPv4 address takes the device's IPv4 routes, without a word.
    if (family === 2 && !others) this.dropRoutesVia(spec.ifindex);
    this.notify(RTM_DELADDR, 0, message);
    const local = localRouteOf(spec);
    if (local) this.delRoute(local);
  }
  delRule(rule: Rule): void {
    const id = identityOf(rule);
    const i = this.rules.findIndex((r) => r.id === id);
    if (i < 0) throw new Error('no such rule');
    this.rules.splice(i, 1);
    this.notify(RTM_DELRULE, 0, ruleToMessage(rule));
  }
  /** Someone else's `ip route del`. */
  delRoute(route: Route): void {
    if (!this.removeRoute(identityOf(route))) throw new Error('no such route');
    this.notify(RTM_DELROUTE, 0, routeToMessage(route));
  }
  /**
   * Lets someone else act just before the kernel takes the daemon's next write: a change
   * that overtakes a request already on its way (the daemon reads of it only afterwards).
   */
  beforeNextWrite(act: () => void): void {
    this.pendingAct = act;
  }
  /** Someone else's route; `ip route add` also works in a table no link is behind yet. */
  addRoute(route: Route): void {
    this.putRoute(route);
    this.notify(RTM_NEWROUTE, 0, routeToMessage(route));
  }

  // ---- what the kernel holds ----

  ownedRules(protocol: number): Rule[] {
    return this.rules.map(({ rule }) => rule).filter((r) => r.protocol === protocol);
  }
  ownedRoutes(protocol: number): Route[] {
    return [...this.routes.values()].filter((r) => r.protocol === protocol);
  }
  count(entry: string): number {
    return this.log.get(entry) ?? 0;
  }
  /** Every logged entry that is an error answer. */
  errors(): string[] {
    return [...this.log.keys()].filter((entry) => / E[A-Z]+$/.test(entry));
  }

  // ---- the request socket ----

  private receive(messages: readonly Uint8Array[]): void {
    for (const raw of messages.flatMap((m) => splitDatagram(m))) {
      const message = decodeMessage(raw);
      const reply = (datagram: Buffer) => this.requests.deliver(datagram);
      if ((raw.type & 3) === 2 && (raw.flags & NLM_F_DUMP) === NLM_F_DUMP) {
        // A route dump may ask for one table or one protocol (strict checking). Logged as
        // plain `dump_route`: a dump of everything, or of main (one per picture of the routes).
        const filter = raw.type === RTM_GETROUTE ? routeFilter(raw.payload) : {};
        const kind = ['link', 'address', 'route', 'rule'][[RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE, RTM_GETRULE].indexOf(raw.type)];
        const detail = filter.protocol ? ` protocol ${filter.protocol}` : filter.table && filter.table !== 254 ? ` table ${filter.table}` : '';
        this.record(`dump_${kind}${detail}`);
        const parts = this.dumpOf(raw.type, filter).map(([type, body]) => encodeRequest({ type, flags: NLM_F_MULTI, seq: raw.seq, portId: raw.portId }, body));
        reply(concat([...parts, encodeMessage({ type: NLMSG_DONE, flags: NLM_F_MULTI, seq: raw.seq, portId: raw.portId }, new Uint8Array(4))]) as Buffer);
        continue;
      }
      if (raw.type === RTM_GETROUTE) {
        // A lookup (`ip route get`): the route it finds, then the ACK; or the refusal.
        const found = this.lookUp(message.body as RouteMessage);
        if (typeof found !== 'number') reply(encodeRequest({ type: RTM_NEWROUTE, flags: 0, seq: raw.seq, portId: raw.portId }, routeToMessage(found)));
        const answer = Buffer.alloc(4 + 16);
        answer.writeInt32LE(typeof found === 'number' ? -found : 0, 0);
        reply(encodeMessage({ type: NLMSG_ERROR, flags: 0x100, seq: raw.seq, portId: raw.portId }, answer));
        continue;
      }
      const act = this.pendingAct;
      this.pendingAct = undefined;
      act?.();
      const errno = this.write(raw.type, raw.flags, message.body as RtnlBody);
      const error = Buffer.alloc(4 + 16);
      error.writeInt32LE(-errno, 0);
      reply(encodeMessage({ type: NLMSG_ERROR, flags: 0x100, seq: raw.seq, portId: raw.portId }, error));
    }
  }

  private write(type: number, flags: number, body: RtnlBody): number {
    const op = { [RTM_NEWROUTE]: 'add_route', [RTM_DELROUTE]: 'delete_route', [RTM_NEWRULE]: 'add_rule', [RTM_DELRULE]: 'delete_rule' }[type];
    let errno = 0;
    if (body.kind === 'rule') {
      const rule = ruleFromMessage(body)!;
      const id = identityOf(rule);
      const i = this.rules.findIndex((r) => r.id === id);
      if (type === RTM_NEWRULE && i >= 0 && flags & NLM_F_EXCL) errno = EEXIST;
      else if (type === RTM_DELRULE && i < 0) errno = ENOENT;
      else {
        if (type === RTM_NEWRULE) this.rules.push({ id, rule });
        else this.rules.splice(i, 1);
        this.notify(type, 0, ruleToMessage(rule));
      }
    } else if (body.kind === 'route') {
      const route = routeFromMessage(body)!;
      const [inPlace] = this.placed.get(placeOf(route)) ?? [];
      if (type === RTM_DELROUTE) {
        if (!this.removeRoute(identityOf(route))) errno = ESRCH;
        else this.notify(type, 0, routeToMessage(route));
      } else if (inPlace !== undefined && flags & NLM_F_EXCL) {
        errno = EEXIST;
      } else {
        if (inPlace !== undefined) this.removeRoute(inPlace);
        this.putRoute(route);
        this.notify(type, inPlace !== undefined && flags & NLM_F_REPLACE ? NLM_F_REPLACE : 0, routeToMessage(route));
      }
    }
    this.record(`${op} ${errno ? { [EEXIST]: 'EEXIST', [ENOENT]: 'ENOENT', [ESRCH]: 'ESRCH' }[errno] : 'ok'}`);
    return errno;
  }

  /**
   * The kernel's route lookup, as far as symroute's tests need it: a request arriving on an
   * interface (RTA_IIF) for a local address is delivered locally; a reply takes the first rule,
   * by priority, whose source and destination match and that sends it to a table holding a
   * route to its destination (the longest prefix there), else main; a matching goto jumps, a
   * nop passes. No rp_filter, no other rule actions.
   */
  private lookUp(request: RouteMessage): Route | number {
    const { family } = request.header;
    const { src, dst, iif } = request.attributes;
    const version = family === 2 ? 'ipv4' : 'ipv6';
    const full = family === 2 ? 32 : 128;
    if (!dst) return ENETUNREACH;
    const inPrefix = (address: string, network: string | undefined, length: number) => {
      if (length === 0) return true;
      const block = new BlockList();
      block.addSubnet(network!, length, version);
      return block.check(address, version);
    };
    if (iif !== undefined) {
      const local = [...this.addresses.values()].some((a) => a.header.family === family && (a.attributes.local ?? a.attributes.address) === dst);
      if (!local) return ENETUNREACH;
      return { family: family === 2 ? 4 : 6, table: 255, dst, dstLength: full, metric: 0, protocol: 2, scope: 254, type: 2, oif: 1 };
    }
    const inTable = (table: number) =>
      [...this.routes.values()]
        .filter((r) => r.table === table && (r.family === 4 ? 2 : 10) === family && inPrefix(dst, r.dst, r.dstLength))
        .sort((a, b) => b.dstLength - a.dstLength)[0];
    // By priority; within one, in the order they came (the sort is stable).
    const rules = this.rules
      .map((held) => held.rule)
      .filter((r) => (r.family === 4 ? 2 : 10) === family)
      .sort((a, b) => a.priority - b.priority);
    const matches = (r: Rule) => (src === undefined ? r.srcLength === 0 : inPrefix(src, r.src, r.srcLength)) && inPrefix(dst, r.dst, r.dstLength);
    for (let i = 0; i < rules.length; i++) {
      const rule = rules[i]!;
      if (!matches(rule)) continue;
      if (rule.action === FR_ACT_GOTO) {
        // To the first rule of the target priority; with none there, the goto is no rule at all.
        const target = rules.findIndex((r) => r.priority === rule.goto);
        if (target > i) i = target - 1;
        continue;
      }
      if (rule.action !== FR_ACT_TO_TBL) continue; // nop (other actions are not modelled)
      const route = inTable(rule.table);
      if (route) return { ...route, dst, dstLength: full };
    }
    const route = inTable(254);
    return route ? { ...route, dst, dstLength: full } : ENETUNREACH;
  }

  private dumpOf(getType: number, filter: RouteFilter): [number, RtnlBody][] {
    if (getType === RTM_GETLINK) return [...this.links.values()].map((m) => [RTM_NEWLINK, m]);
    if (getType === RTM_GETADDR) return [...this.addresses.values()].map((m) => [RTM_NEWADDR, m]);
    if (getType === RTM_GETROUTE) {
      const routes = [...this.routes.values()].filter(
        (r) => (!filter.table || r.table === filter.table) && (!filter.protocol || r.protocol === filter.protocol),
      );
      return routes.map((r) => [RTM_NEWROUTE, routeToMessage(r)]);
    }
    return this.rules.map(({ rule }) => [RTM_NEWRULE, ruleToMessage(rule)]);
  }

  private notify(type: number, flags: number, body: RtnlBody): void {
    if (!this.notifications.listening) return; // nobody to tell (and 150k encodings saved)
    this.notifications.deliver(encodeRequest({ type, flags, seq: 0, portId: 0 }, body));
  }

  private dropRoutesVia(ifindex: number): void {
    for (const [id, route] of [...this.routes]) if (route.family === 4 && route.oif === ifindex) this.removeRoute(id);
  }

  private putRoute(route: Route): void {
    const id = identityOf(route);
    this.routes.set(id, route);
    const place = placeOf(route);
    const ids = this.placed.get(place);
    if (ids) ids.add(id);
    else this.placed.set(place, new Set([id]));
  }

  private removeRoute(id: string): boolean {
    const route = this.routes.get(id);
    if (!route) return false;
    this.routes.delete(id);
    const place = placeOf(route);
    this.placed.get(place)?.delete(id);
    if (this.placed.get(place)?.size === 0) this.placed.delete(place);
    return true;
  }

  private record(entry: string): void {
    this.log.set(entry, (this.log.get(entry) ?? 0) + 1);
  }
}

interface RouteFilter {
  readonly table?: number;
  readonly protocol?: number;
}

/** What a route dump request asks for: RTA_TABLE, else rtm_table; rtm_protocol (0: any). */
function routeFilter(payload: Uint8Array): RouteFilter {
  // Its AF_UNSPEC header is not decoded as a route's: read the fields directly.
  const attributes = decodeAttributes<{ table?: number }>(routeSchema.policy, payload.subarray(routeSchema.header.size), { family: 0 }, 'route dump request');
  return { table: attributes.table ?? payload[RTMSG_TABLE_OFFSET], protocol: payload[RTMSG_PROTOCOL_OFFSET] };
}

const addressId = (m: AddressMessage): string => `${m.header.index}|${m.attributes.local ?? m.attributes.address}/${m.header.prefixlen}`;
