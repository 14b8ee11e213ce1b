#!/usr/bin/env bash
# The checks and figures that need a hardware GPU, in two halves, so that the GPU machine needs
# no Rust toolchain and no network:
#
#   scripts/gpu-check.sh pack KIT      on the build machine: builds the release binary and the
#                                      test executables that cover the hardware GPUs' kernels
#                                      (tiled GEMMs, parity classes, dispatch limits, every op,
#                                      whole steps against f64 and PyTorch), strips them and
#                                      packs them into KIT/kit.tar.xz (about 8 MB)
#   scripts/gpu-check.sh run KIT OUT   on the GPU machine, from the repository root: runs those
#                                      tests on the GPU, then the benchmarks the README quotes
#                                      for GPUs; each one's output goes to OUT, and OUT/summary.txt
#                                      says which passed
#
# The GPU machine needs the Vulkan loader (libvulkan1) and its GPU's Vulkan driver. Run with
# BYOL_ADAPTER set to choose among several adapters.
set -euo pipefail

TESTS=(matmul conv_kernels dispatch_limits ops fusion long_reductions step_reference byol_step)

usage() {
    sed -n '2,16p' "$0" >&2
    exit 2
}

pack() {
    local kit="$1" staging
    mkdir -p "$kit"
    staging="$(mktemp -d)"
    cargo build --release
    cp target/release/byol "$staging/"
    for t in "${TESTS[@]}"; do
        # cargo names the executable on stderr: "Executable tests/matmul.rs (target/.../matmul-hash)".
        local exe
        exe="$(cargo test --release --no-run --test "$t" 2>&1 | sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)"
        [ -x "$exe" ] || { echo "no executable for test $t" >&2; exit 1; }
        cp "$exe" "$staging/$t"
    done
    strip "$staging"/*
    tar -C "$staging" -cJf "$kit/kit.tar.xz" .
    rm -rf "$staging"
    ls -l "$kit/kit.tar.xz"
}

run() {
    local kit="$1" out="$2" bin
    mkdir -p "$out"
    bin="$(mktemp -d)"
    tar -C "$bin" -xJf "$kit/kit.tar.xz"
    # The tests find their fixtures through the repository root.
    export BYOL_TEST_REPO="$PWD"
    local summary="$out/summary.txt"
    : >"$summary"
    "$bin/byol" info >"$out/info.txt" 2>&1 || true
    head -3 "$out/info.txt" >>"$summary"
    for t in "${TESTS[@]}"; do
        local start=$SECONDS status=passed
        "$bin/$t" >"$out/test-$t.txt" 2>&1 || status=FAILED
        echo "test $t: $status ($((SECONDS - start)) s)" | tee -a "$summary"
    done
    bench() {
        local name="$1" start=$SECONDS status=done
        shift
        "$bin/byol" bench "$@" >"$out/bench-$name.txt" 2>&1 || status=FAILED
        echo "bench $name ($*): $status ($((SECONDS - start)) s)" | tee -a "$summary"
    }
    bench matmul matmul
    bench conv conv --batch 64
    bench step step --batch 256 --steps 10 --json
    # What timing the GEMM candidates buys: the same step on the rule-of-thumb kernels.
    BYOL_TUNE=off bench step-untuned step --batch 256 --steps 10 --json
    bench step-profile step --batch 256 --steps 3 --profile
    bench memory memory
    rm -rf "$bin"
}

case "${1:-}" in
    pack) [ $# -eq 2 ] || usage; pack "$2" ;;
    run) [ $# -eq 3 ] || usage; run "$2" "$3" ;;
    *) usage ;;
esac
