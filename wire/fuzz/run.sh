#!/usr/bin/env bash
# Builds the causeway-wire fuzz targets with libFuzzer on the STABLE toolchain
# (no nightly, no cargo-fuzz needed) and runs each for SECONDS seconds.
#
#   wire/fuzz/run.sh [SECONDS]        default 10; e.g. `run.sh 5` in CI
#   FUZZ_TARGETS="packet response" wire/fuzz/run.sh 60   # a subset
#
# The sanitizer-coverage flags are the ones cargo-fuzz passes, minus the
# sanitizer itself (-Zsanitizer needs nightly); the crate forbids unsafe code,
# so AddressSanitizer would add little. Crashes are written to
# fuzz/artifacts/<target>/ and fail the run. New corpus entries go to
# fuzz/target/corpus/<target>/ (ignored), never into the seed corpus.
set -euo pipefail

secs=${1:-10}
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

all_targets="packet compressed handshake handshake_response command com_query com_stmt_execute com_change_user generic response"
targets=${FUZZ_TARGETS:-$all_targets}

host=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR="$here/target"
# Applied only to the --target build, not to build scripts or proc macros.
export RUSTFLAGS="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 --cfg fuzzing"

start=$(date +%s)
bins=()
for t in $targets; do bins+=(--bin "$t"); done
cargo build --quiet --release --target "$host" "${bins[@]}"
echo "fuzz: built in $(( $(date +%s) - start ))s"
# scripts/fuzz-long builds through here, then runs the binaries itself.
if [ -n "${FUZZ_BUILD_ONLY:-}" ]; then exit 0; fi

failed=0
for t in $targets; do
    mkdir -p "target/corpus/$t" "artifacts/$t" "corpus/$t"
    log="target/$t.log"
    if "target/$host/release/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -malloc_limit_mb=512 -artifact_prefix="artifacts/$t/" \
        "target/corpus/$t" "corpus/$t" >"$log" 2>&1; then
        echo "fuzz: $t ok ($(grep -Eo 'Done [0-9]+ runs' "$log" | tail -1 || echo 'runs unknown'))"
    else
        echo "fuzz: $t FAILED, log follows"
        tail -40 "$log"
        failed=1
    fi
done
echo "fuzz: total $(( $(date +%s) - start ))s"
exit "$failed"
