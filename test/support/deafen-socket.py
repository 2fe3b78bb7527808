#!/usr/bin/env python3
"""Breaks a running symroute's netlink socket from outside, for real: takes a copy of the
socket's file descriptor out of the process (pidfd_getfd, Linux >= 5.6) and attaches a
classic BPF filter that drops every message the kernel would deliver to it. The socket
stays open but goes deaf, as a socket whose receive path failed would be.

usage: deafen-socket.py PID request|notification
  request       the socket with no multicast groups (requests, ACKs, dumps)
  notification  the socket subscribed to groups (link/address/route/rule notifications)
Prints how many sockets it deafened (exactly one is expected)."""
import ctypes
import os
import re
import sys

SYS_PIDFD_GETFD = 438  # the same number on every architecture (asm-generic)
SOL_SOCKET, SO_ATTACH_FILTER = 1, 26
BPF_RET_K = 0x06  # BPF_RET | BPF_K: return the constant, here 0 bytes = drop


class SockFilter(ctypes.Structure):
    _fields_ = [('code', ctypes.c_uint16), ('jt', ctypes.c_uint8), ('jf', ctypes.c_uint8), ('k', ctypes.c_uint32)]


class SockFprog(ctypes.Structure):
    _fields_ = [('len', ctypes.c_ushort), ('filter', ctypes.POINTER(SockFilter))]


def netlink_route_sockets(pid):
    """inode -> multicast groups of the process's NETLINK_ROUTE sockets (/proc/PID/net is its netns)."""
    sockets = {}
    with open(f'/proc/{pid}/net/netlink') as table:
        header = table.readline().split()
        for line in table:
            row = dict(zip(header, line.split()))
            if row['Eth'] == '0':
                sockets[row['Inode']] = int(row['Groups'], 16)
    return sockets


def main():
    pid, which = int(sys.argv[1]), sys.argv[2]
    libc = ctypes.CDLL(None, use_errno=True)
    sockets = netlink_route_sockets(pid)
    drop_all = (SockFilter * 1)(SockFilter(BPF_RET_K, 0, 0, 0))
    program = SockFprog(1, drop_all)
    pidfd = os.pidfd_open(pid)
    deafened = 0
    for fd in os.listdir(f'/proc/{pid}/fd'):
        try:
            target = os.readlink(f'/proc/{pid}/fd/{fd}')
        except FileNotFoundError:
            continue
        match = re.fullmatch(r'socket:\[(\d+)\]', target)
        if not match or match.group(1) not in sockets:
            continue
        if (sockets[match.group(1)] != 0) != (which == 'notification'):
            continue
        copy = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(fd), 0)
        if copy < 0:
            sys.exit(f'pidfd_getfd: {os.strerror(ctypes.get_errno())}')
        if libc.setsockopt(copy, SOL_SOCKET, SO_ATTACH_FILTER, ctypes.byref(program), ctypes.sizeof(program)) != 0:
            sys.exit(f'setsockopt(SO_ATTACH_FILTER): {os.strerror(ctypes.get_errno())}')
        os.close(copy)  # the filter belongs to the socket, not to this descriptor
        deafened += 1
    print(deafened)


main()
