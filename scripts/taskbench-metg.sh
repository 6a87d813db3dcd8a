#!/usr/bin/env bash
# METG(50%) of owl and of MPI on Task Bench, measured in one run on this
# machine, side by side.
#
#   scripts/taskbench-metg.sh                 # stencil_1d and nearest
#   PATTERNS="stencil_1d" REPS=5 scripts/taskbench-metg.sh
#   SYSTEMS=owl scripts/taskbench-metg.sh     # skip MPI (no Open MPI install)
#
# Each sweep runs `-steps $STEPS -kernel compute_bound` at iteration counts
# from 2^$MAX_POW down to 1, $REPS times each, for owl (owl-taskbench, one
# node with one shard per core) and for the MPI reference (one rank per
# core). The logs and the report (metg.md, metg.json, metg.svg) go to $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."

CORES="${CORES:-$(nproc)}"
STEPS="${STEPS:-1000}"
REPS="${REPS:-3}"
MAX_POW="${MAX_POW:-16}"
PATTERNS="${PATTERNS:-stencil_1d nearest}"
SYSTEMS="${SYSTEMS:-owl mpi}"
OUT="${OUT:-target/metg}"

# The graph shape per pattern: one point per core for the stencil; nearest
# with radix 3 over two points per core.
flags_for() {
    case "$1" in
        stencil_1d) echo "-width $CORES -type stencil_1d" ;;
        nearest) echo "-width $((2 * CORES)) -type nearest -radix 3" ;;
        *) echo "-width $CORES -type $1" ;;
    esac
}

cargo build --release -p owl-bench --bins >&2
OWL_TB=target/release/owl-taskbench
if [[ " $SYSTEMS " == *" mpi "* ]]; then
    # Installs Open MPI if needed and builds the reference once.
    scripts/taskbench-mpi.sh -steps 2 -width 2 -type trivial >/dev/null
fi

mkdir -p "$OUT"
for pattern in $PATTERNS; do
    for system in $SYSTEMS; do
        log="$OUT/$system-$pattern.log"
        : > "$log"
        for ((pow = MAX_POW; pow >= 0; pow--)); do
            iter=$((1 << pow))
            for ((rep = 0; rep < REPS; rep++)); do
                # shellcheck disable=SC2046 # flags are words
                args=(-steps "$STEPS" $(flags_for "$pattern") -kernel compute_bound -iter "$iter")
                case "$system" in
                    owl) OWL_SHARDS="$CORES" "$OWL_TB" "${args[@]}" >> "$log" ;;
                    mpi) RANKS="$CORES" scripts/taskbench-mpi.sh "${args[@]}" >> "$log" ;;
                    *) echo "taskbench-metg: unknown system $system" >&2; exit 2 ;;
                esac
            done
            echo "taskbench-metg: $system $pattern iter $iter done" >&2
        done
    done
done
target/release/owl-bench metg-report "$OUT" --cores "$CORES"
