// Proving a netlink socket still works both ways: an NLMSG_NOOP that asks for an ACK, which
// the kernel sends back without doing anything. Used on both of the daemon's sockets, each of
// which reads its ACKs in its own way.
import { NLM_F_ACK, NLM_F_REQUEST, NLMSG_NOOP } from './constants.js';
import { encodeMessage } from './codec.js';
import type { NativeNetlinkSocket } from './native.js';

/**
 * Sends the ping with `seq`; `awaitAck` registers how its ACK will be told (`answered`, with
 * the kernel's error if any) and returns how to forget it. Rejects when no ACK came within
 * `timeoutMs`.
 */
export function ping(
  socket: NativeNetlinkSocket,
  seq: number,
  timeoutMs: number,
  awaitAck: (answered: (error?: Error) => void) => () => void,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let forget = (): void => undefined;
    const timer = setTimeout(() => {
      forget();
      reject(new Error(`no answer to a ping within ${timeoutMs} ms`));
    }, timeoutMs);
    forget = awaitAck((error) => {
      clearTimeout(timer);
      if (error) reject(error);
      else resolve();
    });
    try {
      socket.send([encodeMessage({ type: NLMSG_NOOP, flags: NLM_F_REQUEST | NLM_F_ACK, seq, portId: socket.portId }, new Uint8Array(0))]);
    } catch (error) {
      clearTimeout(timer);
      forget();
      reject(error as Error);
    }
  });
}
