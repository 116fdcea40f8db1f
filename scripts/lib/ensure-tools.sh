# shellcheck shell=bash
# Installs what the tests and the demo need and a fresh machine may lack:
# node and npm (for the real client programs in tests/clients/node) and the
# npm packages of those clients, the other client programs, and a headless
# browser for the dashboard's test; protoc for the build. Sourced by
# scripts/test, scripts/demo, scripts/sandbox and the benches.

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

# protoc, which the etcd client crate's build runs on etcd's .proto files:
# every build of the router needs it (scripts/test, scripts/sandbox, the
# benches call this first).
ensure_protoc() {
  if ! command -v protoc >/dev/null; then
    echo "installing protobuf-compiler (protoc) from Debian" >&2
    apt_install protobuf-compiler
  fi
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
  ensure_router_clients "$repo"
}

ensure_nextest() {
  if ! cargo nextest --version >/dev/null 2>&1; then
    echo "installing cargo-nextest from crates.io" >&2
    cargo install --locked cargo-nextest >/dev/null
  fi
}

# The router's other real clients: sysbench from Debian (linked with
# libmariadb, whose caching_sha2_password plugin it uses) and PyMySQL (with
# cryptography, for caching_sha2's RSA exchange) from PyPI in a venv under
# target/pyclients. Called by ensure_node_clients, so scripts/test gets them.
ensure_router_clients() {
  local repo=$1
  if ! command -v sysbench >/dev/null; then
    echo "installing sysbench from Debian" >&2
    apt_install sysbench
  fi
  local venv="$repo/target/pyclients"
  if ! "$venv/bin/python" -c 'import pymysql, cryptography' >/dev/null 2>&1; then
    echo "installing PyMySQL into $venv" >&2
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
      apt_install python3-venv
    fi
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check PyMySQL cryptography >/dev/null
  fi
}

# Chromium and its WebDriver server from Debian, for the dashboard's test
# in a real headless browser (tests/tests/router_dashboard.rs drives
# chromedriver over the W3C WebDriver protocol). Called by scripts/test.
ensure_browser() {
  if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    echo "installing chromium and chromium-driver from Debian" >&2
    apt_install chromium chromium-driver
  fi
}

# What scripts/package uses beyond dpkg-deb and gzip (always there on
# Debian): groff to check the man pages, readelf and objdump (binutils,
# there wherever cargo links) for the packages' Depends.
ensure_package_tools() {
  if ! command -v groff >/dev/null; then
    echo "installing groff-base from Debian" >&2
    apt_install groff-base
  fi
  if ! command -v readelf >/dev/null || ! command -v objdump >/dev/null; then
    echo "installing binutils from Debian" >&2
    apt_install binutils
  fi
}
