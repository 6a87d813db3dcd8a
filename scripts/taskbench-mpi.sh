#!/usr/bin/env bash
# Task Bench's MPI reference implementation (bench/taskbench-mpi) on this
# machine: installs Open MPI if missing, builds the binary in release mode and
# runs it under mpirun with the given Task Bench flags, e.g.
#
#   scripts/taskbench-mpi.sh -steps 1000 -width 2 -type stencil_1d -kernel compute_bound -iter 4096
#   RANKS=4 scripts/taskbench-mpi.sh -steps 100 -width 8 -type nearest -radix 3 -kernel compute_bound -iter 1024
#
# Environment (all optional):
#   RANKS                  MPI ranks, one per core                  (2)
#   TASKBENCH_MPI_TARGET   cargo target dir of the build            (target/taskbench-mpi)
#   MPIRUN_ARGS            extra mpirun arguments                   (empty)
#
# Runs loopback only (--mca btl self,vader) and with --oversubscribe, so more
# ranks than cores is allowed. As root, Open MPI needs the two
# OMPI_ALLOW_RUN_AS_ROOT variables, which are set here.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CRATE="$ROOT/bench/taskbench-mpi"
export CARGO_TARGET_DIR="${TASKBENCH_MPI_TARGET:-$ROOT/target/taskbench-mpi}"

need_pkgs=()
command -v mpirun >/dev/null 2>&1 || need_pkgs+=(openmpi-bin)
[ -e /usr/include/x86_64-linux-gnu/mpi/mpi.h ] || [ -e /usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h ] \
    || need_pkgs+=(libopenmpi-dev)
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1 \
    || need_pkgs+=(libclang-dev)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
    echo "taskbench-mpi: installing ${need_pkgs[*]}" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        openmpi-bin libopenmpi-dev libclang-dev >&2
fi

(cd "$CRATE" && cargo build --release --quiet)

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# shellcheck disable=SC2086 # MPIRUN_ARGS is a list of words
exec mpirun --oversubscribe --mca btl self,vader -n "${RANKS:-2}" ${MPIRUN_ARGS:-} \
    "$CARGO_TARGET_DIR/release/taskbench-mpi" "$@"
