#!/usr/bin/env bash
# Shared by the benchmark drivers in bench/ (sourced, not run): settings, the processes they start
# (PgBouncer, Switchyard instances), pgbench runs and the table helpers. Each driver measures one thing:
#   throughput.sh    pgbench through Switchyard vs direct vs PgBouncer (vs BASELINE_BIN), interleaved
#   read-heavy.sh    a 90% read mix with default_route = auto vs primary, and each server's share
#   allocations.sh   heap allocations per transaction in the proxy (malloc-counting LD_PRELOAD shim)
#   classifier.sh    the statement classifier's cost (switchyard benchmark-classifier)
#   idle-clients.sh  proxy RSS per idle client, Switchyard beside PgBouncer
# pgbench-compare.sh runs them all in one go.
#
# Environment knobs (defaults in brackets):
#   DURATION [15]   seconds per pgbench -T run
#   CLIENTS [16]    pgbench -c;   JOBS [2]  pgbench -j
#   MODES ["simple extended prepared"]          pgbench -M values (all drivers)
#   WORKLOADS ["select-only tpcb-like read-heavy"]
#                   pgbench -b builtin scripts for throughput.sh; "read-heavy" lets pgbench-compare.sh run read-heavy.sh
#   SKIP_SWITCHYARD=1, SKIP_ALLOC=1, SKIP_CLASSIFIER=1, SKIP_IDLE=1   (pgbench-compare.sh) leave drivers out
#   SWITCHYARD_CONFIG [<repo>/proxy.conf]       config copied for the proxy (listen_port is rewritten)
#   COMPARE_ROUTE [primary]                     default_route of the throughput instance (like for like)
#   PROXY_PORT [6432], PGBOUNCER_PORT [16432]   where Switchyard / pgbouncer listen
#   PRIMARY_ONLY_PORT [PROXY_PORT+1]            Switchyard with default_route = primary (read-heavy.sh)
#   ALLOC_PORT [PROXY_PORT+2]                   Switchyard under the malloc counter (allocations.sh)
#   STATS_SETTLE [2]    seconds to wait for backends to exit before reading pg_stat_database
#   CLASSIFIER_ITERATIONS [200000]
#   ALLOC_TRANSACTIONS [5000] per client, ALLOC_CLIENTS [4],
#   ALLOC_ROUTE [primary] (default_route of the counted instance: primary|auto)
#   IDLE_CLIENTS [10000] connections held open by idle-clients.sh
#   SWITCHYARD_BIN=...  use this prebuilt binary instead of building one
#   BASELINE_BIN=...    another switchyard binary (an earlier commit, say) run beside the current one, same
#                       config, on BASELINE_PORT [PROXY_PORT+3]: the "baseline" column and sy/base ratio
#   KEEP_LOGS=1         keep the temp dir with configs and raw pgbench output
#   KEEP_CLUSTER=1      leave the cluster running even if this script started it
#
# Everything runs on one machine: pgbench, the poolers and PostgreSQL compete
# for the same cores, so compare ratios, not absolute numbers.
set -euo pipefail
# Sourced once, however many drivers pgbench-compare.sh loads.
[ -z "${BENCH_LIB_LOADED-}" ] || return 0
BENCH_LIB_LOADED=1

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# environment wins (so runs can avoid ports other runs are using).
_env_proxy_port="${PROXY_PORT-}"
_env_pgbouncer_port="${PGBOUNCER_PORT-}"
# shellcheck source=deploy/lib.sh
. "$BENCH_DIR/../deploy/lib.sh"
PROXY_PORT="${_env_proxy_port:-$PROXY_PORT}"
PGBOUNCER_PORT="${_env_pgbouncer_port:-$PGBOUNCER_PORT}"
[[ "$PROXY_PORT" =~ ^[1-9][0-9]*$ ]] || die "PROXY_PORT must be a port number (got '$PROXY_PORT')"

