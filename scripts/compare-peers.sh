#!/usr/bin/env bash
# Side-by-side comparison of owl with Ray and Dask distributed on this
# machine: the standard workloads of BENCHMARKS.md, one node, 2 workers each,
# loopback only. Writes $OUT/compare.md, compare.json, compare.svg (and the
# raw JSON lines under $OUT/raw/).
#
#   scripts/compare-peers.sh [--tiny] [--skip-install] [--wait-quiet SECONDS]
#
# Environment (all optional):
#   VENV       virtual environment for the peers      (target/peers-venv)
#   OUT        output directory                        (target/compare)
#   OWL_BENCH  owl-bench binary; built if missing      (${CARGO_TARGET_DIR:-target}/release/owl-bench)
#   PYTHON     interpreter that creates the venv       (python3)
#   WORKERS    shards for owl, CPUs/processes for peers (2)
#   REPS       measured repetitions after one warm-up  (3)
#   LOOP_CAP   peers' put_get: seconds after which a put or get loop stops
#              early (a per-call mean either way; 0 = the full owl counts) (2)
#   BUSY_LIMIT other processes' average busy cores above which a system's run
#              counts as disturbed and is repeated                 (0.1)
#   RETRIES    how many times a disturbed run is repeated; the least disturbed
#              attempt is kept                                      (2)
#
# --tiny runs every workload at owl-bench's tiny sizes (a smoke test);
# --skip-install uses the venv as it is; --wait-quiet N waits up to N seconds
# for the CPUs to be at least 90% idle before each system runs.
set -euo pipefail

die() { echo "compare-peers: error: $*" >&2; exit 1; }
say() { echo "compare-peers: $*" >&2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

TINY=0
SKIP_INSTALL=0
WAIT_QUIET=0
while [ $# -gt 0 ]; do
    case "$1" in
        --tiny) TINY=1 ;;
        --skip-install) SKIP_INSTALL=1 ;;
        --wait-quiet) shift; WAIT_QUIET=${1:?--wait-quiet needs seconds} ;;
        -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done

VENV=${VENV:-target/peers-venv}
OUT=${OUT:-target/compare}
OWL_BENCH=${OWL_BENCH:-${CARGO_TARGET_DIR:-target}/release/owl-bench}
PYTHON=${PYTHON:-python3}
WORKERS=${WORKERS:-2}
REPS=${REPS:-3}
LOOP_CAP=${LOOP_CAP:-2}
RETRIES=${RETRIES:-2}     # --tiny: 0
BUSY_LIMIT=${BUSY_LIMIT:-0.1}
REQS=scripts/peers/requirements.txt
WORKLOADS=(noop_throughput rtt chain tree nested big_arg put_get)

START=$(date +%s)

# --- Python and the pinned peers ------------------------------------------
command -v "$PYTHON" >/dev/null 2>&1 \
    || die "'$PYTHON' not found: install Python 3.11 (with venv and pip), or set PYTHON=/path/to/python3"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
    || die "$("$PYTHON" --version 2>&1) is too old: the pinned peers need Python 3.10+ (tested with 3.11)"

PY="$VENV/bin/python"
if [ ! -x "$PY" ]; then
    say "creating the virtual environment $VENV"
    "$PYTHON" -m venv "$VENV" \
        || die "'$PYTHON -m venv $VENV' failed (on Debian/Ubuntu: apt-get install python3-venv)"
fi
if [ "$SKIP_INSTALL" = 0 ]; then
    want=$(sha256sum "$REQS" | cut -d' ' -f1)
    have=$(cat "$VENV/.peers-requirements.sha256" 2>/dev/null || true)
    if [ "$want" != "$have" ]; then
        say "installing the pinned peers ($(grep -v '^#' "$REQS" | tr '\n' ' ')) — this can take a few minutes"
        if ! "$PY" -m pip install --disable-pip-version-check -q -r "$REQS" >"$VENV/pip-install.log" 2>&1; then
            tail -n 30 "$VENV/pip-install.log" >&2
            die "pip install -r $REQS failed (full log: $VENV/pip-install.log)"
        fi
        echo "$want" >"$VENV/.peers-requirements.sha256"
    fi
fi
"$PY" -c 'import ray, distributed, numpy, matplotlib' 2>/dev/null \
    || die "the venv $VENV lacks ray, distributed, numpy or matplotlib (rerun without --skip-install)"

