# shellcheck shell=bash
# What the bench scripts share: the sandbox, a work folder cleaned up on
# exit, free ports, SQL as the sandbox's admin user, a release router in
# front of the sandbox, and what /proc says about a process. Sourced:
#
#   source "$(dirname "$0")/lib/common.sh"
#   bench_init                     # cd to the repo, $bench_work, the exit trap
#   bench_sandbox                  # the running sandbox (or one started here)
#   bench_router_toml passthrough "$port" >"$bench_work/router.toml"
#   bench_start_router "$bench_target/release/causeway-router" "$bench_work/router.toml" router "$port"
#   bench_cpu_ticks "$bench_router_pid"
#
# Every process a script starts goes into bench_pids (killed on exit, by
# pid); bench_at_exit registers more clean-up, run in reverse order. On a
# failing exit the last lines of each $bench_work/*.log are printed.

bench_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bench_target=${CARGO_TARGET_DIR:-$bench_repo/target}
bench_pids=()
bench_exit_cmds=()
bench_started_sandbox=
bench_work=

bench_init() {
  cd "$bench_repo"
  # shellcheck source=scripts/lib/ensure-tools.sh
  source "$bench_repo/scripts/lib/ensure-tools.sh"
  ensure_protoc
  bench_work=$(mktemp -d)
  trap bench_exit EXIT
}

# bench_at_exit CMD [ARGS...]: run CMD on exit (before the sandbox goes down).
bench_at_exit() {
  local q
  printf -v q '%q ' "$@"
  bench_exit_cmds+=("$q")
}