DURATION="${DURATION:-15}"
CLIENTS="${CLIENTS:-16}"
JOBS="${JOBS:-2}"
MODES="${MODES:-simple extended prepared}"
WORKLOADS="${WORKLOADS:-select-only tpcb-like read-heavy}"
SKIP_SWITCHYARD="${SKIP_SWITCHYARD:-0}"
SKIP_CLASSIFIER="${SKIP_CLASSIFIER:-0}"
SKIP_ALLOC="${SKIP_ALLOC:-0}"
SKIP_IDLE="${SKIP_IDLE:-0}"
SWITCHYARD_CONFIG="${SWITCHYARD_CONFIG:-$SWITCHYARD_ROOT/proxy.conf}"
PRIMARY_ONLY_PORT="${PRIMARY_ONLY_PORT:-$((PROXY_PORT + 1))}"
ALLOC_PORT="${ALLOC_PORT:-$((PROXY_PORT + 2))}"
STATS_SETTLE="${STATS_SETTLE:-2}"
CLASSIFIER_ITERATIONS="${CLASSIFIER_ITERATIONS:-200000}"
ALLOC_TRANSACTIONS="${ALLOC_TRANSACTIONS:-5000}"
ALLOC_CLIENTS="${ALLOC_CLIENTS:-4}"
ALLOC_ROUTE="${ALLOC_ROUTE:-primary}"
STARTUP_TIMEOUT=30                  # seconds for a pooler to accept queries
REPLICA_WAIT=20                     # seconds for Switchyard to start routing reads to the replica
RUN_TIMEOUT=$((DURATION + 60))      # hard cap per pgbench -T run
ALLOC_TIMEOUT=300                   # hard cap per pgbench -t run in section 4
CLASSIFIER_TIMEOUT=600              # hard cap for benchmark-classifier

for v in DURATION CLIENTS JOBS PROXY_PORT PGBOUNCER_PORT PRIMARY_ONLY_PORT ALLOC_PORT \
         CLASSIFIER_ITERATIONS ALLOC_TRANSACTIONS ALLOC_CLIENTS; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[[ "$STATS_SETTLE" =~ ^[0-9]+$ ]] || die "STATS_SETTLE must be a whole number of seconds (got '$STATS_SETTLE')"
case "$ALLOC_ROUTE" in primary|auto) ;; *) die "ALLOC_ROUTE must be primary or auto (got '$ALLOC_ROUTE')" ;; esac
[ "$JOBS" -le "$CLIENTS" ] || JOBS="$CLIENTS"   # pgbench rejects -j > -c
ALLOC_JOBS=$(( JOBS < ALLOC_CLIENTS ? JOBS : ALLOC_CLIENTS ))

# The table runs the builtin workloads; "read-heavy" is section 2 only.
TABLE_WORKLOADS=""
READ_HEAVY=0
for w in $WORKLOADS; do
  if [ "$w" = read-heavy ]; then READ_HEAVY=1; else TABLE_WORKLOADS="${TABLE_WORKLOADS:+$TABLE_WORKLOADS }$w"; fi
done
# 90% of transactions are select-only (one autocommit SELECT: a replica read
# under default_route = auto), 10% simple-update (BEGIN; UPDATE; SELECT;
# INSERT; END: one read-write transaction, always on the primary). Builtin
# scripts with pgbench's @weight, so pgbench itself detects the scale.
READ_HEAVY_SCRIPTS=(-b select-only@9 -b simple-update@1)

BASELINE_BIN="${BASELINE_BIN:-}"
BASELINE_PORT="${BASELINE_PORT:-$((PROXY_PORT + 3))}"
TARGETS=(direct switchyard pgbouncer)
declare -A TARGET_PORT=([direct]="$PRIMARY_PORT" [switchyard]="$PROXY_PORT" [pgbouncer]="$PGBOUNCER_PORT" [baseline]="$BASELINE_PORT")
if [ -n "$BASELINE_BIN" ]; then
  [ -x "$BASELINE_BIN" ] || die "BASELINE_BIN $BASELINE_BIN is not an executable"
  TARGETS=(direct switchyard baseline pgbouncer)
fi
declare -A TPS=() LAT=() ERR=() XACTS=() MIX=() CPU_US=()
declare -A INSTANCE_PID=() INSTANCE_LOG=() LOG_SHOWN=()
declare -A RH_PRIMARY=() RH_REPLICA=() RH_NOTE=()
CLASSIFIER_LINES=()
ALLOC_LINES=()

