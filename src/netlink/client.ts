// The request side of rtnetlink: sequence numbers, pipelined requests matched to their
// ACKs, and multipart dumps, either streamed part by part to the caller as they are read
// (dumpEach: the caller starts over when the kernel flags one NLM_F_DUMP_INTR) or collected
// and retried here (dump). Like
// libmnl's receive loop it accepts only messages from the kernel, addressed to this socket,
// carrying a sequence number it is waiting for.
import { NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_MULTI, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR } from './constants.js';
import { NetlinkError } from './errors.js';
import { encodeRequest, isRtnlBody, type DecodedMessage, type RtnlBody } from './messages.js';
import { openNetlinkSocket, type NativeNetlinkSocket } from './native.js';
import { ping } from './ping.js';
import { receiveEach, type KeepFilter, type ReceiveHandlers } from './receive.js';
import { NLMSG_HDRLEN, type RawMessage } from './codec.js';

export interface Request {
  readonly op: string; // short, fixed label for metrics: add_route, delete_rule, …
  readonly type: number; // RTM_NEWROUTE, RTM_DELRULE, …
  readonly flags: number; // NLM_F_CREATE | NLM_F_EXCL, …; REQUEST and ACK are added
  readonly body: RtnlBody;
  /**
   * What this request does, for errors: "adding rule from 198.18.0.2 lookup 1002". Read only
   * when the kernel refuses the request (a getter may put off wording it until then).
   */
  readonly action: string;
  /**
   * What the notification this request causes (its echo: sent to every listener, carrying
   * this socket's port and the request's sequence number) stands for, if the caller wants
   * to recognise it without decoding it: see takeEcho().
   */
  readonly echo?: unknown;
}

/** A request sent with an `echo`: its type and payload as sent, to compare the echo with. */
export interface SentRequest {
  readonly type: number;
  readonly payload: Uint8Array;
  readonly echo: unknown;
}

export type RequestResult = { readonly ok: true } | { readonly ok: false; readonly error: NetlinkError };

/** Hooks for metrics and logs; the client itself never decides what to do about them. */
export interface ClientObserver {
  completed?(op: string, error?: NetlinkError): void;
  dumpInterrupted?(action: string): void;
  discarded?(reason: string): void;
}

type Pending =
  | { readonly kind: 'request'; readonly request: Pick<Request, 'action'>; readonly settle: (result: RequestResult) => void }
  | {
      readonly kind: 'dump'; // a dump, or a GET answered with an object
      readonly action: string;
      /** Each part as soon as it is decoded (a GET: only the first). */
      readonly onPart: (body: RtnlBody) => void;
      parts: number;
      /** Which of its parts to decode; the others are passed over unread. */
      readonly keep: KeepFilter | undefined;
      interrupted: boolean;
      readonly settle: (outcome: DumpOutcome | Error) => void;
    };

/** How a streamed dump ended: interrupted means its parts are not a consistent picture. */
export interface DumpOutcome {
  readonly interrupted: boolean;
}

// Requests per sendmsg(). Every ACK lands in the receive buffer before sendmsg() returns,
// so a batch must fit in it (see RECEIVE_BUFFER_BYTES).
const BATCH_SIZE = 256;
const RECEIVE_BUFFER_BYTES = 8 * 1024 * 1024;
/** How many times in a row a dump may be interrupted before it is given up (and retried later). */
export const DUMP_ATTEMPTS = 10;
/**
 * Requests whose echo may still come. One that never comes (a replace by an identical route
 * is not announced; a notification lost to an overrun) is forgotten once this many newer
 * ones were sent: its echo, should it come after all, is then simply decoded.
 */
const ECHOES_AWAITED = 65536;
const EIO = 5;

/** A socket for requests and dumps: no multicast groups, room for a whole batch of ACKs. */
export function openRequestSocket(): NativeNetlinkSocket {
  return openNetlinkSocket({ receiveBufferBytes: RECEIVE_BUFFER_BYTES });
}

const interruptedTooOften = (action: string): Error => new Error(`${action}: interrupted by concurrent changes ${DUMP_ATTEMPTS} times in a row`);

