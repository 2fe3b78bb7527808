// The addon's netlink socket (native/netlink_socket.cc).
import { addon, type NativeNetlinkSocket, type ReadResult } from '../native/addon.js';

export type { NativeNetlinkSocket, ReadResult };

export function openNetlinkSocket(options: { groups?: number[]; receiveBufferBytes?: number }): NativeNetlinkSocket {
  return new addon.NetlinkSocket(options);
}
