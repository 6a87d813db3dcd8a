#!/usr/bin/env bash
# Profiles an owl-bench workload (or an example) with perf and writes a
# flamegraph SVG with inferno.
#
#   scripts/flamegraph.sh noop_throughput            # owl-bench workload
#   scripts/flamegraph.sh --example quickstart        # an example of the owl crate
#   OUT=/tmp/fg.svg scripts/flamegraph.sh rtt --shards 1
#
# Builds with the `profiling` profile (release speed, symbols) and frame
# pointers, samples with the cpu-clock event (hardware counters are often
# missing in VMs), and installs perf (Debian's linux-perf) and inferno
# (crates.io) if they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -eq 0 ]; then
    echo "usage: scripts/flamegraph.sh <owl-bench workload> [owl-bench args...] | --example NAME [args...]" >&2
    exit 2
fi

if ! command -v perf >/dev/null 2>&1; then
    echo "flamegraph: installing perf (linux-perf)" >&2
    if ! { apt-get install -y --no-install-recommends linux-perf >/dev/null 2>&1 ||
           { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends linux-perf >/dev/null 2>&1; }; }; then
        echo "flamegraph: could not install perf; install Debian's linux-perf package and retry" >&2
        exit 1
    fi
fi
if ! command -v inferno-flamegraph >/dev/null 2>&1; then
    echo "flamegraph: installing inferno" >&2
    cargo install --locked inferno >/dev/null 2>&1 || { echo "flamegraph: cargo install inferno failed" >&2; exit 1; }
fi
export PATH="$HOME/.cargo/bin:$PATH"

export RUSTFLAGS="${RUSTFLAGS:-} -C force-frame-pointers=yes"
if [ "$1" = "--example" ]; then
    name="${2:?--example needs a name}"
    shift 2
    cargo build --profile profiling -p owl --example "$name" >&2
    cmd=(target/profiling/examples/"$name" "$@")
    label="example-$name"
else
    cargo build --profile profiling -p owl-bench >&2
    cmd=(target/profiling/owl-bench "$@" --reps 1)
    label="$1"
fi

out="${OUT:-target/flamegraph-$label.svg}"
mkdir -p "$(dirname "$out")"
data="$(mktemp -t owl-perf.XXXXXX)"
trap 'rm -f "$data" "$data.folded"' EXIT
perf record -e cpu-clock -F "${FREQ:-4999}" -g -o "$data" -- "${cmd[@]}" >&2
perf script -i "$data" 2>/dev/null | inferno-collapse-perf > "$data.folded"
inferno-flamegraph --title "owl: ${cmd[*]}" < "$data.folded" > "$out"
# The folded stacks too, for reading the hot frames as text.
cp "$data.folded" "${out%.svg}.folded"
echo "flamegraph: wrote $out" >&2