export class RtnlClient {
  private readonly socket: NativeNetlinkSocket;
  private readonly pending = new Map<number, Pending>();
  /** By sequence number, requests sent with an `echo`, until their echo is taken or they fail. */
  private readonly awaitingEcho = new Map<number, SentRequest>();
  private nextSeq = 1;
  private dumpQueue: Promise<unknown> = Promise.resolve();

  /** `socket` is for tests, which script the kernel's side; normally a fresh one is opened. */
  constructor(
    private readonly observer: ClientObserver = {},
    socket: NativeNetlinkSocket = openRequestSocket(),
  ) {
    this.socket = socket;
    this.socket.startReading(() => this.onReadable());
  }

  close(): void {
    this.failAll(new Error('netlink client closed'));
    this.socket.close();
  }

  /**
   * Sends all requests, pipelined, and resolves with one result per request, in order. The
   * kernel handles a batch inside sendmsg() and has queued every ACK of it when that returns,
   * so they are read at once and the next batch follows without waiting for a turn of the
   * event loop: the whole list goes out in one stretch and in order (the kernel handles a
   * request only after those sent before it, as a phase must follow the one before), with
   * never more than a batch of ACKs in the receive buffer. `afterBatch` runs between batches:
   * the watcher reads the notifications each caused before they can overrun its socket.
   */
  execute(requests: readonly Request[]): Promise<RequestResult[]> {
    if (requests.length === 0) return Promise.resolve([]);
    return new Promise((resolve) => {
      const results = new Array<RequestResult>(requests.length);
      let left = requests.length;
      const settled = (i: number, result: RequestResult) => {
        results[i] = result;
        this.observer.completed?.(requests[i]!.op, result.ok ? undefined : result.error);
        if (--left === 0) resolve(results);
      };
      for (let start = 0; start < requests.length; start += BATCH_SIZE) {
        if (start > 0) this.afterBatch?.();
        this.sendBatch(requests, start, Math.min(start + BATCH_SIZE, requests.length), settled);
        this.onReadable();
      }
    });
  }

  /**
   * The request a notification echoes, if it is the echo of one sent with an `echo` (by this
   * socket's port and the request's sequence number), read from its header alone; each echo
   * is taken once. Whether the notification says what the request asked for is the caller's
   * to check (its payload against the request's).
   */
  takeEcho(raw: RawMessage): SentRequest | undefined {
    if (raw.portId !== this.socket.portId) return undefined;
    const sent = this.awaitingEcho.get(raw.seq);
    if (sent) this.awaitingEcho.delete(raw.seq);
    return sent;
  }

  private awaitEcho(seq: number, sent: SentRequest): void {
    this.awaitingEcho.set(seq, sent);
    if (this.awaitingEcho.size > ECHOES_AWAITED) this.awaitingEcho.delete(this.awaitingEcho.keys().next().value!);
  }

  /** Runs between two batches of one execute() (see there). */
  afterBatch: (() => void) | undefined;

  private sendBatch(requests: readonly Request[], start: number, end: number, settled: (i: number, result: RequestResult) => void): void {
    const buffers: Buffer[] = [];
    for (let i = start; i < end; i++) {
      const request = requests[i]!;
      const seq = this.allocateSeq();
      this.pending.set(seq, { kind: 'request', request, settle: (result) => settled(i, result) });
      const buffer = encodeRequest({ type: request.type, flags: request.flags | NLM_F_REQUEST | NLM_F_ACK, seq, portId: this.socket.portId }, request.body);
      if (request.echo !== undefined) this.awaitEcho(seq, { type: request.type, payload: buffer.subarray(NLMSG_HDRLEN), echo: request.echo });
      buffers.push(buffer);
    }
    try {
      this.socket.send(buffers);
    } catch (error) {
      this.failAll(error as Error);
    }
  }

  /**
   * Proves the socket still works both ways: an NLMSG_NOOP that asks for an ACK, which the
   * kernel sends back without doing anything. Rejects when no ACK came within `timeoutMs`.
   */
  ping(timeoutMs: number): Promise<void> {
    const seq = this.allocateSeq();
    return ping(this.socket, seq, timeoutMs, (answered) => {
      this.pending.set(seq, { kind: 'request', request: { action: 'pinging the kernel' }, settle: (result) => answered(result.ok ? undefined : result.error) });
      return () => this.pending.delete(seq);
    });
  }


