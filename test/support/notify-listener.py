#!/usr/bin/env python3
"""systemd's end of $NOTIFY_SOCKET, for the integration tests (Node has no AF_UNIX datagrams).

  notify-listener.py ADDRESS [--stop-sender-on LINE]
  notify-listener.py --send ADDRESS TEXT

ADDRESS is what $NOTIFY_SOCKET holds: a filesystem path, or `@name` for an abstract socket
(abstract sockets belong to a network namespace: run the listener in the daemon's).

Listening, it binds an AF_UNIX SOCK_DGRAM socket at ADDRESS and prints one JSON line per
event on stdout:

  {"listening": "ADDRESS"}                                  once, right after bind()
  {"data": "READY=1\\nSTATUS=...", "pid": 123,              one per datagram
   "monotonic_usec": 456, "stopped_sender": false}

`pid` is the sender's pid from SCM_CREDENTIALS (what systemd checks for NotifyAccess=main),
`monotonic_usec` is CLOCK_MONOTONIC when the datagram was read. With --stop-sender-on, a
datagram containing LINE as one of its lines makes the listener SIGSTOP the sender before
reporting it ("stopped_sender": true), so a test can look at the world as the sender left it
when it said LINE; the test must SIGCONT the sender. SIGTERM/SIGINT end the listener quietly
(removing a path socket it created).

--send sends TEXT as one datagram to ADDRESS and exits (a sentinel for tests).
"""
import json
import os
import signal
import socket
import struct
import sys
import time

SO_PASSCRED = getattr(socket, "SO_PASSCRED", 16)
SCM_CREDENTIALS = getattr(socket, "SCM_CREDENTIALS", 2)
CREDENTIALS = struct.Struct("iII")  # struct ucred: pid, uid, gid


def sockaddr(address):
    return "\0" + address[1:] if address.startswith("@") else address


def emit(record):
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def send(address, text):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(text.encode("utf-8"), sockaddr(address))
    return 0


def listen(address, stop_sender_on):
    abstract = address.startswith("@")

    def stop(_signum, _frame):
        if not abstract:
            try:
                os.unlink(address)
            except OSError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    sock.setsockopt(socket.SOL_SOCKET, SO_PASSCRED, 1)
    sock.bind(sockaddr(address))
    if not abstract:
        os.chmod(address, 0o777)  # a sender running as another user may still notify
    emit({"listening": address})

    while True:
        data, ancillary, _flags, _sender = sock.recvmsg(65536, socket.CMSG_SPACE(CREDENTIALS.size))
        now = time.monotonic_ns() // 1000
        text = data.decode("utf-8", "replace")
        pid = None
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == SCM_CREDENTIALS and len(payload) >= CREDENTIALS.size:
                pid = CREDENTIALS.unpack(payload[: CREDENTIALS.size])[0]
        stopped = False
        if stop_sender_on is not None and stop_sender_on in text.split("\n") and pid:
            try:
                os.kill(pid, signal.SIGSTOP)
                stopped = True
            except ProcessLookupError:
                pass
        emit({"data": text, "pid": pid, "monotonic_usec": now, "stopped_sender": stopped})


def main(argv):
    if len(argv) == 3 and argv[0] == "--send":
        return send(argv[1], argv[2])
    if len(argv) == 1:
        return listen(argv[0], None)
    if len(argv) == 3 and argv[1] == "--stop-sender-on":
        return listen(argv[0], argv[2])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
