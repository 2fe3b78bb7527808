// The addon's netlink socket (native/netlink_socket.cc), read in batches.
import { addon, type AddonNetlinkSocket, type NativeNetlinkSocket, type ReadResult } from '../native/addon.js';

export type { NativeNetlinkSocket, ReadResult };

/** What readAll() reads at most when no limit is given (the addon's own limit). */
const MAX_READ_BYTES = 16 * 1024 * 1024;

export function openNetlinkSocket(options: { groups?: number[]; receiveBufferBytes?: number }): NativeNetlinkSocket {
  const socket = new addon.NetlinkSocket(options);
  return {
    // Read once: bound for good, and every message read compares its port with it.
    portId: socket.portId,
    send: (messages) => socket.send(messages),
    readAll: (maxBytes = MAX_READ_BYTES) => readBatches(socket, maxBytes),
    startReading: (onReadable) => socket.startReading(onReadable),
    stopReading: () => socket.stopReading(),
    close: () => socket.close(),
  };
}

/**
 * Every datagram queued, or as many as fit in `maxBytes`, read in as many batches as that
 * takes (the addon reads up to 1 MiB of datagrams per call into one buffer): each datagram is
 * a view of its batch, so a burst of ACKs costs a view each, not an allocation each.
 */
export function readBatches(socket: Pick<AddonNetlinkSocket, 'receive'>, maxBytes: number): ReadResult {
  const datagrams: Buffer[] = [];
  const senderPortIds: number[] = [];
  let overrun = false;
  let truncated = false;
  let total = 0;
  for (;;) {
    const batch = socket.receive(maxBytes - total);
    overrun ||= batch.overrun;
    truncated ||= batch.truncated;
    const { bytes, datagrams: lengthsAndSenders } = batch;
    let offset = 0;
    for (let i = 0; i < lengthsAndSenders.length; i += 2) {
      const end = offset + lengthsAndSenders[i]!;
      datagrams.push(bytes.subarray(offset, end));
      senderPortIds.push(lengthsAndSenders[i + 1]!);
      offset = end;
    }
    total += offset;
    if (!batch.more || total >= maxBytes) return { datagrams, senderPortIds, overrun, truncated, more: batch.more && total >= maxBytes };
  }
}