  /**
   * Dumps objects matching `body` (a GET request's filter). A dump the kernel marks as
   * interrupted (the table changed under it) is thrown away and taken again. Parts `keep`
   * turns down are never decoded (it sees every message of the answer, raw).
   */
  async dump(type: number, body: RtnlBody, op: string, action: string, keep?: KeepFilter): Promise<RtnlBody[]> {
    for (let attempt = 1; ; attempt++) {
      const parts: RtnlBody[] = [];
      const { interrupted } = await this.dumpEach(type, body, op, action, (part) => parts.push(part), keep);
      if (!interrupted) return parts;
      if (attempt === DUMP_ATTEMPTS) throw interruptedTooOften(action);
    }
  }

  /**
   * Dumps objects matching `body`, handing each part to `onPart` as soon as it is read and
   * decoded, so that no dump is ever held whole. Resolves once the kernel is done; if it
   * flagged the dump interrupted (the objects changed under it), the parts seen may miss some
   * or repeat some: the caller throws away what it made of them and starts over.
   */
  dumpEach(type: number, body: RtnlBody, op: string, action: string, onPart: (body: RtnlBody) => void, keep?: KeepFilter): Promise<DumpOutcome> {
    // One dump at a time per socket: the kernel answers EBUSY to a second concurrent one.
    const result = this.dumpQueue.then(() => this.collect(type, NLM_F_REQUEST | NLM_F_DUMP, body, action, onPart, keep));
    this.dumpQueue = result.catch(() => undefined);
    result.then(
      (outcome) => {
        if (outcome.interrupted) this.observer.dumpInterrupted?.(action);
        this.observer.completed?.(op);
      },
      (error: Error) => this.observer.completed?.(op, error instanceof NetlinkError ? error : new NetlinkError(action, EIO, error.message)),
    );
    return result;
  }

  /** A single GET (not a dump) answered by one object, e.g. RTM_GETROUTE for `ip route get`. */
  async get(type: number, body: RtnlBody, action: string): Promise<RtnlBody> {
    let answer: RtnlBody | undefined;
    await this.collect(type, NLM_F_REQUEST | NLM_F_ACK, body, action, (part) => (answer ??= part));
    if (!answer) throw new NetlinkError(action, EIO, 'the kernel answered with nothing');
    return answer;
  }

  /**
   * Many single GETs (route lookups), pipelined as `execute` pipelines writes: one sendmsg per
   * batch. Each resolves to the object it was answered with, or the kernel's refusal. The
   * kernel answers inside sendmsg(), so the caller hands over what one turn of the event loop
   * may take (kernel/route-lookups.ts: a sweep must not hold up a pass).
   */
  getAll(type: number, requests: readonly { body: RtnlBody; action: string }[]): Promise<Array<RtnlBody | NetlinkError>> {
    const answers: Array<Promise<RtnlBody | NetlinkError>> = [];
    for (let start = 0; start < requests.length; start += BATCH_SIZE) {
      const batch = requests.slice(start, start + BATCH_SIZE).map(({ body, action }) => {
        const seq = this.allocateSeq();
        let first: RtnlBody | undefined;
        const answer = new Promise<RtnlBody | NetlinkError>((resolve) =>
          this.pending.set(seq, {
            kind: 'dump',
            action,
            onPart: (part) => (first ??= part),
            parts: 0,
            keep: undefined,
            interrupted: false,
            settle: (outcome) =>
              resolve(
                outcome instanceof NetlinkError ? outcome
                : outcome instanceof Error ? new NetlinkError(action, EIO, outcome.message)
                : first ?? new NetlinkError(action, EIO, 'the kernel answered with nothing'),
              ),
          }),
        );
        return { answer, message: encodeRequest({ type, flags: NLM_F_REQUEST | NLM_F_ACK, seq, portId: this.socket.portId }, body) };
      });
      try {
        this.socket.send(batch.map((request) => request.message));
      } catch (error) {
        this.failAll(error as Error);
      }
      // Answered inside sendmsg(), as execute() relies on: read now, and on to the next batch.
      this.onReadable();
      for (const request of batch) answers.push(request.answer);
    }
    return Promise.all(answers);
  }

