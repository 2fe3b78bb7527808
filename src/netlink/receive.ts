// The receive loops of every netlink socket symroute reads: a datagram not sent by the kernel
// is discarded (a local process can send to a netlink socket too); each message is decoded,
// and one that cannot be is reported. receiveAll reads everything queued at once and leaves
// out a datagram that cannot be decoded whole (notifications); receiveEach streams what is
// queued to its caller message by message (replies, and dumps of any size). The caller
// decides what its messages mean: replies for the request socket, notifications for the
// other — and, through `keep`, which messages are worth decoding at all (it sees each one
// raw; what it turns down is never decoded).
import { messagesOf, splitDatagram, type RawMessage } from './codec.js';
import { decodeMessage, type DecodedMessage } from './messages.js';
import type { NativeNetlinkSocket, ReadResult } from './native.js';

export interface Received<T = never> {
  /** In the order they came: decoded, or recognised from their raw bytes (see receiveAll). */
  readonly messages: Array<DecodedMessage | Recognised<T>>;
  /** Why messages were lost, if they were: the kernel dropped some, or one was cut short. */
  readonly lost: 'overrun (ENOBUFS)' | 'datagram truncated' | null;
  /** The first datagram that could not be decoded, if any (the others are still in messages). */
  readonly undecodable: Error | null;
}

/** A message its reader knew from its raw bytes, passed on as what it stands for instead of decoded. */
export interface Recognised<T> {
  readonly recognised: T;
}

/** Which raw messages to decode; the others are passed over. */
export type KeepFilter = (raw: RawMessage) => boolean;

const keepAll: KeepFilter = () => true;

/**
 * Reads every datagram queued on `socket`. A message `recognise` knows from its raw bytes is
 * passed on as what it says it stands for, undecoded. Throws only when the read itself fails.
 */
export function receiveAll<T = never>(
  socket: NativeNetlinkSocket,
  notFromKernel: (senderPortId: number) => void,
  keep: KeepFilter = keepAll,
  recognise: (raw: RawMessage) => T | undefined = () => undefined,
): Received<T> {
  const read = socket.readAll();
  const messages: Array<DecodedMessage | Recognised<T>> = [];
  let undecodable: Error | null = null;
  read.datagrams.forEach((datagram, i) => {
    if (read.senderPortIds[i] !== 0) return notFromKernel(read.senderPortIds[i]!);
    try {
      const decoded: Array<DecodedMessage | Recognised<T>> = [];
      for (const raw of splitDatagram(datagram)) {
        const recognised = recognise(raw);
        if (recognised !== undefined) decoded.push({ recognised });
        else if (keep(raw)) decoded.push(decodeMessage(raw));
      }
      for (const message of decoded) messages.push(message);
    } catch (error) {
      undecodable ??= error as Error;
    }
  });
  return { messages, lost: lossOf(read), undecodable };
}

/** How much of a large dump is read at a time (a couple of the kernel's parts). */
export const STREAM_SLICE_BYTES = 64 * 1024;
/** How much is read before the event loop gets a turn (the socket stays readable). */
const STREAM_TURN_BYTES = 16 * 1024 * 1024;

/** What receiveEach reports, in the order it learns it. */
export interface ReceiveHandlers {
  /** Messages were lost before those about to be delivered (told before them). */
  lost(reason: NonNullable<Received<unknown>['lost']>): void;
  /** A message, decoded (those `keep` turns down are not). */
  message(message: DecodedMessage): void;
  /** A message that could not be decoded: the rest of its datagram is not delivered. */
  undecodable(error: Error): void;
}

/**
 * Reads what is queued on `socket` a slice at a time and delivers each message as soon as it
 * is decoded, so that a dump of 100k routes is never held whole, raw or decoded: what
 * `message` does not keep is garbage at once (and the kernel makes the next part of a dump
 * only as the last one is read). Hardly any decoded object is alive when the young generation
 * is collected, so it is not grown, nor the daemon's memory, for a dump's sake. Throws only
 * when a read itself fails.
 */
export function receiveEach(socket: NativeNetlinkSocket, notFromKernel: (senderPortId: number) => void, keep: KeepFilter, handlers: ReceiveHandlers): void {
  for (let read = 0; read < STREAM_TURN_BYTES; read += STREAM_SLICE_BYTES) {
    const slice = socket.readAll(STREAM_SLICE_BYTES);
    const lost = lossOf(slice);
    if (lost) handlers.lost(lost);
    slice.datagrams.forEach((datagram, i) => {
      if (slice.senderPortIds[i] !== 0) return notFromKernel(slice.senderPortIds[i]!);
      const raws = messagesOf(datagram);
      for (;;) {
        let message: DecodedMessage;
        try {
          const next = raws.next();
          if (next.done) return;
          if (!keep(next.value)) continue;
          message = decodeMessage(next.value);
        } catch (error) {
          return handlers.undecodable(error as Error);
        }
        handlers.message(message);
      }
    });
    if (slice.more !== true) return;
  }
}

const lossOf = (read: ReadResult): Received<unknown>['lost'] => (read.overrun ? 'overrun (ENOBUFS)' : read.truncated ? 'datagram truncated' : null);
