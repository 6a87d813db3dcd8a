#!/usr/bin/env python3
"""The standard workloads of BENCHMARKS.md on Ray, defined as owl-bench
defines them (bench/src/workloads.rs), printed as JSON lines in owl-bench's
format. One node, `--workers` CPUs (default 2), everything on loopback.

    python ray_bench.py [all | WORKLOAD...] [--tiny] [--reps 3] [--out FILE]
"""

from __future__ import annotations

import os
import sys
import time

# Before Ray is imported: no usage statistics, and a node IP of 127.0.0.1 so
# that every Ray server binds to loopback only. (On Linux ray.init resolves
# _node_ip_address="127.0.0.1" to the machine's routable address unless Ray's
# "local only" mode, named for Windows/macOS, is on.)
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import ray  # noqa: E402

from common import (  # noqa: E402
    Harness, capped_loop, latency_figures, log, non_loopback_sockets, parse_args, put_get_figures, finish,
)


@ray.remote
def noop():
    pass


@ray.remote
def one():
    return 1


@ray.remote
def inc(x):
    return x + 1


@ray.remote
def add(a, b):
    return a + b


@ray.remote
def parent(children):
    kids = [noop.remote() for _ in range(children)]
    ray.wait(kids, num_returns=len(kids))
    return children


@ray.remote
def sum_arr(a):
    return int(a.sum())


def main() -> int:
    args = parse_args("Ray")
    ray.init(
        num_cpus=args.workers,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        configure_logging=True,
        logging_level="warning",
    )
    h = Harness("ray", ray.__version__, args)
    s = h.sizes
    pc = time.perf_counter

    bad = non_loopback_sockets()
    if bad:
        log("ray_bench: Ray has sockets off loopback; stopping:\n  " + "\n  ".join(bad))
        ray.shutdown()
        return 1

    def noop_throughput():
        n = s.noop_tasks
        t0 = pc()
        refs = [noop.remote() for _ in range(n)]
        submitted = pc() - t0
        ray.wait(refs, num_returns=n)
        total = pc() - t0
        del refs
        c = {"tasks": n}
        return {
            f"throughput_{n}": (n / total, "tasks/s", c),
            f"submit_rate_{n}": (n / submitted, "tasks/s", c),
        }

    def rtt():
        ns = []
        for i in range(s.rtt_warmup + s.rtt_calls):
            t0 = time.perf_counter_ns()
            v = ray.get(one.remote())
            dt = time.perf_counter_ns() - t0
            assert v == 1
            if i >= s.rtt_warmup:
                ns.append(dt)
        return latency_figures(ns, {"calls": s.rtt_calls})

    def chain():
        n = s.chain
        t0 = pc()
        prev = inc.remote(0)
        for _ in range(1, n):
            prev = inc.remote(prev)
        assert ray.get(prev) == n
        total = pc() - t0
        c = {"tasks": n}
        return {"total": (total * 1e3, "ms", c), "per_task": (total * 1e6 / n, "us", c)}

    def tree():
        leaves = s.tree_leaves
        t0 = pc()
        level = [one.remote() for _ in range(leaves)]
        while len(level) > 1:
            level = [add.remote(level[i], level[i + 1]) for i in range(0, len(level), 2)]
        assert ray.get(level[0]) == leaves
        total = pc() - t0
        return {"total": (total * 1e3, "ms", {"leaves": leaves})}

    def nested():
        parents, children = s.nested
        t0 = pc()
        refs = [parent.remote(children) for _ in range(parents)]
        ray.wait(refs, num_returns=len(refs))
        total = pc() - t0
        return {"total": (total * 1e3, "ms", {"parents": parents, "children": children})}

    def big_arg():
        nbytes = s.big_arg_bytes
        n = nbytes // 8
        expected = n * (n - 1) // 2
        v = np.arange(n, dtype=np.uint64)
        t0 = pc()
        assert ray.get(sum_arr.remote(v)) == expected  # by value: Ray copies it into its store
        by_value = pc() - t0
        del v
        v = np.arange(n, dtype=np.uint64)
        t1 = pc()
        r = ray.put(v)
        put = pc() - t1
        t2 = pc()
        assert ray.get(sum_arr.remote(r)) == expected  # by reference
        by_ref = pc() - t2
        del r, v
        c = {"bytes": nbytes}
        return {
            "by_value": (by_value * 1e3, "ms/call", c),
            "put_once": (put * 1e3, "ms", c),
            "by_reference": (by_ref * 1e3, "ms/call", c),
        }

    def put_get():
        out = {}
        for label, size, puts in s.put_get:
            v = bytes([0xA5]) * size
            done_puts, t_put = capped_loop(puts, args.loop_cap, lambda: ray.put(v))
            r = ray.put(v)

            def get():
                assert len(ray.get(r)) == size

            done_gets, t_get = capped_loop(s.gets, args.loop_cap, get)
            del r
            put_get_figures(out, label, size, t_put, done_puts, t_get, done_gets)
        return out

    fns = {
        "noop_throughput": noop_throughput, "rtt": rtt, "chain": chain, "tree": tree,
        "nested": nested, "big_arg": big_arg, "put_get": put_get,
    }
    return finish("Ray", h, fns, args.workloads, ray.shutdown)


if __name__ == "__main__":
    sys.exit(main())
