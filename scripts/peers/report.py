#!/usr/bin/env python3
"""Merges owl-bench / peer JSON-lines files into one side-by-side table.

    report.py --out DIR [--note TEXT]... [--meta KEY=VALUE]... FILE.jsonl...

Each input line is one figure in owl-bench's format
({"workload", "metric", "value", "unit", "config"}); config.system names the
system ("owl" where absent). A figure that appears once with config.reps is
taken as is; one that appears in several lines (owl-bench prints one run per
invocation) is reduced to the median of those lines, all kept as reps.

Writes DIR/compare.md, DIR/compare.json and DIR/compare.svg. Rows are
(workload, metric, unit); columns owl, ray, dask, owl/ray, owl/dask, where a
ratio says how many times better owl is: owl/peer for rates (tasks/s, ops/s,
calls/s, GB/s), peer/owl for times (us, ms, ms/call). Missing figures are "—".
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import statistics
import sys
from collections import OrderedDict

SYSTEMS = ["owl", "ray", "dask"]
PEERS = ["ray", "dask"]
WORKLOAD_ORDER = ["noop_throughput", "rtt", "chain", "tree", "nested", "big_arg", "put_get",
                  "pending_memory"]
HIGHER_BETTER = {"tasks/s", "ops/s", "calls/s", "GB/s"}
LOWER_BETTER = {"us", "ms", "ms/call", "s", "bytes"}
DASH = "—"


def load(paths):
    """{(system, workload, metric, unit): [figure, ...]} in first-seen order."""
    groups: "OrderedDict[tuple, list]" = OrderedDict()
    for p in paths:
        with open(p) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    fig = json.loads(line)
                except json.JSONDecodeError as e:
                    sys.exit(f"report.py: {p}:{n}: not JSON: {e}")
                if not {"workload", "metric", "value", "unit"} <= fig.keys():
                    continue
                cfg = fig.get("config") or {}
                system = cfg.get("system", "owl")
                key = (system, fig["workload"], fig["metric"], fig["unit"])
                groups.setdefault(key, []).append(fig)
    return groups


def reduce(figs):
    """One figure: as is if single with reps, else the median of the lines."""
    if len(figs) == 1:
        f = dict(figs[0])
        cfg = dict(f.get("config") or {})
        cfg.setdefault("reps", [f["value"]])
        f["config"] = cfg
        return f
    values = [f["value"] for f in figs]
    f = dict(figs[0])
    cfg = dict(f.get("config") or {})
    cfg["reps"] = values
    f["config"] = cfg
    f["value"] = statistics.median(values)
    return f


def ratio(owl, peer, unit):
    """How many times better owl is than peer (None where not comparable)."""
    if owl is None or peer is None or owl <= 0 or peer <= 0:
        return None
    if unit in HIGHER_BETTER:
        return owl / peer
    if unit in LOWER_BETTER:
        return peer / owl
    return None


def fmt_num(v):
    if v is None:
        return DASH
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 1:
        return f"{v:.3g}" if a < 10 else f"{v:.1f}"
    return f"{v:.3g}"


def fmt_ratio(r):
    if r is None:
        return DASH
    if r >= 100:
        return f"{r:,.0f}×"
    if r >= 10:
        return f"{r:.0f}×"
    return f"{r:.2g}×" if r < 1 else f"{r:.1f}×"


def machine_info():
    info = {"kernel": platform.release(), "cpus": os.cpu_count(),
            "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            info["memory_gib"] = round(kb / (1 << 20), 1)
        with open("/proc/loadavg") as f:
            info["loadavg_at_report"] = f.read().split()[:3]
    except OSError:
        pass
    return info


def build(groups):
    figs = {k: reduce(v) for k, v in groups.items()}
    rows: "OrderedDict[tuple, dict]" = OrderedDict()
    # Row order: workload order, then owl's metric order, then peers' extras.
    keys = sorted(
        figs,
        key=lambda k: (WORKLOAD_ORDER.index(k[1]) if k[1] in WORKLOAD_ORDER else 99,
                       SYSTEMS.index(k[0]) if k[0] in SYSTEMS else 9),
    )
    for k in keys:
        rk = (k[1], k[2], k[3])
        rows.setdefault(rk, {})[k[0]] = figs[k]
    # Within a workload keep first-seen order of owl's metrics (sorted() is stable).
    out = []
    machines = {}
    for (workload, metric, unit), by_sys in rows.items():
        row = {"workload": workload, "metric": metric, "unit": unit}
        for s in SYSTEMS:
            f = by_sys.get(s)
            if f is None:
                row[s] = None
            else:
                cfg = {k: v for k, v in f["config"].items() if k not in ("reps", "machine")}
                if "machine" in f["config"]:
                    machines.setdefault(s, f["config"]["machine"])
                row[s] = {"value": f["value"], "reps": f["config"].get("reps"), "config": cfg}
        for p in PEERS:
            row[f"owl_vs_{p}"] = ratio(
                row["owl"] and row["owl"]["value"], row[p] and row[p]["value"], unit)
        out.append(row)
    versions = {}
    for (s, *_), f in figs.items():
        v = (f.get("config") or {}).get("version")
        if v and s not in versions:
            versions[s] = v
    om = machines.get("owl")
    if om and "owl" not in versions and om.get("git_commit"):
        versions["owl"] = om["git_commit"] + ("+dirty" if om.get("git_dirty") else "")
    return out, versions, machines


def markdown(rows, versions, notes, meta, machine):
    ver = lambda s: versions.get(s, "")  # noqa: E731
    w = meta.get("workers", 2)
    ev = next((r["owl"]["config"].get("event_loop") for r in rows if r["owl"]), "?")
    lines = [
        "# owl vs Ray vs Dask: the standard workloads",
        "",
        f"Generated {meta.get('generated')} on one machine: {machine.get('cpus')} CPUs "
        f"({machine.get('cpu', '?')}), {machine.get('memory_gib', '?')} GiB, Linux "
        f"{machine.get('kernel')}, Python {machine.get('python')}.",
        f"owl (checkout {ver('owl') or meta.get('owl_commit', '?')}, owl-bench built "
        f"{meta.get('owl_bench_built', '?')}; {w} shards, event loop "
        f"{ev}); Ray {ver('ray')} (num_cpus={w}); Dask distributed {ver('dask')} "
        f"(LocalCluster, {w} worker processes × 1 thread). "
        "One node, loopback only.",
        "",
        f"Each value is the median of {meta.get('reps', 3)} repetitions after one warm-up "
        "(every repetition is in compare.json). "
        "owl/ray and owl/dask say **how many times better owl is**: owl/peer for rates "
        "(tasks/s, ops/s, calls/s, GB/s), peer/owl for times (us, ms, ms/call); "
        "above 1× owl is better, below 1× the peer is. — means not measured.",
        "",
        "| workload | metric | unit | owl | ray | dask | owl/ray | owl/dask |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        cells = [r["workload"], r["metric"], r["unit"]]
        cells += [fmt_num(r[s] and r[s]["value"]) for s in SYSTEMS]
        cells += [fmt_ratio(r[f"owl_vs_{p}"]) for p in PEERS]
        lines.append("| " + " | ".join(cells) + " |")
    if notes:
        lines += ["", "Notes:", ""]
        lines += [f"- {n}" for n in notes]
    extra = {k: v for k, v in meta.items()
             if k not in ("generated", "owl_commit", "owl_bench_built")}
    if extra:
        lines += ["", "Run:", ""] + [f"- {k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def svg(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    units = []
    for r in rows:
        if r["unit"] not in units and r["unit"] != "bytes":
            units.append(r["unit"])
    panels = units + ["ratio"]
    ncols = 2
    nrows = math.ceil(len(units) / ncols) + 1  # the ratio panel gets the last row to itself
    fig = plt.figure(figsize=(15, 4.2 * nrows))
    grid = fig.add_gridspec(nrows, ncols)
    axes = [fig.add_subplot(grid[i // ncols, i % ncols]) for i in range(len(units))]
    axes.append(fig.add_subplot(grid[nrows - 1, :]))
    colors = {"owl": "#1f6f8b", "ray": "#e07b39", "dask": "#7a5195"}
    for ax, unit in zip(axes, panels):
        if unit == "ratio":
            sel = [r for r in rows if any(r[f"owl_vs_{p}"] for p in PEERS)]
            labels = [f"{r['workload']}\n{r['metric']}" for r in sel]
            w = 0.4
            for i, p in enumerate(PEERS):
                xs = [j + (i - 0.5) * w for j in range(len(sel))]
                ys = [r[f"owl_vs_{p}"] or 0 for r in sel]
                ax.bar(xs, ys, w, label=f"owl vs {p}", color=colors[p])
            ax.axhline(1, color="black", lw=0.8)
            ax.set_title("how many times better owl is (log; above 1 = owl better)")
        else:
            sel = [r for r in rows if r["unit"] == unit]
            labels = [f"{r['workload']}\n{r['metric']}" for r in sel]
            w = 0.27
            for i, s in enumerate(SYSTEMS):
                xs = [j + (i - 1) * w for j in range(len(sel))]
                ys = [(r[s] or {}).get("value") or 0 for r in sel]
                ax.bar(xs, ys, w, label=s, color=colors[s])
            better = "higher" if unit in HIGHER_BETTER else "lower"
            ax.set_title(f"{unit} (log scale; {better} is better)")
        ax.set_yscale("log")
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, fontsize=7, rotation=30, ha="right")
        ax.grid(axis="y", which="major", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("owl vs Ray vs Dask — standard workloads, one node, median of repetitions")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", help="JSON-lines files of figures")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--note", action="append", default=[], help="a note under the table")
    ap.add_argument("--meta", action="append", default=[], help="KEY=VALUE about the run")
    ap.add_argument("--no-svg", action="store_true", help="skip the SVG (no matplotlib)")
    a = ap.parse_args()
    for p in a.files:
        if not os.path.isfile(p):
            sys.exit(f"report.py: no such file: {p}")
    groups = load(a.files)
    if not groups:
        sys.exit("report.py: no figures found in the input files")
    rows, versions, machines = build(groups)
    meta = {"generated": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")}
    for kv in a.meta:
        k, _, v = kv.partition("=")
        meta[k] = v
    machine = machine_info()
    os.makedirs(a.out, exist_ok=True)
    md = markdown(rows, versions, a.note, meta, machine)
    with open(os.path.join(a.out, "compare.md"), "w") as f:
        f.write(md)
    with open(os.path.join(a.out, "compare.json"), "w") as f:
        json.dump({"meta": meta, "machine": machine, "versions": versions,
                   "machine_as_reported": machines, "notes": a.note,
                   "ratio_meaning": "how many times better owl is: owl/peer for rates "
                   "(tasks/s, ops/s, calls/s, GB/s), peer/owl for times (us, ms, ms/call)",
                   "rows": rows}, f, indent=1)
    if not a.no_svg:
        svg(rows, os.path.join(a.out, "compare.svg"))
    print(md)


if __name__ == "__main__":
    main()