bench_exit() {
  local rc=$? f p i
  if [ "$rc" != 0 ] && [ -n "$bench_work" ]; then
    for f in "$bench_work"/*.log; do
      [ -s "$f" ] || continue
      echo "== $(basename "$f") (last 15 lines)" >&2
      tail -n 15 "$f" >&2
    done
  fi
  for p in "${bench_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${bench_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for ((i = ${#bench_exit_cmds[@]} - 1; i >= 0; i--)); do
    eval "${bench_exit_cmds[$i]}" || true
  done
  if [ -n "$bench_started_sandbox" ]; then
    scripts/sandbox down --dir "$CAUSEWAY_SANDBOX_DIR" >&2 || true
  fi
  [ -n "$bench_work" ] && rm -rf "$bench_work"
  exit "$rc"
}

# bench_sandbox: the sandbox in $CAUSEWAY_SANDBOX_DIR (default
# target/sandbox), started (and taken down on exit) when none runs there;
# sources its topology.env and writes client option files for the APP and
# ADMIN users ($bench_work/app.cnf, admin.cnf).
bench_sandbox() {
  export CAUSEWAY_SANDBOX_DIR=${CAUSEWAY_SANDBOX_DIR:-$bench_repo/target/sandbox}
  if ! scripts/sandbox status --dir "$CAUSEWAY_SANDBOX_DIR" >/dev/null 2>&1; then
    bench_started_sandbox=1
    scripts/sandbox up --dir "$CAUSEWAY_SANDBOX_DIR" >&2
  fi
  # shellcheck disable=SC1091
  source "$CAUSEWAY_SANDBOX_DIR/topology.env"
  # The sandbox router's pid file: a router started here must not take it
  # (the router reads that variable as its --pid-file).
  unset CAUSEWAY_ROUTER_PID_FILE
  printf '[client]\nuser=%s\npassword=%s\n' "$CAUSEWAY_ADMIN_USER" "$CAUSEWAY_ADMIN_PASSWORD" >"$bench_work/admin.cnf"
  printf '[client]\nuser=%s\npassword=%s\n' "$CAUSEWAY_APP_USER" "$CAUSEWAY_APP_PASSWORD" >"$bench_work/app.cnf"
  chmod 600 "$bench_work/admin.cnf" "$bench_work/app.cnf"
}

# bench_sql PORT SQL: as the sandbox's admin user; tab-separated, no headers.
bench_sql() {
  "$CAUSEWAY_MYSQL" --defaults-file="$bench_work/admin.cnf" -h127.0.0.1 -P "$1" -N -B -e "$2"
}

bench_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# bench_router_toml passthrough|split PORT [METRICS_PORT [FRONTEND_LINES]]:
# a router configuration on stdout. passthrough: writer hostgroup "primary"
# with the primary only; split: and reader hostgroup "replicas" with the
# replicas (no causal pairing). Backend TLS off and clients without TLS,
# like the direct runs; caching_sha2 fast path only (as MySQL after a
# user's first login); the APP user; the health monitor on with the
# sandbox's monitor user for split, off for passthrough (nothing to
# follow); metrics on METRICS_PORT, or off. FRONTEND_LINES are added to
# [frontend] (e.g. "max_connections = 20000").
bench_router_toml() {
  local mode=$1 port=$2 metrics_port=${3:-} frontend=${4:-} i
  local -a replicas
  read -r -a replicas <<<"$CAUSEWAY_REPLICA_PORTS"
  cat <<TOML
[frontend]
listen = "127.0.0.1:$port"
caching_sha2_full_auth = "never"
$frontend
[frontend.tls]
enabled = false
[backend.tls]
mode = "disabled"
[[hostgroups]]
name = "primary"
role = "writer"
[[servers]]
name = "primary"
host = "127.0.0.1"
port = $CAUSEWAY_PRIMARY_PORT
hostgroup = "primary"
TOML
  if [ "$mode" = split ]; then
    printf '[[hostgroups]]\nname = "replicas"\nrole = "reader"\nwriter = "primary"\n'
    for i in "${!replicas[@]}"; do
      printf '[[servers]]\nname = "replica%d"\nhost = "127.0.0.1"\nport = %s\nhostgroup = "replicas"\n' \
        "$((i + 1))" "${replicas[$i]}"
    done
    printf '[monitor]\nenabled = true\nuser = "%s"\npassword_env = "BENCH_MONITOR_PASSWORD"\n' \
      "$CAUSEWAY_MONITOR_USER"
  else
    printf '[monitor]\nenabled = false\n'
  fi
  printf '[[users]]\nname = "%s"\npassword_env = "BENCH_APP_PASSWORD"\n' "$CAUSEWAY_APP_USER"
  if [ -n "$metrics_port" ]; then
    printf '[metrics]\nenabled = true\nlisten = "127.0.0.1:%s"\n' "$metrics_port"
  else
    printf '[metrics]\nenabled = false\n'
  fi
}

# bench_start_router BINARY CONFIG NAME PORT: starts a router (at its
# default log level, info, as users run it, unless RUST_LOG says otherwise;
# log in $bench_work/NAME.log), sets bench_router_pid, and returns once the
# APP user can run a statement through it (a bare TCP probe would log a
# failed handshake); fails if it exits or does not answer within 15 s.
bench_start_router() {
  local bin=$1 config=$2 name=$3 port=$4 i
  BENCH_APP_PASSWORD=$CAUSEWAY_APP_PASSWORD BENCH_MONITOR_PASSWORD=${CAUSEWAY_MONITOR_PASSWORD:-} \
    RUST_LOG=${RUST_LOG:-info} "$bin" --config "$config" </dev/null >"$bench_work/$name.log" 2>&1 &
  bench_router_pid=$!
  bench_pids+=("$bench_router_pid")
  for i in $(seq 150); do
    kill -0 "$bench_router_pid" 2>/dev/null || { echo "$name: the router exited" >&2; return 1; }
    "$CAUSEWAY_MYSQL" --defaults-file="$bench_work/app.cnf" -h127.0.0.1 -P "$port" --ssl-mode=DISABLED \
      -N -B -e "SELECT 1" >/dev/null 2>&1 && return 0
    [ "$i" = 150 ] && { echo "$name: cannot log in through the router on port $port" >&2; return 1; }
    sleep 0.1
  done
}

# bench_start_relay PORT: the copy-only TCP relay (tcp-relay, release) from
# PORT to the primary; sets bench_relay_pid.
bench_start_relay() {
  local port=$1
  "$bench_target/release/tcp-relay" "127.0.0.1:$port" "127.0.0.1:$CAUSEWAY_PRIMARY_PORT" \
    </dev/null >"$bench_work/relay.log" 2>&1 &
  bench_relay_pid=$!
  bench_pids+=("$bench_relay_pid")
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "the relay did not listen on port $port" >&2
  return 1
}

# bench_cpu_ticks PID: utime + stime of PID in clock ticks (bench_hz per
# second); the fields after the command name, which may hold spaces.
bench_cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
bench_hz=$(getconf CLK_TCK)

# bench_rss_kb PID: VmRSS of PID in kB.
bench_rss_kb() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"; }

# bench_ms_per TICKS COUNT PER: CPU milliseconds per PER of COUNT ("-" for none).
bench_ms_per() {
  awk -v t="$1" -v n="$2" -v per="$3" -v hz="$bench_hz" \
    'BEGIN { if (n > 0) printf "%.1f", t / hz * 1000 / n * per; else printf "-" }'
}
