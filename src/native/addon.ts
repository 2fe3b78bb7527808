// Typed access to the native addon (native/netlink_socket.cc), built by node-gyp at install:
// netlink sockets (used by netlink/), and the unix calls Node.js lacks (unix.ts).
import { createRequire } from 'node:module';

export interface ReadResult {
  readonly datagrams: Buffer[];
  readonly senderPortIds: number[];
  /** The kernel reported ENOBUFS: it dropped messages meant for this socket. */
  readonly overrun: boolean;
  /** A datagram did not fit the receive buffer and was cut short. */
  readonly truncated: boolean;
  /** Reading stopped at the byte limit asked for: more may be queued. */
  readonly more?: boolean;
}

export interface NativeNetlinkSocket {
  readonly portId: number;
  send(messages: readonly Uint8Array[]): number;
  /** Every datagram queued, or as many as fit in `maxBytes` (the addon's own limit: 16 MiB). */
  readAll(maxBytes?: number): ReadResult;
  startReading(onReadable: () => void): void;
  stopReading(): void;
  close(): void;
}

/** What one receive() of the addon read: datagrams back to back in one buffer. */
export interface ReceivedBatch {
  readonly bytes: Buffer;
  /** Two numbers per datagram, in order: its length in `bytes`, and its sender's port id (0: the kernel). */
  readonly datagrams: Uint32Array;
  readonly overrun: boolean;
  readonly truncated: boolean;
  /** It stopped before the socket was empty (at the byte limit, or its buffer full): more may be queued. */
  readonly more: boolean;
}

/** The addon's own netlink socket (readAll() is made of its receive() in netlink/native.ts). */
export interface AddonNetlinkSocket extends Omit<NativeNetlinkSocket, 'readAll'> {
  /** As many datagrams as are queued and fit (at most `maxBytes`, at most 16 MiB; 1 MiB a call). */
  receive(maxBytes?: number): ReceivedBatch;
}

export interface PeerCredentials {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

interface NativeModule {
  NetlinkSocket: new (options: { groups?: number[]; receiveBufferBytes?: number }) => AddonNetlinkSocket;
  sendUnixDatagram(path: string, message: Buffer): void;
  peerCredentials(fd: number): PeerCredentials;
  lockExclusive(fd: number): boolean;
}

const require = createRequire(import.meta.url);
// Both src/native and dist/native sit two levels below the package root.
export const addon = require('../../build/Release/symroute_native.node') as NativeModule;
