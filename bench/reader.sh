#!/usr/bin/env bash
# Reader benchmark: builds a release causeway-reader and runs
# `reader-bench` against the sandbox (started if none runs).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
cargo build -q --release -p causeway-reader --bin causeway-reader
target=${CARGO_TARGET_DIR:-$repo/target}
CAUSEWAY_BENCH_READER="$target/release/causeway-reader" \
  cargo run -q --release -p causeway-bench --bin reader-bench