# --- owl-bench -------------------------------------------------------------
if [ ! -x "$OWL_BENCH" ]; then
    command -v cargo >/dev/null 2>&1 || die "$OWL_BENCH is missing and cargo is not installed"
    say "building owl-bench (cargo build --release -p owl-bench)"
    cargo build --release -p owl-bench || die "cargo build --release -p owl-bench failed"
    [ -x "$OWL_BENCH" ] || die "built owl-bench, but $OWL_BENCH is still missing (set OWL_BENCH)"
fi

# owl-bench reports the checkout's commit; say when the binary predates the sources.
OWL_BUILT=$(date -u -d @"$(stat -c %Y "$OWL_BENCH")" '+%Y-%m-%d %H:%M UTC')
OWL_NEWER=$(find core store macros bench Cargo.toml Cargo.lock -type f \
    \( -name '*.rs' -o -name 'Cargo.toml' -o -name 'Cargo.lock' \) -newer "$OWL_BENCH" 2>/dev/null \
    | head -3 | tr '\n' ' ' || true)
OWL_BIN_NOTE="$OWL_BENCH, built $OWL_BUILT"
if [ -n "$OWL_NEWER" ]; then
    say "warning: $OWL_BENCH is older than ${OWL_NEWER}…: the owl figures are for that older build (cargo build --release -p owl-bench to refresh)"
    OWL_BIN_NOTE="$OWL_BIN_NOTE, OLDER than sources changed since (${OWL_NEWER% }…)"
fi

RAW="$OUT/raw"
rm -rf "$RAW"
mkdir -p "$RAW"

# Percent of CPU time idle over one second, machine-wide.
idle_pct() {
    local a b
    read -r -a a < <(head -1 /proc/stat)
    sleep 1
    read -r -a b < <(head -1 /proc/stat)
    local tot=0 i
    for i in 1 2 3 4 5 6 7 8; do tot=$((tot + b[i] - a[i])); done
    echo $(( tot > 0 ? 100 * (b[4] - a[4] + b[5] - a[5]) / tot : 100 ))
}
quiet_check() { # $1 = system about to run; sets IDLE
    local waited=0
    IDLE=$(idle_pct)
    while [ "$IDLE" -lt 90 ] && [ "$waited" -lt "$WAIT_QUIET" ]; do
        if [ "$waited" = 0 ]; then
            say "CPUs only ${IDLE}% idle before $1; waiting up to ${WAIT_QUIET}s for quiet"
        fi
        sleep 4
        waited=$((waited + 5))
        IDLE=$(idle_pct)
    done
    if [ "$IDLE" -lt 90 ]; then
        say "warning: CPUs only ${IDLE}% idle before $1: other work will skew its figures"
    fi
}

FAILED=()
RUN_META=()

# run_system NAME CMD...: runs CMD (stdout -> $RAW/NAME.jsonl, stderr ->
# $RAW/NAME.log) while scripts/peers/foreign_load.py measures the CPU that
# other processes use meanwhile. If they kept more than BUSY_LIMIT cores busy
# on average, it runs again (at most RETRIES more times) and keeps the attempt
# with the least other load. Every attempt stays in $RAW/NAME.tryN.*.
run_system() {
    local name=$1
    shift
    local attempt best=0 best_load=999 best_idle="" load ok t0 base sampler
    for ((attempt = 1; attempt <= RETRIES + 1; attempt++)); do
        quiet_check "$name"
        base="$RAW/$name.try$attempt"
        say "running $name, attempt $attempt (log: $base.log)"
        t0=$(date +%s)
        "$PY" scripts/peers/foreign_load.py $$ "$base.load.json" &
        sampler=$!
        ok=1
        "$@" >"$base.jsonl" 2>"$base.log" || ok=0
        kill -TERM "$sampler" 2>/dev/null || true
        wait "$sampler" 2>/dev/null || true
        load=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["foreign_cores"])' \
            "$base.load.json" 2>/dev/null || echo 0)
        if [ "$ok" = 0 ]; then
            tail -n 30 "$base.log" >&2
            say "$name failed (the figures it printed are kept)"
            FAILED+=("$name")
            best=$attempt best_load=$load best_idle=$IDLE
            break
        fi
        say "$name done in $(( $(date +%s) - t0 )) s; other processes kept $load cores busy meanwhile"
        if awk -v a="$load" -v b="$best_load" 'BEGIN { exit !(a < b) }'; then
            best=$attempt best_load=$load best_idle=$IDLE
        fi
        if awk -v a="$load" -v b="$BUSY_LIMIT" 'BEGIN { exit !(a <= b) }'; then
            break
        fi
        if [ "$attempt" -le "$RETRIES" ]; then
            say "that is more than $BUSY_LIMIT cores: running $name again"
        else
            say "warning: $name kept the figures of attempt $best, taken with $best_load cores of other load"
        fi
    done
    cp "$RAW/$name.try$best.jsonl" "$RAW/$name.jsonl"
    cp "$RAW/$name.try$best.log" "$RAW/$name.log"
    RUN_META+=(--meta "$name=attempt $best of $((attempt > RETRIES + 1 ? RETRIES + 1 : attempt)); CPUs ${best_idle}% idle before it; other processes kept $best_load cores busy during it")
}

