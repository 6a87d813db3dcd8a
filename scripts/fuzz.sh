#!/usr/bin/env bash
# Fuzzes owl's trust boundary (the targets in fuzz/: frame decoding,
# handshake, batch decoding, received-value validation) for a bounded time
# each, and fails if any target crashes, leaks, hangs or runs out of memory.
#
#   scripts/fuzz.sh                        # every target, 20 s each
#   OWL_FUZZ_SECONDS=300 scripts/fuzz.sh handshake
#
# Installs cargo-fuzz (crates.io) if it is missing. Each target runs on a
# fresh copy of its committed seeds in fuzz/run/ (git-ignored), so runs
# never change fuzz/corpus/; a crashing input is saved under
# fuzz/artifacts/<target>/ and its path printed. Reproduce one with
#   cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run --codegen-units 16 <target> <path>
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${OWL_FUZZ_SECONDS:-20}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frame_decoder handshake msg_decode value_access)

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# cargo-fuzz passes nightly-only flags (-Zsanitizer=address, sanitizer
# coverage options); RUSTC_BOOTSTRAP lets a stable toolchain accept them.
# AddressSanitizer works this way: the stable toolchain ships its runtime
# (librustc-stable_rt.asan.a), so the default sanitizer is kept.
export RUSTC_BOOTSTRAP=1
# The fuzz crate's own target dir (fuzz/target): its flags differ from the
# workspace's, and sharing a dir would rebuild both back and forth.
unset CARGO_TARGET_DIR
# 16 codegen units (cargo-fuzz defaults to 1) and the unoptimized
# dependencies set in fuzz/Cargo.toml keep a clean build under two minutes
# on two cores; runs are seconds long, so throughput matters less.
build=(--codegen-units 16)

cargo fmt --check
cargo fuzz build "${build[@]}"

mkdir -p run artifacts
failed=()
for t in "${targets[@]}"; do
    rm -rf "run/$t" "artifacts/$t"
    mkdir -p "run/$t" "artifacts/$t"
    cp corpus/"$t"/* "run/$t/"
    # -timeout: one input running this long is a hang; -rss_limit_mb also
    # caps single allocations (libFuzzer's malloc limit follows it).
    if cargo fuzz run "${build[@]}" "$t" "run/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        >"run/$t.log" 2>&1; then
        echo "fuzz $t: ok, $(grep -Eo '#[0-9]+' "run/$t.log" | tail -1 | tr -d '#') runs in ${seconds}s, corpus $(find "run/$t" -type f | wc -l) inputs"
    else
        tail -n 60 "run/$t.log"
        saved=$(find "artifacts/$t" -type f)
        for a in $saved; do
            echo "fuzz $t: FAILED; input: $PWD/$a"
        done
        [ -n "$saved" ] || echo "fuzz $t: FAILED before saving an input; see fuzz/run/$t.log"
        failed+=("$t")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: crashes in ${failed[*]} (full logs in fuzz/run/<target>.log)" >&2
    exit 1
fi
