# Unconnected UDP sends from one bound source to one destination, timed one by one, for
# test/bench/per-packet.ts. Started once per case (inside its namespace) and then told how
# many sends to make by one line on stdin per batch; answers each batch with one JSON line:
# the mean (the batch's whole time over its sends, timer included), p50 and p99 of the
# sends, in microseconds. Each sendto walks the sender's policy rules (and, for a packet the
# namespace forwards, the router's rules in the softirq that the send itself runs).
import json
import socket
import sys
import time

source, destination, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((source, 0))
payload = b"symroute per-packet bench"
target = (destination, port)
clock = time.perf_counter_ns
print("ready", flush=True)

for line in sys.stdin:
    count = int(line)
    times = [0] * count
    began = clock()
    for i in range(count):
        start = clock()
        sock.sendto(payload, target)
        times[i] = clock() - start
    mean = (clock() - began) / count
    times.sort()
    answer = {"mean": mean / 1000, "p50": times[count // 2] / 1000, "p99": times[min(count - 1, (count * 99) // 100)] / 1000}
    print(json.dumps(answer), flush=True)
