#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) with the nightly toolchain.
#   protocol-tests/fuzz/run.sh [SECONDS] [TARGET...]
# Installs cargo-fuzz if missing. Seeds come from corpus/<target>/ (read only); libFuzzer's
# growing working corpus is work/<target>/ (git-ignored). A crash leaves its reproducer in
# artifacts/<target>/ and makes this script exit non-zero; replay one with
#   cargo +nightly fuzz run <target> artifacts/<target>/crash-…
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(request_frame batch)

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked || exit 1
fi
# cargo-fuzz passes -Z flags, which need a nightly compiler. Use the nightly toolchain when
# present or installable; otherwise let the stable compiler accept them (RUSTC_BOOTSTRAP=1),
# which builds the same instrumented target.
toolchain=(+nightly)
if ! cargo +nightly --version >/dev/null 2>&1 &&
   ! timeout 300 rustup toolchain install nightly --profile minimal >/dev/null 2>&1; then
    echo "run.sh: no nightly toolchain; using the stable compiler with RUSTC_BOOTSTRAP=1" >&2
    toolchain=()
    export RUSTC_BOOTSTRAP=1
fi

status=0
for target in "${targets[@]}"; do
    mkdir -p "work/$target" "corpus/$target" "artifacts/$target"
    echo "== $target for ${seconds}s" >&2
    # Working corpus first (libFuzzer adds new inputs to the first directory), seeds second.
    # -rss_limit_mb: decompression is bounded at 128 MiB per batch, well below it.
    cargo "${toolchain[@]}" fuzz run "$target" "work/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        2>&1 | tee "work/$target.log" | grep -E "^(#[0-9]+.*(DONE|pulse)|stat::|==[0-9]+==|SUMMARY|.*panicked|Test unit written|artifact_prefix|Done)" >&2
    code=${PIPESTATUS[0]}
    if [ "$code" -ne 0 ]; then
        echo "run.sh: $target failed (exit $code); see work/$target.log and artifacts/$target/" >&2
        status=1
    fi
done
exit $status
