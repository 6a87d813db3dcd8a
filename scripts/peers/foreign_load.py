#!/usr/bin/env python3
"""Measures how much CPU other work on the machine used while a benchmark ran.

    foreign_load.py ROOT_PID OUT_FILE

Every 0.5 s, sums the CPU time (user + system) that processes outside
ROOT_PID's process tree used since the last look (a process first seen
counts with all of its CPU time, since it most likely started in between).
On SIGTERM/SIGINT writes one JSON object to OUT_FILE: {"seconds": wall time,
"foreign_cpu_s": CPU seconds of other processes, "foreign_cores": their
average number of busy cores}. Processes that start and end between two
looks are missed, so this is a lower bound.
"""

import json
import os
import signal
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def snapshot():
    """{pid: (ppid, cpu ticks, name)} of every user-space process (kernel
    threads, which mostly do I/O for whoever asked, are left out)."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        rest = s[s.rindex(")") + 2:].split()
        ppid = int(rest[1])
        if ppid == 2 or int(d) == 2:
            continue
        out[int(d)] = (ppid, int(rest[11]) + int(rest[12]), s[s.index("(") + 1:s.rindex(")")])
    return out


def tree(snap, root):
    kids = {}
    for pid, (ppid, _, _) in snap.items():
        kids.setdefault(ppid, []).append(pid)
    seen, todo = set(), [root]
    while todo:
        p = todo.pop()
        seen.add(p)
        todo.extend(kids.get(p, []))
    return seen


def main():
    root, out = int(sys.argv[1]), sys.argv[2]
    me = os.getpid()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    t0 = time.monotonic()
    prev = snapshot()
    base_pids = set(prev)
    ours = tree(prev, root) | {me}
    foreign = 0
    by_name = {}
    while not stop:
        time.sleep(0.5)
        cur = snapshot()
        ours |= tree(cur, root)
        for pid, (_, ticks, name) in cur.items():
            if pid in ours or pid == me:
                continue
            if pid in prev:
                used = max(0, ticks - prev[pid][1])
            elif pid not in base_pids:
                used = ticks
            else:
                used = 0
            foreign += used
            if used:
                by_name[name] = by_name.get(name, 0) + used
        prev = cur
    secs = time.monotonic() - t0
    cpu = foreign / TICK
    with open(out, "w") as f:
        json.dump({"seconds": round(secs, 2), "foreign_cpu_s": round(cpu, 2),
                   "foreign_cores": round(cpu / secs, 3) if secs else 0,
                   "top": {k: round(v / TICK, 2) for k, v in
                           sorted(by_name.items(), key=lambda kv: -kv[1])[:5]}}, f)


if __name__ == "__main__":
    main()
