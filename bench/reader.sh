#!/usr/bin/env bash
# Reader benchmark: builds a release causeway-reader and runs `reader-bench`
# against the sandbox (started if none runs).
#
# A reader runs beside one mysqld; in production the replicas are on other
# hosts. On a sandbox machine they share its cores with the primary, and
# their applier threads, the sandbox's own (debug) readers and router take
# what the measured reader and the write load need (on 2 cores the delay
# p99 moved 30x between identical runs). So for the run the replicas stop
# replicating and the sandbox's readers and router are paused (SIGSTOP);
# both are undone on exit, whatever the exit.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
cargo build -q --release -p causeway-reader --bin causeway-reader
cargo build -q --release -p causeway-bench --bin reader-bench
target=${CARGO_TARGET_DIR:-$repo/target}
dir=${CAUSEWAY_SANDBOX_DIR:-$repo/target/sandbox}
scripts/sandbox status --dir "$dir" >/dev/null 2>&1 || scripts/sandbox up --dir "$dir"
# shellcheck disable=SC1091
source "$dir/topology.env"
# The bench's own reader gets no token, whatever this shell exported.
unset CAUSEWAY_READER_TOKEN_FILE CAUSEWAY_READER_TOKEN_ENV

replicas() {
  local p
  for p in $CAUSEWAY_REPLICA_PORTS; do
    MYSQL_PWD=$CAUSEWAY_ADMIN_PASSWORD "$CAUSEWAY_MYSQL" -h "$CAUSEWAY_HOST" -P "$p" \
      -u "$CAUSEWAY_ADMIN_USER" -e "$1" || echo "bench: '$1' failed on :$p" >&2
  done
}
paused=()
for f in "$dir"/pids/reader-*.pid "$dir"/pids/router.pid; do
  [ -f "$f" ] && paused+=("$(cat "$f")")
done
resume() {
  [ ${#paused[@]} -eq 0 ] || kill -CONT "${paused[@]}" 2>/dev/null || true
  replicas "START REPLICA"
}
trap resume EXIT
replicas "STOP REPLICA"
[ ${#paused[@]} -eq 0 ] || kill -STOP "${paused[@]}"
echo "bench: replication stopped on :${CAUSEWAY_REPLICA_PORTS// /, :} and the sandbox's readers and router paused for the run"
CAUSEWAY_BENCH_READER="$target/release/causeway-reader" "$target/release/reader-bench"
