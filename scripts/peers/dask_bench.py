#!/usr/bin/env python3
"""The standard workloads of BENCHMARKS.md on Dask distributed, defined as
owl-bench defines them (bench/src/workloads.rs), printed as JSON lines in
owl-bench's format. One LocalCluster: `--workers` worker processes (default
2) of one thread each, scheduler and workers on 127.0.0.1, no dashboard.

    python dask_bench.py [all | WORKLOAD...] [--tiny] [--reps 3] [--out FILE]

Every submit uses pure=False and every scatter hash=False: Dask would
otherwise give identical calls one key and run them once.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import distributed  # noqa: E402
from distributed import Client, LocalCluster, wait, worker_client  # noqa: E402

from common import (  # noqa: E402
    Harness, capped_loop, latency_figures, log, non_loopback_sockets, parse_args, put_get_figures, finish,
)


def noop():
    pass


def one():
    return 1


def inc(x):
    return x + 1


def add(a, b):
    return a + b


def parent(children):
    # worker_client() secedes this task from the worker's thread pool while
    # it waits, so the children can run on the same (one-thread) workers.
    with worker_client() as c:
        kids = [c.submit(noop, pure=False) for _ in range(children)]
        wait(kids)
    return children


def sum_arr(a):
    return int(a.sum())


def main() -> int:
    args = parse_args("Dask distributed")
    # Large arguments embedded in the graph are what "by value" means here.
    warnings.filterwarnings("ignore", message=".*Large object of size.*")
    warnings.filterwarnings("ignore", message=".*Sending large graph.*")
    cluster = LocalCluster(
        n_workers=args.workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    client = Client(cluster)
    h = Harness("dask", distributed.__version__, args)
    s = h.sizes
    pc = time.perf_counter

    bad = non_loopback_sockets()
    if bad:
        log("dask_bench: Dask has sockets off loopback; stopping:\n  " + "\n  ".join(bad))
        client.close()
        cluster.close()
        return 1

    def noop_throughput():
        n = s.noop_tasks
        t0 = pc()
        futs = [client.submit(noop, pure=False) for _ in range(n)]
        submitted = pc() - t0
        wait(futs)
        total = pc() - t0
        del futs
        c = {"tasks": n}
        return {
            f"throughput_{n}": (n / total, "tasks/s", c),
            f"submit_rate_{n}": (n / submitted, "tasks/s", c),
        }

    def rtt():
        ns = []
        for i in range(s.rtt_warmup + s.rtt_calls):
            t0 = time.perf_counter_ns()
            v = client.submit(one, pure=False).result()
            dt = time.perf_counter_ns() - t0
            assert v == 1
            if i >= s.rtt_warmup:
                ns.append(dt)
        return latency_figures(ns, {"calls": s.rtt_calls})

    def chain():
        n = s.chain
        t0 = pc()
        prev = client.submit(inc, 0, pure=False)
        for _ in range(1, n):
            prev = client.submit(inc, prev, pure=False)
        assert prev.result() == n
        total = pc() - t0
        c = {"tasks": n}
        return {"total": (total * 1e3, "ms", c), "per_task": (total * 1e6 / n, "us", c)}

    def tree():
        leaves = s.tree_leaves
        t0 = pc()
        level = [client.submit(one, pure=False) for _ in range(leaves)]
        while len(level) > 1:
            level = [client.submit(add, level[i], level[i + 1], pure=False)
                     for i in range(0, len(level), 2)]
        assert level[0].result() == leaves
        total = pc() - t0
        return {"total": (total * 1e3, "ms", {"leaves": leaves})}

    def nested():
        parents, children = s.nested
        t0 = pc()
        futs = [client.submit(parent, children, pure=False) for _ in range(parents)]
        wait(futs)
        total = pc() - t0
        return {"total": (total * 1e3, "ms", {"parents": parents, "children": children})}

    def big_arg():
        nbytes = s.big_arg_bytes
        n = nbytes // 8
        expected = n * (n - 1) // 2
        v = np.arange(n, dtype=np.uint64)
        t0 = pc()
        # by value: the array travels in the task (client -> scheduler -> worker)
        assert client.submit(sum_arr, v, pure=False).result() == expected
        by_value = pc() - t0
        del v
        v = np.arange(n, dtype=np.uint64)
        t1 = pc()
        f = client.scatter(v, hash=False)
        put = pc() - t1
        t2 = pc()
        assert client.submit(sum_arr, f, pure=False).result() == expected  # by reference
        by_ref = pc() - t2
        del f, v
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
            done_puts, t_put = capped_loop(puts, args.loop_cap,
                                           lambda: client.scatter(v, hash=False))
            f = client.scatter(v, hash=False)

            def get():
                assert len(f.result()) == size

            done_gets, t_get = capped_loop(s.gets, args.loop_cap, get)
            del f
            put_get_figures(out, label, size, t_put, done_puts, t_get, done_gets)
        return out

    fns = {
        "noop_throughput": noop_throughput, "rtt": rtt, "chain": chain, "tree": tree,
        "nested": nested, "big_arg": big_arg, "put_get": put_get,
    }

    def close():
        client.close()
        cluster.close()

    return finish("Dask", h, fns, args.workloads, close)


if __name__ == "__main__":
    sys.exit(main())
