// Unix calls Node.js does not offer: AF_UNIX datagrams (systemd's notify protocol), peer
// credentials (the control socket) and flock(2) (one daemon per network namespace).
import { addon, type PeerCredentials } from './addon.js';

export type { PeerCredentials };

/** One datagram to an AF_UNIX socket path ('@' prefix: abstract namespace). */
export function sendUnixDatagram(path: string, message: string): void {
  addon.sendUnixDatagram(path, Buffer.from(message));
}

/** Who is at the other end of a connected AF_UNIX stream socket (SO_PEERCRED). */
export function peerCredentials(fd: number): PeerCredentials {
  return addon.peerCredentials(fd);
}

/** flock(LOCK_EX | LOCK_NB) on an open file: true when taken, false when another process holds it. */
export function lockExclusive(fd: number): boolean {
  return addon.lockExclusive(fd);
}