SY_DEBUG_NOTE=""
WORK=""
PGBENCH_PID=""
PGB_PID_FILE=""
STARTED_CLUSTER=0
IDLE_CLIENTS="${IDLE_CLIENTS:-10000}"
[[ "$IDLE_CLIENTS" =~ ^[1-9][0-9]*$ ]] || die "IDLE_CLIENTS must be a positive integer (got '$IDLE_CLIENTS')"

# kill -0 also succeeds for zombies, which pid 1 of a container may reap late.
alive() {
  kill -0 "$1" 2>/dev/null && [ "$(sed -E 's/.*\) (.).*/\1/' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

# The resident memory of process PID in KB (0 once it is gone).
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# Nanoseconds all threads of PID have spent on a CPU (user and kernel): the steady figure on a noisy
# machine where perf's instruction counters are not supported. 0 when PID is gone.
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f", s + 0 }'; }
# The PID whose CPU a run through TARGET costs: the proxy's own, or PgBouncer's.
pooler_pid() {
  case "$1" in
    switchyard) echo "${INSTANCE_PID[main]-}" ;;
    baseline) echo "${INSTANCE_PID[baseline]-}" ;;
    pgbouncer) [ -n "$PGB_PID_FILE" ] && cat "$PGB_PID_FILE" 2>/dev/null || true ;;
  esac
}

# TERM, up to 10 s to drain, then KILL. Only for children of this shell.
stop_child() {
  local pid="$1"
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 20); do alive "$pid" || break; sleep 0.5; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true   # its exit status is not ours (set -e)
}

stop_pgbouncer() {
  local pid
  if [ -n "$PGB_PID_FILE" ] && [ -s "$PGB_PID_FILE" ]; then
    pid="$(cat "$PGB_PID_FILE")"
    # Only signal the pid if it really is our pgbouncer.
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = pgbouncer ]; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 20); do alive "$pid" || break; sleep 0.5; done
      if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
  fi
  PGB_PID_FILE=""
}

