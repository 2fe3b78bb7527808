#!/usr/bin/env python3
"""Whole-process cost of commands, interleaved: rusage.py REPS CMD_JSON [CMD_JSON ...]

Runs the commands in turn (A B A B ...), REPS rounds after one unrecorded warm-up round, each
with empty stdin and output thrown away, and prints one JSON list per command of
{"wall": s, "cpu": s} runs. CPU is user + system time of the reaped child from wait4(2),
the kernel's own accounting; Node has no way to ask for a child's rusage.
"""
import json
import os
import sys
import time


def run(argv):
    devnull = os.open(os.devnull, os.O_RDWR)
    started = time.monotonic()
    pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=[
        (os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)])
    _, status, usage = os.wait4(pid, 0)
    wall = time.monotonic() - started
    os.close(devnull)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(argv)} exited with {os.waitstatus_to_exitcode(status)}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime}


def main():
    reps = int(sys.argv[1])
    commands = [json.loads(arg) for arg in sys.argv[2:]]
    results = [[] for _ in commands]
    for round_ in range(reps + 1):
        for i, argv in enumerate(commands):
            sample = run(argv)
            if round_ > 0:
                results[i].append(sample)
    print(json.dumps(results))


main()
