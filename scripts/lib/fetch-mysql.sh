# shellcheck shell=bash
# Fetches MySQL (server + client) and the runtime libraries it needs from
# Debian's unstable suite into a private folder, without touching the system:
# a private apt state, `apt-get download`, then `dpkg -x` of every package.
# Sourced by scripts/sandbox; defines fetch_mysql and the MYSQL_* paths.

: "${CAUSEWAY_CACHE:=${XDG_CACHE_HOME:-$HOME/.cache}/causeway}"
MYSQL_ROOT="$CAUSEWAY_CACHE/mysql-root"
MYSQL_LIBPATH="$MYSQL_ROOT/usr/lib/x86_64-linux-gnu:$MYSQL_ROOT/lib/x86_64-linux-gnu"

# The loader of the fetched libc: every MySQL binary runs through it so that
# it uses the fetched libraries and never the system's.
mysql_loader() {
  local l
  for l in "$MYSQL_ROOT/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" \
           "$MYSQL_ROOT/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" \
           "$MYSQL_ROOT/usr/lib64/ld-linux-x86-64.so.2"; do
    [ -e "$l" ] && { echo "$l"; return 0; }
  done
  return 1
}

# Runs a fetched MySQL binary: mysql_run usr/sbin/mysqld --version
mysql_run() {
  local bin=$1; shift
  "$(mysql_loader)" --library-path "$MYSQL_LIBPATH" "$MYSQL_ROOT/$bin" "$@"
}

# The machine's own Debian mirror, read from its apt sources (deb822 or
# one-line form). Prints the first URI that serves the main archive.
debian_mirror() {
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    uri=$(awk 'tolower($1)=="uris:" {u=$2} tolower($1)=="suites:" && u!="" && $0 !~ /-security/ {print u; exit}' "$f")
    [ -n "$uri" ] && { echo "$uri"; return 0; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    uri=$(awk '$1=="deb" && $0 !~ /-security/ { for (i=2;i<=NF;i++) if ($i ~ /^(https?|ftp|file):/) {print $i; exit} }' "$f")
    [ -n "$uri" ] && { echo "$uri"; return 0; }
  done
  return 1
}

fetch_fail() {
  echo "sandbox: fetching MySQL failed: $*" >&2
  echo "sandbox: nothing was installed; fix the cause (network to the Debian mirror?) and run the same command again to retry." >&2
  exit 1
}

# Downloads and unpacks MySQL once. A second call is offline and instant.
fetch_mysql() {
  if [ -f "$MYSQL_ROOT/.complete" ]; then
    return 0
  fi
  local apt="$CAUSEWAY_CACHE/apt" mirror keyring
  mirror=$(debian_mirror) || fetch_fail "no Debian mirror found in /etc/apt/sources.list{,.d}"
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  [ -r "$keyring" ] || fetch_fail "missing $keyring (package debian-archive-keyring)"
  echo "sandbox: fetching MySQL from Debian's unstable suite (once; cached in $CAUSEWAY_CACHE)" >&2
  rm -rf "$apt"
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/debs"
  echo "deb [signed-by=$keyring] $mirror sid main" > "$apt/sources.list"
  local opts=(-o "Dir::State=$apt" -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache"
    -o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::status=/dev/null" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
  apt-get "${opts[@]}" -q update >"$apt/update.log" 2>&1 \
    || fetch_fail "apt-get update of the sid suite on $mirror (log: $apt/update.log)"
  local cand
  cand=$(apt-cache "${opts[@]}" policy mysql-server-core 2>/dev/null | awk '/Candidate:/ {print $2}')
  if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
    echo "sandbox: Debian's unstable suite no longer carries mysql-server-core; the sandbox needs another source of MySQL 8.4+ (see scripts/lib/fetch-mysql.sh)" >&2
    exit 1
  fi
  # The runtime closure of the two packages, resolved from the metadata:
  # every library package they depend on, recursively, but no perl, no
  # virtual packages and no data-only packages.
  local pkgs
  pkgs=$(apt-cache "${opts[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
      --no-breaks --no-replaces --no-enhances mysql-server-core mysql-client-core 2>/dev/null \
    | grep -v '^ ' | grep -v '^<' | sort -u \
    | grep -E '^(lib|zlib1g$|mysql-server-core$|mysql-client-core$)' | grep -v '^libperl') \
    || fetch_fail "resolving the dependencies of mysql-server-core"
  echo "sandbox: MySQL $cand and $(echo "$pkgs" | wc -l) packages" >&2
  # shellcheck disable=SC2086
  (cd "$apt/debs" && apt-get "${opts[@]}" -q download $pkgs >"$apt/download.log" 2>&1) \
    || fetch_fail "apt-get download (log: $apt/download.log)"
  local tmp="$MYSQL_ROOT.tmp.$$" deb
  rm -rf "$tmp"
  mkdir -p "$tmp"
  for deb in "$apt/debs"/*.deb; do
    dpkg -x "$deb" "$tmp" || fetch_fail "dpkg -x $deb"
  done
  rm -rf "$MYSQL_ROOT"
  mv "$tmp" "$MYSQL_ROOT"
  MYSQL_ROOT_VERSION=$cand
  echo "$cand" > "$MYSQL_ROOT/.complete"
  rm -rf "$apt/debs" "$apt/cache" "$apt/lists"
  mysql_loader >/dev/null || fetch_fail "no ld-linux-x86-64.so.2 in the fetched libc6"
}