  /** Sends one request and hands over the objects it is answered with, until DONE or an ACK. */
  private collect(
    type: number,
    flags: number,
    body: RtnlBody,
    action: string,
    onPart: (body: RtnlBody) => void,
    keep?: KeepFilter,
  ): Promise<DumpOutcome> {
    return new Promise((resolve, reject) => {
      const seq = this.allocateSeq();
      this.pending.set(seq, {
        kind: 'dump',
        action,
        onPart,
        parts: 0,
        keep,
        interrupted: false,
        settle: (outcome) => (outcome instanceof Error ? reject(outcome) : resolve(outcome)),
      });
      try {
        this.socket.send([encodeRequest({ type, flags, seq, portId: this.socket.portId }, body)]);
      } catch (error) {
        this.pending.delete(seq);
        reject(error);
      }
    });
  }

  private allocateSeq(): number {
    const seq = this.nextSeq;
    this.nextSeq = this.nextSeq >= 0xffffffff ? 1 : this.nextSeq + 1;
    return seq;
  }

  private onReadable(): void {
    try {
      // A slice at a time: a large dump streams through to its consumer, never held whole.
      receiveEach(this.socket, () => this.observer.discarded?.('not from the kernel'), (raw) => this.keeps(raw), this.receiving);
    } catch (error) {
      this.failAll(error as Error);
    }
  }

  private readonly receiving: ReceiveHandlers = {
    // Replies were lost or unreadable: nobody can tell which requests they answered, so
    // fail them all rather than leave any hanging.
    lost: (reason) => this.failAll(new Error(`request socket ${reason}`)),
    undecodable: (error) => this.failAll(error),
    message: (message) => this.dispatch(message),
  };

  /** Whether to decode a reply: always, unless the dump it belongs to turns the object down. */
  private keeps(raw: RawMessage): boolean {
    if (raw.type === NLMSG_DONE || raw.type === NLMSG_ERROR) return true; // what ends the dump
    const pending = raw.portId === this.socket.portId ? this.pending.get(raw.seq) : undefined;
    if (pending?.kind !== 'dump' || !pending.keep || pending.keep(raw)) return true;
    // Passed over, but the dump it belongs to may still have been interrupted.
    if (raw.flags & NLM_F_DUMP_INTR) pending.interrupted = true;
    return false;
  }

  private dispatch(message: DecodedMessage): void {
    const pending = message.portId === this.socket.portId ? this.pending.get(message.seq) : undefined;
    if (!pending) return this.observer.discarded?.(`unexpected reply seq ${message.seq} port ${message.portId}`);
    const body = message.body;
    if (pending.kind === 'request') {
      if (body.kind !== 'ack') return;
      this.pending.delete(message.seq);
      // Refused: no notification will echo it.
      if (body.errno !== 0) this.awaitingEcho.delete(message.seq);
      pending.settle(
        body.errno === 0 ? { ok: true } : { ok: false, error: new NetlinkError(pending.request.action, body.errno, body.extackMessage) },
      );
      return;
    }
    if (message.flags & NLM_F_DUMP_INTR) pending.interrupted = true;
    if (body.kind === 'ack' || body.kind === 'done') {
      this.pending.delete(message.seq);
      if (body.errno !== 0) pending.settle(new NetlinkError(pending.action, body.errno, body.extackMessage));
      else pending.settle({ interrupted: pending.interrupted });
    } else if (isRtnlBody(body) && (message.flags & NLM_F_MULTI || pending.parts === 0)) {
      pending.parts++;
      pending.onPart(body);
    }
  }

  private failAll(error: Error): void {
    const waiting = [...this.pending.values()];
    this.pending.clear();
    for (const pending of waiting) {
      if (pending.kind === 'request') {
        pending.settle({ ok: false, error: new NetlinkError(pending.request.action, EIO, error.message) });
      } else {
        pending.settle(error);
      }
    }
  }
}
