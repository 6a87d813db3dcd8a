"""Shared harness for the peer benchmarks (ray_bench.py, dask_bench.py).

The workloads are those of BENCHMARKS.md, defined exactly as owl-bench
defines them (bench/src/workloads.rs); each figure is printed as one JSON
line in owl-bench's format, with the same workload, metric and unit names:

    {"workload": .., "metric": .., "value": .., "unit": .., "config": {..}}

Each workload is run once as a warm-up and then 3 times; the value is the
median of the 3 and config.reps keeps all 3.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Tuple

MIB = 1 << 20

WORKLOADS = ["noop_throughput", "rtt", "chain", "tree", "nested", "big_arg", "put_get"]


class Sizes:
    """Workload sizes: owl-bench's full ones, or (--tiny) its tiny ones."""

    def __init__(self, tiny: bool) -> None:
        self.tiny = tiny
        self.noop_tasks = 100 if tiny else 10_000
        self.rtt_calls = 20 if tiny else 1_000
        self.rtt_warmup = self.rtt_calls // 10  # owl-bench: calls / 10 uncounted calls first
        self.chain = 10 if tiny else 1_000
        self.tree_leaves = 16 if tiny else 1_024
        self.nested = (4, 4) if tiny else (100, 100)  # (parents, children)
        self.big_arg_bytes = (256 << 10) if tiny else 100 * MIB
        # (label, size, puts) as in owl-bench; the tiny run skips 100 MiB.
        if tiny:
            self.put_get = [("1KiB", 1024, 10), ("1MiB", MIB, 2)]
            self.gets = 20  # owl-bench does 10,000 even when tiny; a smoke test needn't
        else:
            self.put_get = [("1KiB", 1024, 10_000), ("1MiB", MIB, 200), ("100MiB", 100 * MIB, 5)]
            self.gets = 10_000


# One repetition of a workload returns {metric: (value, unit, extra_config)}.
Rep = Dict[str, Tuple[float, str, dict]]


