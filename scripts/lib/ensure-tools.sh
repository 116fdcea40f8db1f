# shellcheck shell=bash
# Installs what the tests and the demo need and a fresh machine may lack:
# node and npm (for the real client programs in tests/clients/node) and the
# npm packages of those clients. Sourced by scripts/test and scripts/demo.

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "missing $*: install them (apt-get install $*) or run as root" >&2
    exit 1
  fi
  if [ -z "${CAUSEWAY_APT_UPDATED:-}" ]; then
    apt-get update -q >/dev/null
    CAUSEWAY_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
}

ensure_node_clients() {
  local repo=$1
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "installing nodejs and npm from Debian" >&2
    apt_install nodejs npm
  fi
  local dir="$repo/tests/clients/node"
  if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    touch "$dir/node_modules"
  fi
}

ensure_nextest() {
  if ! cargo nextest --version >/dev/null 2>&1; then
    echo "installing cargo-nextest from crates.io" >&2
    cargo install --locked cargo-nextest >/dev/null
  fi
}