cleanup() {
  local rc=$? name
  set +e
  if [ -n "$PGBENCH_PID" ]; then
    kill -TERM "$PGBENCH_PID" 2>/dev/null   # timeout passes it on to pgbench
    wait "$PGBENCH_PID" 2>/dev/null
  fi
  for name in "${!INSTANCE_PID[@]}"; do
    stop_child "${INSTANCE_PID[$name]}"
  done
  stop_pgbouncer
  if [ "$STARTED_CLUSTER" = 1 ] && [ "${KEEP_CLUSTER:-0}" != 1 ]; then
    bash "$SWITCHYARD_ROOT/deploy/cluster.sh" stop
  fi
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    if [ "${KEEP_LOGS:-0}" = 1 ]; then log "logs kept in $WORK"; else rm -rf "$WORK"; fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# psql as app; prints the single value of a one-row query.
sql_value() {
  local port="$1" db="$2" query="$3"
  PGPASSWORD="$APP_PASSWORD" PGCONNECT_TIMEOUT=3 timeout 10 "$PG_BIN/psql" -X -q \
    -h "$PG_HOST" -p "$port" -U "$APP_USER" -d "$db" -Atc "$query" 2>/dev/null
}

# Poll until "select 1" works through host:port as app; give up after
# STARTUP_TIMEOUT seconds or as soon as the process behind it dies.
wait_for_sql() {
  local name="$1" port="$2" logf="$3" pid="${4:-}" deadline=$((SECONDS + STARTUP_TIMEOUT))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if [ "$(sql_value "$port" bench 'select 1')" = 1 ]; then
      return 0
    fi
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      show_log_tail "$logf"
      die "$name exited during startup"
    fi
    sleep 0.5
  done
  show_log_tail "$logf"
  die "$name did not accept 'select 1' on $PG_HOST:$port within ${STARTUP_TIMEOUT}s"
}

start_pgbouncer() {
  if port_in_use "$PGBOUNCER_PORT"; then
    die "port $PGBOUNCER_PORT is already in use; stop whatever listens there (or set PGBOUNCER_PORT)"
  fi
  cat >"$WORK/userlist.txt" <<EOF
"$APP_USER" "$APP_PASSWORD"
EOF
  cat >"$WORK/pgbouncer.ini" <<EOF
[databases]
bench = host=$PG_HOST port=$PRIMARY_PORT dbname=bench

[pgbouncer]
listen_addr = $PG_HOST
listen_port = $PGBOUNCER_PORT
unix_socket_dir = $WORK
auth_type = scram-sha-256
auth_file = $WORK/userlist.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = ${PGB_MAX_CLIENT_CONN:-200}
logfile = $WORK/pgbouncer.log
pidfile = $WORK/pgbouncer.pid
EOF
  PGB_PID_FILE="$WORK/pgbouncer.pid"
  # pgbouncer refuses to run as root: run it as postgres, daemonized (-d);
  # it writes its pid file, which cleanup() uses to stop it.
  chown -R postgres:postgres "$WORK"
  chmod 600 "$WORK/userlist.txt"
  log "starting pgbouncer on $PG_HOST:$PGBOUNCER_PORT (as user postgres)"
  # runuser's PAM session resets the soft descriptor limit to 1024: raise it to the hard one again.
  if ! as_postgres bash -c 'ulimit -n "$(ulimit -Hn)"; exec timeout 30 "$0" -d -q "$1"' "$PGBOUNCER_BIN" "$WORK/pgbouncer.ini"; then
    show_log_tail "$WORK/pgbouncer.log"
    die "pgbouncer failed to start"
  fi
  wait_for_sql pgbouncer "$PGBOUNCER_PORT" "$WORK/pgbouncer.log"
}

# Copy of SWITCHYARD_CONFIG with some [switchyard] keys replaced:
#   write_config OUT key=value...
# Existing lines for those keys are dropped from every [switchyard] section
# (duplicate keys are an error) and the new values appended in a [switchyard]
# section of their own (a section may appear more than once).
write_config() {
  local out="$1" kv keys=""; shift
  # Several proxies run side by side: none of them serves metrics (proxy.conf's port would clash).
  set -- "$@" "metrics_port=0"
  for kv in "$@"; do keys="$keys ${kv%%=*}"; done
  awk -v keys="$keys" '
    BEGIN { n = split(keys, k, " "); for (i = 1; i <= n; i++) drop[tolower(k[i])] = 1 }
    /^[ \t]*\[/ { s = $0; sub(/^[ \t]*\[[ \t]*/, "", s); sub(/[ \t]*\].*$/, "", s); section = tolower(s) }
    section == "switchyard" && /^[ \t]*[A-Za-z_]+[ \t]*=/ {
      key = $0; sub(/[ \t]*=.*$/, "", key); gsub(/[ \t]/, "", key)
      if (tolower(key) in drop) next
    }
    { print }
  ' "$SWITCHYARD_CONFIG" >"$out"
  {
    printf '\n[switchyard]\n; written by bench/lib.sh (write_config)\n'
    for kv in "$@"; do printf '%s = %s\n' "${kv%%=*}" "${kv#*=}"; done
  } >>"$out"
}

# start_switchyard NAME PORT CONFIG [VAR=value...]: runs the binary with the
# given environment (e.g. LD_PRELOAD) and waits until it answers on PORT.
start_switchyard() {
  local name="$1" port="$2" conf="$3" logf="$WORK/switchyard-$1.log"; shift 3
  if port_in_use "$port"; then
    die "port $port is already in use (is deploy/local-up.sh running? set PROXY_PORT / PRIMARY_ONLY_PORT / ALLOC_PORT)"
  fi
  log "starting switchyard '$name' on $PG_HOST:$port ($(basename "$conf"))"
  (cd "$SWITCHYARD_ROOT" && exec env "$@" "$SWITCHYARD_BIN" run --config "$conf") >"$logf" 2>&1 &
  INSTANCE_PID[$name]=$!
  INSTANCE_LOG[$name]="$logf"
  wait_for_sql "switchyard '$name'" "$port" "$logf" "${INSTANCE_PID[$name]}"
}

stop_switchyard() {
  local name="$1"
  [ -n "${INSTANCE_PID[$name]-}" ] || return 0
  stop_child "${INSTANCE_PID[$name]}"
  unset "INSTANCE_PID[$name]"
}

# With default_route = auto, `select pg_is_in_recovery()` is a read-only
# autocommit statement: it answers t once Switchyard routes reads to the replica.
wait_for_replica_routing() {
  local name="$1" port="$2" deadline=$((SECONDS + REPLICA_WAIT))
  while [ "$SECONDS" -lt "$deadline" ]; do
    [ "$(sql_value "$port" bench 'select pg_is_in_recovery()')" = t ] && return 0
    sleep 0.5
  done
  warn "switchyard '$name' still sends reads to the primary after ${REPLICA_WAIT}s (replica unhealthy or lagging?)"
  return 1
}

# run_pgbench_raw KEY LABEL PORT INSTANCE LIMIT -- pgbench options...
# One pgbench run against PORT (as app, database bench); fills TPS/LAT/XACTS
# (and MIX for several scripts) or ERR for KEY. INSTANCE names the Switchyard
# instance behind PORT, if any, for error reports.
run_pgbench_raw() {
  local key="$1" label="$2" port="$3" instance="$4" limit="$5" rc tps lat err xacts pid raw cpu_pid cpu_before=0
  shift 6
  cpu_pid="$(pooler_pid "${key##*|}")"
  [ -n "$cpu_pid" ] && cpu_before="$(cpu_ns "$cpu_pid")"
  raw="$WORK/pgbench-${key//[^A-Za-z0-9_.-]/_}.log"
  rc=0
  # In the background + wait, so Ctrl-C/TERM run the traps at once (bash defers
  # traps while a foreground child runs, and timeout's own process group does
  # not receive the terminal's Ctrl-C); cleanup() kills PGBENCH_PID.
  PGPASSWORD="$APP_PASSWORD" PGCONNECT_TIMEOUT=10 timeout -k 5 "$limit" \
    "$PG_BIN/pgbench" -h "$PG_HOST" -p "$port" -U "$APP_USER" -n "$@" bench >"$raw" 2>&1 &
  PGBENCH_PID=$!
  wait "$PGBENCH_PID" || rc=$?
  PGBENCH_PID=""
  tps="$(awk '/^tps = /{print $3; exit}' "$raw")"
  lat="$(awk '/^latency average = /{print $4; exit}' "$raw")"
  # "number of transactions actually processed: 20000/20000" (-t) or ": 12345" (-T)
  xacts="$(awk -F': ' '/^number of transactions actually processed/{split($2, a, "/"); print a[1]; exit}' "$raw")"
  if [ "$rc" -eq 0 ] && [ -n "$tps" ] && [ -n "$lat" ] && [ -n "$xacts" ]; then
    TPS[$key]="$tps"; LAT[$key]="$lat"; XACTS[$key]="$xacts"
    if [ -n "$cpu_pid" ] && [ "$xacts" -gt 0 ]; then
      CPU_US[$key]="$(awk -v a="$cpu_before" -v b="$(cpu_ns "$cpu_pid")" -v n="$xacts" 'BEGIN { printf "%.1f", (b - a) / n / 1000 }')"
    fi
    # With several scripts: " - 12345 transactions (90.1% of total, tps = ...)" per script.
    MIX[$key]="$(awk '/^ - [0-9]+ transactions \(/{sub(/^.*\(/, ""); sub(/ of total.*/, ""); printf "%s%s", sep, $0; sep = "/"}' "$raw")"
    printf '    %-16s %10.0f tps  %8.3f ms\n' "$label" "$tps" "$lat" >&2
  else
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
      err="timed out after ${limit}s"
    else
      err="$(grep -m1 -iE 'error|fatal|abort' "$raw" || tail -n 1 "$raw")"
      err="${err:-pgbench exit code $rc, no output}"
    fi
    pid=""
    if [ -n "$instance" ]; then pid="${INSTANCE_PID[$instance]-}"; fi
    if [ -n "$pid" ] && ! alive "$pid"; then
      err="$err (switchyard '$instance' has exited)"
      if [ -z "${LOG_SHOWN[$instance]-}" ]; then show_log_tail "${INSTANCE_LOG[$instance]}" 20; fi
      LOG_SHOWN[$instance]=1
    fi
    ERR[$key]="$err"
    printf '    %-16s failed: %s\n' "$label" "$err" >&2
  fi
}

# One run of the comparison table, key "workload|mode|target".
run_pgbench() {
  local workload="$1" mode="$2" target="$3" instance=""
  [ "$target" = switchyard ] && instance=main
  [ "$target" = baseline ] && instance=baseline
  run_pgbench_raw "$1|$2|$3" "$target" "${TARGET_PORT[$target]}" "$instance" "$RUN_TIMEOUT" -- \
    -c "$CLIENTS" -j "$JOBS" -T "$DURATION" -M "$mode" -b "$workload"
}

fmt_tps() { if [ -n "${TPS[$1]-}" ]; then printf '%.0f' "${TPS[$1]}"; else printf '%s' "$2"; fi; }
fmt_lat() { if [ -n "${LAT[$1]-}" ]; then printf '%.3f' "${LAT[$1]}"; else printf '%s' "$2"; fi; }
ratio() {
  if [ -n "${TPS[$1]-}" ] && [ -n "${TPS[$2]-}" ]; then
    awk -v a="${TPS[$1]}" -v b="${TPS[$2]}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'
  else printf -- '-'; fi
}

print_errors() {
  if [ "${#ERR[@]}" -gt 0 ]; then
    echo
    echo "Failed runs (first error line):"
    for key in "${!ERR[@]}"; do
      printf '  %-32s %s\n' "${key//|/ }" "${ERR[$key]}"
    done | sort
  fi
}


# Builds (or takes SWITCHYARD_BIN), starts the cluster if needed, makes the work directory.
bench_prepare() {
  section "Preparing"
  ensure_packages
  if [ "$SKIP_SWITCHYARD" != 1 ]; then
    [ -f "$SWITCHYARD_CONFIG" ] || die "Switchyard config not found: $SWITCHYARD_CONFIG (set SWITCHYARD_CONFIG, or SKIP_SWITCHYARD=1)"
    if [ -n "${SWITCHYARD_BIN:-}" ]; then
      [ -x "$SWITCHYARD_BIN" ] || die "SWITCHYARD_BIN=$SWITCHYARD_BIN is not an executable"
      log "using prebuilt $SWITCHYARD_BIN (no build)"
    else
      build_switchyard_release   # dies with a clear message if the build fails
    fi
    # A debug binary says so on the first line of benchmark-classifier.
    sy_probe="$(timeout 60 "$SWITCHYARD_BIN" benchmark-classifier --iterations 1 2>/dev/null || true)"
    if [[ "$sy_probe" == *"debug build"* ]]; then
      SY_DEBUG_NOTE=" [DEBUG BUILD: figures not meaningful]"
      warn "$SWITCHYARD_BIN is a debug build: fine for trying the script, not for figures"
    fi
  fi

  if bash "$SWITCHYARD_ROOT/deploy/cluster.sh" status >/dev/null 2>&1; then
    log "using the running cluster in $BASE"
  else
    bash "$SWITCHYARD_ROOT/deploy/cluster.sh" start
    STARTED_CLUSTER=1
  fi

  WORK="$(mktemp -d /tmp/switchyard-bench.XXXXXX)"
  chmod 755 "$WORK"
}

bench_versions() {
  section "Versions"
  "$PGBOUNCER_BIN" --version 2>/dev/null | sed -n 1p   # not head: SIGPIPE + pipefail
  "$PG_BIN/postgres" --version
  "$PG_BIN/pgbench" --version
  if [ "$SKIP_SWITCHYARD" = 1 ]; then sy_what="skipped"; else sy_what="$SWITCHYARD_BIN$SY_DEBUG_NOTE"; fi
  echo "switchyard: $(git -C "$SWITCHYARD_ROOT" describe --always --dirty 2>/dev/null || echo 'no commits yet') ($sy_what)"
  echo "cpus: $(nproc); pgbouncer: pool_mode=transaction default_pool_size=20; switchyard: see $(basename "$SWITCHYARD_CONFIG")"
}
