# shellcheck shell=bash disable=SC2034  # variables are used by the sourcing scripts
# Shared settings and helpers for the Switchyard deploy/bench scripts.
# Source it (". deploy/lib.sh"); it defines variables and functions only.

# Repository root, whichever script sourced us.
SWITCHYARD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Everything the test cluster owns lives under BASE so it can be wiped safely.
BASE="${SWITCHYARD_PG_DIR:-/tmp/switchyard-pg}"
PRIMARY_DIR="$BASE/primary"
REPLICA_DIR="$BASE/replica"
REPLICA2_DIR="$BASE/replica2"
SOCKET_DIR="$BASE/run"
PGPASS_FILE="$BASE/pgpass"
# Marker file: we only ever rm -rf a BASE that contains it (or that is empty).
BASE_MARKER="$BASE/.switchyard-pg"

PG_HOST=127.0.0.1
PRIMARY_PORT="${SWITCHYARD_PRIMARY_PORT:-15432}"
REPLICA_PORT="${SWITCHYARD_REPLICA_PORT:-15433}"
REPLICA2_PORT="${SWITCHYARD_REPLICA2_PORT:-15434}"
PROXY_PORT=6432
PGBOUNCER_PORT=16432

# Always call PostgreSQL binaries by full path: /usr/bin/psql etc. are
# Debian's pg_wrapper and /usr/local/bin/pg_ctl may be a wrapper too.
PG_BIN=/usr/lib/postgresql/15/bin
PGBOUNCER_BIN=/usr/sbin/pgbouncer

# Roles created by cluster.sh (name:password); documented here for other scripts.
APP_USER=app
APP_PASSWORD=app-secret

# Debian packages the scripts rely on, and a file each one provides (cheap check).
_SY_PACKAGES=(
  "postgresql-15:$PG_BIN/postgres"
  "postgresql-client-15:$PG_BIN/psql"
  "postgresql-contrib:"
  "pgbouncer:$PGBOUNCER_BIN"
  "python3-psycopg:"
  "curl:/usr/bin/curl"
)

log()  { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die()  { printf 'error: %s\n' "$*" >&2; exit 1; }
section() { printf '\n========== %s ==========\n' "$*" >&2; }

# Run a command as the postgres OS user: initdb/pg_ctl/pgbouncer refuse root.
# cd / first because runuser keeps the cwd, which postgres may not be able to
# read (initdb then fails with "could not identify current directory").
as_postgres() {
  if [ "$(id -un)" = postgres ]; then
    (cd / && "$@")
  elif [ "$(id -u)" -eq 0 ]; then
    (cd / && runuser -u postgres -- "$@")
  elif command -v sudo >/dev/null 2>&1; then
    (cd / && sudo -n -u postgres -- "$@")
  else
    die "need root (or sudo) to run commands as the postgres user"
  fi
}

# Run a command as root (apt-get); plain when we are root, else via sudo.
_as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
  else die "need root (or sudo) to install packages: $*"
  fi
}

_pkg_installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

# Install whatever is missing from _SY_PACKAGES. No apt-get at all when
# everything is present, so repeated runs are fast and offline-safe.
ensure_packages() {
  local entry pkg file missing=() fresh_pgbouncer=0
  for entry in "${_SY_PACKAGES[@]}"; do
    pkg="${entry%%:*}"; file="${entry#*:}"
    if ! _pkg_installed "$pkg" || { [ -n "$file" ] && [ ! -e "$file" ]; }; then
      missing+=("$pkg")
    fi
  done
  # psycopg must be importable by the Debian python the tests will use.
  if ! /usr/bin/python3 -c 'import psycopg' >/dev/null 2>&1; then
    case " ${missing[*]-} " in *" python3-psycopg "*) ;; *) missing+=(python3-psycopg) ;; esac
  fi
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  case " ${missing[*]} " in *" pgbouncer "*) fresh_pgbouncer=1 ;; esac
  log "installing missing packages: ${missing[*]}"
  _as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null \
    || die "apt-get update failed"
  _as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
      "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
  # Debian's pgbouncer package starts a system service on 127.0.0.1:6432 when
  # the init system allows it; that is the Switchyard port, so stop the
  # service we just caused to start (we run our own pgbouncer on 16432).
  if [ "$fresh_pgbouncer" = 1 ] && port_in_use "$PROXY_PORT"; then
    warn "stopping the Debian pgbouncer service (it would occupy port $PROXY_PORT)"
    _as_root systemctl stop pgbouncer >/dev/null 2>&1 \
      || _as_root service pgbouncer stop >/dev/null 2>&1 || true
  fi
  log "packages installed"
}

# Swift itself comes with the machine (/opt/swift); nothing else is needed to
# build (swift-nio/-crypto vendor their C code). Just make sure it is on PATH.
ensure_swift_build_deps() {
  if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
    export PATH="$PATH:/opt/swift/usr/bin"
  fi
  command -v swift >/dev/null 2>&1 \
    || die "swift not found on PATH (expected a toolchain in /opt/swift/usr/bin)"
}

# Python that can import psycopg 3 (tests drive Postgres clients through it).
# Prefer Debian's /usr/bin/python3 + python3-psycopg over pyenv shims.
find_test_python() {
  local py
  for py in /usr/bin/python3 "$(command -v python3 2>/dev/null || true)"; do
    if [ -n "$py" ] && [ -x "$py" ] && "$py" -c 'import psycopg' >/dev/null 2>&1; then
      printf '%s\n' "$py"; return 0
    fi
  done
  return 1
}

# True if something accepts TCP connections on 127.0.0.1:$1.
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Print the last lines of a log file to stderr (used on failures).
show_log_tail() {
  local f="$1" n="${2:-40}"
  if [ -f "$f" ]; then
    printf -- '----- last %s lines of %s -----\n' "$n" "$f" >&2
    tail -n "$n" "$f" >&2
    printf -- '-----\n' >&2
  fi
}

# Build the release proxy binary. First build compiles all dependencies and
# takes several minutes; later builds are incremental.
build_switchyard_release() {
  ensure_swift_build_deps
  log "building switchyard (release; the first build takes several minutes)..."
  if ! (cd "$SWITCHYARD_ROOT" && timeout "${BUILD_TIMEOUT:-3600}" \
          swift build -c release --product switchyard); then
    die "swift build -c release --product switchyard failed (see output above)"
  fi
  SWITCHYARD_BIN="$SWITCHYARD_ROOT/.build/release/switchyard"
  [ -x "$SWITCHYARD_BIN" ] || die "build succeeded but $SWITCHYARD_BIN is missing"
}
