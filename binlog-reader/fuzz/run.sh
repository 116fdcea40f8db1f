#!/usr/bin/env bash
# Runs every fuzz target of causeway-reader (the binlog stream decoding) for
# a bounded time.
#
#   binlog-reader/fuzz/run.sh [SECONDS_PER_TARGET]     (default 20)
#
# Stable toolchain, no cargo-fuzz needed: the targets use libfuzzer-sys and
# are built with the same SanitizerCoverage flags cargo-fuzz passes, minus
# `-Zsanitizer=address` (nightly-only). Panics, overflow checks and debug
# assertions are the oracles. Seeds are read from corpus/<target>/ (kept in
# git, built from testdata/capture.binlog); inputs libFuzzer finds go to
# $CARGO_TARGET_DIR/fuzz-corpus/<target>/, crashes to artifacts/<target>/
# (git-ignored). Exits non-zero if any target fails.
set -euo pipefail

secs="${1:-20}"
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/target}"
host="$(rustc -vV | sed -n 's/^host: //p')"
# --target keeps these flags off build scripts and proc macros.
export RUSTFLAGS="${RUSTFLAGS:-} --cfg fuzzing -Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares"

targets=(binlog_event)
cargo build --release --target "$host" --bins
# scripts/fuzz-long builds through here, then runs the binaries itself.
if [ -n "${FUZZ_BUILD_ONLY:-}" ]; then exit 0; fi

status=0
for t in "${targets[@]}"; do
    work="$CARGO_TARGET_DIR/fuzz-corpus/$t"
    log="$CARGO_TARGET_DIR/fuzz-$t.log"
    mkdir -p "$work" "artifacts/$t"
    echo "== fuzz $t for ${secs}s"
    if "$CARGO_TARGET_DIR/$host/release/$t" \
        -max_total_time="$secs" -max_len=8192 -rss_limit_mb=2048 -timeout=5 \
        -malloc_limit_mb=512 -print_final_stats=1 -artifact_prefix="artifacts/$t/" \
        "$work" "corpus/$t" >"$log" 2>&1; then
        grep -E '^(Done|stat::(number_of_executed_units|new_units_added|peak_rss_mb))' "$log" || true
    else
        tail -n 60 "$log"
        echo "!! fuzz target $t failed: reproduce with $CARGO_TARGET_DIR/$host/release/$t binlog-reader/fuzz/artifacts/$t/<file>"
        status=1
    fi
done
exit "$status"