def parse_args(system: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=f"The standard workloads of BENCHMARKS.md on {system}, "
        "as JSON lines in owl-bench's format."
    )
    p.add_argument("workloads", nargs="*", default=["all"],
                   help=f"any of {', '.join(WORKLOADS)} or all (default)")
    p.add_argument("--tiny", action="store_true", help="run every workload at a tiny size (smoke test)")
    p.add_argument("--reps", type=int, default=3, help="measured repetitions (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up repetitions (default 1)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument(
        "--loop-cap", type=float, default=2.0,
        help="put_get only: stop a put or get loop early once it has run this many seconds "
        "(the figure is a per-call mean either way; the count done is kept in config). "
        "0 runs the full owl-bench counts. Default 2.",
    )
    p.add_argument("--out", help="also append the JSON lines to this file")
    a = p.parse_args()
    if a.workloads == ["all"] or not a.workloads:
        a.workloads = list(WORKLOADS)
    for w in a.workloads:
        if w not in WORKLOADS:
            p.error(f"unknown workload `{w}` (known: {', '.join(WORKLOADS)}, all)")
    if a.reps < 1:
        p.error("--reps must be at least 1")
    return a


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def quantile(sorted_ns: List[int], q: float) -> int:
    """Value at quantile q like HdrHistogram's value_at_quantile: the smallest
    recorded value with at least q of all values at or below it."""
    n = len(sorted_ns)
    rank = max(1, int(-(-q * n // 1)))  # ceil(q * n), at least 1
    return sorted_ns[min(rank, n) - 1]


def latency_figures(ns: List[int], config: dict) -> "Rep":
    """owl-bench's rtt metrics (µs) from per-call latencies in ns."""
    ns = sorted(ns)
    out = {name: (quantile(ns, q) / 1e3, "us", config)
           for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999))}
    out["max"] = (ns[-1] / 1e3, "us", config)
    return out


def put_get_figures(out: dict, label: str, size: int, t_put: float, done_puts: int,
                    t_get: float, done_gets: int) -> None:
    """The put_get figures of one size, named and united as owl-bench's."""
    put = t_put / done_puts
    get_s = t_get / done_gets
    c = {"bytes": size, "puts": done_puts, "gets": done_gets}
    out[f"put_{label}"] = (1 / put, "ops/s", c)
    out[f"put_{label}_bw"] = (size / put / 1e9, "GB/s", c)
    out[f"get_{label}"] = (1 / get_s, "calls/s", c)
    out[f"get_{label}_latency"] = (get_s * 1e6, "us", c)


def capped_loop(count: int, cap_s: float, body: Callable[[], None]) -> Tuple[int, float]:
    """Runs body() count times, or fewer (at least 3, or count if smaller)
    once cap_s seconds have passed; returns (calls made, elapsed seconds)."""
    floor = min(count, 3)
    pc = time.perf_counter
    t0 = pc()
    done = 0
    for _ in range(count):
        body()
        done += 1
        if cap_s and done >= floor and pc() - t0 > cap_s:
            break
    return done, pc() - t0


class Harness:
    def __init__(self, system: str, version: str, args: argparse.Namespace) -> None:
        self.system = system
        self.version = version
        self.args = args
        self.sizes = Sizes(args.tiny)
        self.out = open(args.out, "a") if args.out else None

    def base_config(self) -> dict:
        c = {"system": self.system, "version": self.version, "workers": self.args.workers, "nodes": 1}
        if self.args.tiny:
            c["tiny"] = True
        return c

    def emit(self, workload: str, metric: str, value: float, unit: str, config: dict) -> None:
        line = json.dumps({"workload": workload, "metric": metric, "value": value,
                           "unit": unit, "config": config})
        print(line, flush=True)
        if self.out:
            self.out.write(line + "\n")
            self.out.flush()

    def run(self, workload: str, once: Callable[[], Rep]) -> None:
        """Warm-up, then reps; prints the median of each metric with all reps."""
        a = self.args
        for i in range(a.warmup):
            t = time.perf_counter()
            once()
            log(f"[{self.system}] {workload}: warm-up {i + 1} done in {time.perf_counter() - t:.2f} s")
        reps: List[Rep] = []
        for i in range(a.reps):
            t = time.perf_counter()
            reps.append(once())
            log(f"[{self.system}] {workload}: rep {i + 1}/{a.reps} done in {time.perf_counter() - t:.2f} s")
        for metric, (_, unit, extra) in reps[0].items():
            values = [r[metric][0] for r in reps]
            c = self.base_config()
            c.update(extra)
            # Per-rep extras that vary (e.g. loop counts under --loop-cap) are kept as lists.
            for k in list(extra):
                vs = [r[metric][2].get(k) for r in reps]
                if any(v != vs[0] for v in vs):
                    c[k] = vs
            c["reps"] = values
            self.emit(workload, metric, statistics.median(values), unit, c)

    def close(self) -> None:
        if self.out:
            self.out.close()


# --- loopback check --------------------------------------------------------

def _descendants(root: int) -> List[int]:
    children: Dict[int, List[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
            ppid = int(s[s.rindex(")") + 2:].split()[1])
        except (OSError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _is_loopback(hexaddr: str, wildcard_ok: bool) -> bool:
    """Whether a /proc/net address is on loopback; the wildcard address
    counts only where wildcard_ok (an unconnected peer, an unbound socket)."""
    ip, port = hexaddr.split(":")
    if len(ip) == 8:  # IPv4, little-endian words
        b = bytes.fromhex(ip)[::-1]
    else:
        b = b"".join(bytes.fromhex(ip[i:i + 8])[::-1] for i in range(0, 32, 8))
        if b[:12] == bytes(10) + b"\xff\xff":  # IPv4-mapped
            b = b[12:]
        elif b == bytes(15) + b"\1":  # ::1
            return True
    if not any(b):
        return wildcard_ok or int(port, 16) == 0
    return len(b) == 4 and b[0] == 127


def non_loopback_sockets(extra_pids: List[int] = ()) -> List[str]:
    """Sockets of this process, its descendants and extra_pids (and theirs)
    that are bound to or connected to a non-loopback address, or listen on a
    wildcard address. An empty list means everything stayed on loopback."""
    pids = set(_descendants(os.getpid()))
    for p in extra_pids:
        pids.update(_descendants(p))
    inodes: Dict[str, int] = {}
    for p in pids:
        try:
            for fd in os.listdir(f"/proc/{p}/fd"):
                try:
                    t = os.readlink(f"/proc/{p}/fd/{fd}")
                except OSError:
                    continue
                if t.startswith("socket:["):
                    inodes[t[8:-1]] = p
        except OSError:
            continue
    bad = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            with open(f"/proc/net/{proto}") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            local, remote, inode = cols[1], cols[2], cols[9]
            if inode not in inodes:
                continue
            if not _is_loopback(local, False) or not _is_loopback(remote, True):
                bad.append(f"{proto} pid {inodes[inode]} local {local} remote {remote}")
    return bad


def finish(system: str, harness, run: Dict[str, Callable], workloads: List[str],
           close: Callable[[], None]) -> int:
    """Runs `workloads` from `run`, checks that every socket of the peer's
    processes stayed on loopback, closes the peer and says how it went."""
    for w in workloads:
        harness.run(w, run[w])
    bad = non_loopback_sockets()
    harness.close()
    close()
    tag = system.lower()
    if bad:
        log(f"{tag}_bench: sockets off loopback seen after the run:\n  " + "\n  ".join(bad))
        return 1
    log(f"{tag}_bench: all sockets of the {system} processes were on loopback")
    return 0
