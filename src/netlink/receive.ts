// The one receive loop of every netlink socket symroute reads (requests and notifications
// alike): everything queued is read at once; a datagram not sent by the kernel is discarded
// (a local process can send to a netlink socket too); each message is decoded, and a datagram
// that cannot be decoded is reported rather than half-read. The caller decides what its
// messages mean: replies for the request socket, notifications for the other — and, through
// `keep`, which messages are worth decoding at all (it sees each one raw; what it turns down
// is never decoded).
import { splitDatagram, type RawMessage } from './codec.js';
import { decodeMessage, type DecodedMessage } from './messages.js';
import type { NativeNetlinkSocket } from './native.js';

export interface Received {
  readonly messages: DecodedMessage[];
  /** Why messages were lost, if they were: the kernel dropped some, or one was cut short. */
  readonly lost: 'overrun (ENOBUFS)' | 'datagram truncated' | null;
  /** The first datagram that could not be decoded, if any (the others are still in messages). */
  readonly undecodable: Error | null;
}

/** Which raw messages to decode; the others are passed over. */
export type KeepFilter = (raw: RawMessage) => boolean;

const keepAll: KeepFilter = () => true;

/** Reads every datagram queued on `socket`. Throws only when the read itself fails. */
export function receiveAll(
  socket: NativeNetlinkSocket,
  notFromKernel: (senderPortId: number) => void,
  keep: KeepFilter = keepAll,
): Received {
  const read = socket.readAll();
  const messages: DecodedMessage[] = [];
  let undecodable: Error | null = null;
  read.datagrams.forEach((datagram, i) => {
    if (read.senderPortIds[i] !== 0) return notFromKernel(read.senderPortIds[i]!);
    try {
      const decoded: DecodedMessage[] = [];
      for (const raw of splitDatagram(datagram)) if (keep(raw)) decoded.push(decodeMessage(raw));
      for (const message of decoded) messages.push(message);
    } catch (error) {
      undecodable ??= error as Error;
    }
  });
  const lost = read.overrun ? 'overrun (ENOBUFS)' : read.truncated ? 'datagram truncated' : null;
  return { messages, lost, undecodable };
}