# --- owl -------------------------------------------------------------------
# owl-bench repeats each workload itself: one warm-up, then REPS, median reported.
if [ "$TINY" = 1 ]; then RETRIES=0; fi  # a smoke test is not a measurement
OWL_ARGS=("${WORKLOADS[@]}" --json --shards "$WORKERS" --reps "$REPS")
if [ "$TINY" = 1 ]; then OWL_ARGS+=(--tiny); fi
run_system owl "$OWL_BENCH" "${OWL_ARGS[@]}"

# --- peers -----------------------------------------------------------------
PEER_ARGS=(--reps "$REPS" --workers "$WORKERS" --loop-cap "$LOOP_CAP")
if [ "$TINY" = 1 ]; then PEER_ARGS+=(--tiny); fi
for peer in ray dask; do
    run_system "$peer" "$PY" "scripts/peers/${peer}_bench.py" "${PEER_ARGS[@]}"
done

# --- report ----------------------------------------------------------------
"$PY" -m pip freeze --disable-pip-version-check >"$OUT/pip-freeze.txt" 2>/dev/null || true
OWL_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if ! git diff --quiet HEAD -- . ':!scripts' 2>/dev/null; then OWL_COMMIT="$OWL_COMMIT+dirty"; fi
ELAPSED=$(( $(date +%s) - START ))
NOTES=(
    --note "noop_throughput: owl-bench also reports 1,000,000-task figures (throughput_1000000, submit_rate_1000000); Ray and Dask run only the 10,000-task size, so those rows have no peer value."
    --note "owl-bench, ray_bench.py and dask_bench.py each start one runtime / cluster, run every workload once as a warm-up and then ${REPS} times, and report the median; rtt percentiles are per repetition, then the median of those."
    --note "put_get: put = ray.put (into Ray's shared-memory store) / client.scatter (to a Dask worker process, hash=False); get = ray.get / Future.result(), both of which return a new Python bytes object (a copy), where owl's get is a zero-copy view. Peers' put and get loops stop after ${LOOP_CAP} s (the counts done are in compare.json, config.puts/gets); each figure is a per-call mean either way."
    --note "big_arg: by value, Ray copies the argument into its object store and Dask ships it inside the task (client → scheduler → worker); put_once/by_reference use ray.put / client.scatter first."
    --note "nested: Ray parents block in ray.wait (Ray lends their CPU to other tasks, starting extra worker processes); Dask parents use worker_client() (secede/rejoin)."
    --note "Every Dask submit uses pure=False (otherwise identical calls would share one key and run once). owl-bench's grain and pending_memory workloads have no peer counterpart and are not run here."
)
if [ "$TINY" = 1 ]; then NOTES+=(--note "TINY RUN (--tiny): every workload ran at a tiny size; not a measurement."); fi
if [ "${#FAILED[@]}" -gt 0 ]; then NOTES+=(--note "FAILED: ${FAILED[*]} (see $RAW/*.log)"); fi

"$PY" scripts/peers/report.py --out "$OUT" "${NOTES[@]}" \
    --meta "owl_commit=$OWL_COMMIT" --meta "owl_bench_built=$OWL_BUILT" \
    --meta "owl_bench=$OWL_BIN_NOTE" --meta "total_run_time=${ELAPSED} s" \
    --meta "workers=$WORKERS" --meta "reps=$REPS" "${RUN_META[@]}" \
    "$RAW/owl.jsonl" "$RAW/ray.jsonl" "$RAW/dask.jsonl" >/dev/null \
    || die "report.py failed"
say "wrote $OUT/compare.md, $OUT/compare.json, $OUT/compare.svg in ${ELAPSED} s"
if [ "${#FAILED[@]}" -gt 0 ]; then
    die "failed: ${FAILED[*]}"
fi
