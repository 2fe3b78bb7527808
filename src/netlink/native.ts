// Typed access to the native addon (native/netlink_socket.cc), built by node-gyp at install.
// Besides netlink sockets it sends the AF_UNIX datagrams of systemd's notify protocol and
// reads who is at the other end of the control socket, and takes the one-per-namespace lock.
import { createRequire } from 'node:module';

export interface ReadResult {
  readonly datagrams: Buffer[];
  readonly senderPortIds: number[];
  /** The kernel reported ENOBUFS: it dropped messages meant for this socket. */
  readonly overrun: boolean;
  /** A datagram did not fit the receive buffer and was cut short. */
  readonly truncated: boolean;
}

export interface NativeNetlinkSocket {
  readonly portId: number;
  send(messages: readonly Uint8Array[]): number;
  readAll(): ReadResult;
  startReading(onReadable: () => void): void;
  stopReading(): void;
  close(): void;
}

interface NativeModule {
  NetlinkSocket: new (options: { groups?: number[]; receiveBufferBytes?: number }) => NativeNetlinkSocket;
  sendUnixDatagram(path: string, message: Buffer): void;
  peerCredentials(fd: number): PeerCredentials;
  lockExclusive(fd: number): boolean;
}

export interface PeerCredentials {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

const require = createRequire(import.meta.url);
// Both src/netlink and dist/netlink sit two levels below the package root.
const native = require('../../build/Release/symroute_native.node') as NativeModule;

export function openNetlinkSocket(options: { groups?: number[]; receiveBufferBytes?: number }): NativeNetlinkSocket {
  return new native.NetlinkSocket(options);
}

/** One datagram to an AF_UNIX socket path ('@' prefix: abstract namespace). */
export function sendUnixDatagram(path: string, message: string): void {
  native.sendUnixDatagram(path, Buffer.from(message));
}

/** Who is at the other end of a connected AF_UNIX stream socket (SO_PEERCRED). */
export function peerCredentials(fd: number): PeerCredentials {
  return native.peerCredentials(fd);
}

/** flock(LOCK_EX | LOCK_NB) on an open file: true when taken, false when another process holds it. */
export function lockExclusive(fd: number): boolean {
  return native.lockExclusive(fd);
}
