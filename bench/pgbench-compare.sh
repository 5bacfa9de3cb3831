#!/usr/bin/env bash
# Throughput/latency comparison: pgbench straight to PostgreSQL vs through
# Switchyard vs through pgbouncer (transaction pooling), interleaved so all
# three see the same machine state. This is a benchmark, not a test: it
# prints tables and only fails if the setup itself fails.
#
# Sections, in order:
#   1. the comparison table (select-only, tpcb-like; direct / switchyard / pgbouncer)
#   2. read-heavy routing: a 90% read / 10% write mix through Switchyard with
#      default_route = auto (reads to the replica) vs default_route = primary,
#      and the share of transactions each server committed in the auto run
#   3. the statement classifier's cost (`switchyard benchmark-classifier`)
#   4. heap allocations per transaction in Switchyard (malloc-counting LD_PRELOAD shim)
#
# Environment knobs (defaults in brackets):
#   DURATION [15]   seconds per pgbench -T run
#   CLIENTS [16]    pgbench -c;   JOBS [2]  pgbench -j
#   MODES ["simple extended prepared"]          pgbench -M values (all sections)
#   WORKLOADS ["select-only tpcb-like read-heavy"]
#                   pgbench -b builtin scripts for the table; "read-heavy" enables section 2
#   SWITCHYARD_CONFIG [<repo>/proxy.conf]       config copied for the proxy (listen_port is rewritten)
#   COMPARE_ROUTE [primary]                     default_route of the table's Switchyard (like for like)
#   PROXY_PORT [6432], PGBOUNCER_PORT [16432]   where Switchyard / pgbouncer listen
#   PRIMARY_ONLY_PORT [PROXY_PORT+1]            Switchyard with default_route = primary (section 2)
#   ALLOC_PORT [PROXY_PORT+2]                   Switchyard under the malloc counter (section 4)
#   STATS_SETTLE [2]    seconds to wait for backends to exit before reading pg_stat_database
#   SKIP_CLASSIFIER=1   skip section 3;  CLASSIFIER_ITERATIONS [200000]
#   SKIP_ALLOC=1        skip section 4;  ALLOC_TRANSACTIONS [5000] per client, ALLOC_CLIENTS [4],
#                       ALLOC_ROUTE [primary] (default_route of the counted instance: primary|auto)
#   SKIP_SWITCHYARD=1   skip building/running Switchyard (columns say "skipped"; sections 2-4 skipped)
#   SWITCHYARD_BIN=...  use this prebuilt binary instead of building one
#   BASELINE_BIN=...    another switchyard binary (an earlier commit, say) run in the table beside
#                       the current one, same config, on BASELINE_PORT [PROXY_PORT+3]: the
#                       "baseline" column and sy/base ratio measure what a change costs
#   KEEP_LOGS=1         keep the temp dir with configs and raw pgbench output
#   KEEP_CLUSTER=1      leave the cluster running even if this script started it
#
# Everything runs on one machine: pgbench, the poolers and PostgreSQL compete
# for the same cores, so compare ratios, not absolute numbers.
set -euo pipefail

# lib.sh sets fixed ports; an explicit PROXY_PORT / PGBOUNCER_PORT in the
# environment wins (so runs can avoid ports other runs are using).
_env_proxy_port="${PROXY_PORT-}"
_env_pgbouncer_port="${PGBOUNCER_PORT-}"
# shellcheck source=deploy/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../deploy/lib.sh"
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
declare -A TPS=() LAT=() ERR=() XACTS=() MIX=()
declare -A INSTANCE_PID=() INSTANCE_LOG=() LOG_SHOWN=()
declare -A RH_PRIMARY=() RH_REPLICA=() RH_NOTE=()
CLASSIFIER_LINES=()
ALLOC_LINES=()

SY_DEBUG_NOTE=""
WORK=""
PGBENCH_PID=""
PGB_PID_FILE=""
STARTED_CLUSTER=0

# kill -0 also succeeds for zombies, which pid 1 of a container may reap late.
alive() {
  kill -0 "$1" 2>/dev/null && [ "$(sed -E 's/.*\) (.).*/\1/' "/proc/$1/stat" 2>/dev/null)" != Z ]
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
max_client_conn = 200
logfile = $WORK/pgbouncer.log
pidfile = $WORK/pgbouncer.pid
EOF
  PGB_PID_FILE="$WORK/pgbouncer.pid"
  # pgbouncer refuses to run as root: run it as postgres, daemonized (-d);
  # it writes its pid file, which cleanup() uses to stop it.
  chown -R postgres:postgres "$WORK"
  chmod 600 "$WORK/userlist.txt"
  log "starting pgbouncer on $PG_HOST:$PGBOUNCER_PORT (as user postgres)"
  if ! as_postgres timeout 30 "$PGBOUNCER_BIN" -d -q "$WORK/pgbouncer.ini"; then
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
    printf '\n[switchyard]\n; written by bench/pgbench-compare.sh\n'
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
  local key="$1" label="$2" port="$3" instance="$4" limit="$5" rc tps lat err xacts pid raw
  shift 6
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

print_table() {
  local w m t key empty
  local fmt='%-12s %-9s | %9s %8s | %9s %8s | %9s %8s | %7s %9s\n'
  local header=("direct" "lat ms" "switchyd" "lat ms" "pgbouncer" "lat ms" "sy/pgb" "sy/direct")
  if [ -n "$BASELINE_BIN" ]; then
    fmt='%-12s %-9s | %9s %8s | %9s %8s | %9s %8s | %9s %8s | %7s %9s %8s\n'
    header=("direct" "lat ms" "switchyd" "lat ms" "baseline" "lat ms" "pgbouncer" "lat ms" "sy/pgb" "sy/direct" "sy/base")
  fi
  echo
  echo "Results: tps (without initial connection time) and latency average in ms;"
  echo "${CLIENTS} clients, ${JOBS} threads, ${DURATION}s per run. Ratios compare tps.$SY_DEBUG_NOTE"
  if [ -n "$BASELINE_BIN" ]; then echo "baseline: $BASELINE_BIN"; fi
  # shellcheck disable=SC2059
  printf "$fmt" workload mode "${header[@]}"
  printf '%s\n' "$(printf '%.0s-' $(seq 1 106))"
  for w in $TABLE_WORKLOADS; do
    for m in $MODES; do
      local cells=()
      for t in "${TARGETS[@]}"; do
        key="$w|$m|$t"; empty=failed
        if [ "$t" = switchyard ] && [ "$SKIP_SWITCHYARD" = 1 ]; then empty=skipped; fi
        cells+=("$(fmt_tps "$key" "$empty")" "$(fmt_lat "$key" -)")
      done
      local ratios=("$(ratio "$w|$m|switchyard" "$w|$m|pgbouncer")" "$(ratio "$w|$m|switchyard" "$w|$m|direct")")
      if [ -n "$BASELINE_BIN" ]; then ratios+=("$(ratio "$w|$m|switchyard" "$w|$m|baseline")"); fi
      # shellcheck disable=SC2059
      printf "$fmt" "$w" "$m" "${cells[@]}" "${ratios[@]}"
    done
  done
}

# ---------------------------------------------------------------------------
# Section 2: read-heavy routing.
#
# Transactions per server come from pg_stat_database.xact_commit of database
# bench, read directly on the primary and on the replica (connected to
# database postgres, so the reading session does not count itself). Every
# autocommit statement runs in an implicit transaction of its own, which
# commits and so adds 1 to xact_commit, just like an explicit BEGIN..END
# block: one select-only transaction is one commit on the server that ran it,
# one simple-update transaction one commit on the primary. A backend reports
# its counts at most once a second, and at exit; the Switchyard instance is
# therefore stopped (closing its server connections) before the "after"
# reading. Other activity on database bench in the same cluster counts too:
# the summary warns when the servers' total strays from pgbench's count.
xact_commits() { sql_value "$1" postgres "select xact_commit from pg_stat_database where datname = 'bench'"; }

read_heavy_section() {
  local m key p0 r0 p1 r1 dp dr total
  write_config "$WORK/proxy-auto.conf" "listen_port=$PROXY_PORT"
  write_config "$WORK/proxy-primary.conf" "listen_port=$PRIMARY_ONLY_PORT" "default_route=primary"
  for m in $MODES; do
    log "read-heavy mode=$m (${READ_HEAVY_SCRIPTS[*]})"
    # default_route = auto: a fresh instance per run, stopped before the
    # "after" reading (see above).
    start_switchyard rh-auto "$PROXY_PORT" "$WORK/proxy-auto.conf"
    wait_for_replica_routing rh-auto "$PROXY_PORT" || true
    p0="$(xact_commits "$PRIMARY_PORT")"; r0="$(xact_commits "$REPLICA_PORT")"
    key="read-heavy|$m|auto"
    run_pgbench_raw "$key" "auto" "$PROXY_PORT" rh-auto "$RUN_TIMEOUT" -- \
      -c "$CLIENTS" -j "$JOBS" -T "$DURATION" -M "$m" "${READ_HEAVY_SCRIPTS[@]}"
    stop_switchyard rh-auto
    sleep "$STATS_SETTLE"   # server backends exit (and flush their stats) after the proxy closes them
    p1="$(xact_commits "$PRIMARY_PORT")"; r1="$(xact_commits "$REPLICA_PORT")"
    if [[ "$p0$r0$p1$r1" =~ ^[0-9]+$ ]] && [ -n "$p0" ] && [ -n "$r0" ] && [ -n "$p1" ] && [ -n "$r1" ]; then
      dp=$((p1 - p0)); dr=$((r1 - r0)); total=$((dp + dr))
      if [ "$total" -gt 0 ]; then
        RH_PRIMARY[$m]="$(awk -v p="$dp" -v t="$total" 'BEGIN { printf "%.1f%%", 100 * p / t }')"
        RH_REPLICA[$m]="$(awk -v r="$dr" -v t="$total" 'BEGIN { printf "%.1f%%", 100 * r / t }')"
        RH_NOTE[$m]="$m: primary committed $dp, replica $dr"
        if [ -n "${XACTS[$key]-}" ]; then
          RH_NOTE[$m]="${RH_NOTE[$m]} (pgbench: ${XACTS[$key]} transactions"
          # More than 5% off: someone else used database bench meanwhile.
          if awk -v t="$total" -v x="${XACTS[$key]}" 'BEGIN { exit !(t > x * 1.05 + 20 || t < x * 0.95) }'; then
            RH_NOTE[$m]="${RH_NOTE[$m]}; other activity on the cluster skews the shares"
          fi
          RH_NOTE[$m]="${RH_NOTE[$m]})"
        fi
      fi
    fi
    # default_route = primary: everything on the primary.
    start_switchyard rh-primary "$PRIMARY_ONLY_PORT" "$WORK/proxy-primary.conf"
    run_pgbench_raw "read-heavy|$m|primary" "all-to-primary" "$PRIMARY_ONLY_PORT" rh-primary "$RUN_TIMEOUT" -- \
      -c "$CLIENTS" -j "$JOBS" -T "$DURATION" -M "$m" "${READ_HEAVY_SCRIPTS[@]}"
    stop_switchyard rh-primary
  done
}

print_read_heavy() {
  local m a p fmt='%-9s | %9s %8s | %9s %8s | %10s | %8s %8s | %s\n'
  echo
  echo "Read-heavy routing through Switchyard: pgbench ${READ_HEAVY_SCRIPTS[*]}"
  echo "(90% one-statement reads, 10% read-write transactions), ${CLIENTS} clients, ${DURATION}s per run.$SY_DEBUG_NOTE"
  echo "auto = default_route auto with replica1; all-to-primary = a config copy with default_route = primary."
  echo "Commit shares: pg_stat_database.xact_commit deltas of database bench during the auto run."
  # shellcheck disable=SC2059
  printf "$fmt" mode "auto tps" "lat ms" "primary" "lat ms" "auto/prim" "primary" "replica" "pgbench mix"
  printf '%s\n' "$(printf '%.0s-' $(seq 1 100))"
  for m in $MODES; do
    a="read-heavy|$m|auto"; p="read-heavy|$m|primary"
    # shellcheck disable=SC2059
    printf "$fmt" "$m" "$(fmt_tps "$a" failed)" "$(fmt_lat "$a" -)" "$(fmt_tps "$p" failed)" "$(fmt_lat "$p" -)" \
      "$(ratio "$a" "$p")" "${RH_PRIMARY[$m]:--}" "${RH_REPLICA[$m]:--}" "${MIX[$a]:--}"
  done
  for m in $MODES; do
    if [ -n "${RH_NOTE[$m]-}" ]; then echo "  ${RH_NOTE[$m]}"; fi
  done
}

# ---------------------------------------------------------------------------
# Section 3: classifier cost, from the binary itself (meaningful in release builds).
classifier_section() {
  local out rc=0
  out="$(timeout -k 5 "$CLASSIFIER_TIMEOUT" "$SWITCHYARD_BIN" benchmark-classifier \
           --iterations "$CLASSIFIER_ITERATIONS" 2>&1)" || rc=$?
  if [ "$rc" -eq 0 ] && [ -n "$out" ]; then
    mapfile -t CLASSIFIER_LINES <<<"$out"
  else
    CLASSIFIER_LINES=("classifier: unavailable ($SWITCHYARD_BIN benchmark-classifier exit code $rc: $(printf '%s' "$out" | tail -n 1))")
  fi
}

# ---------------------------------------------------------------------------
# Section 4: heap allocations per transaction in the proxy.
#
# A malloc-counting shim is preloaded into a separate Switchyard instance
# (pool_mode = transaction, default_route = ALLOC_ROUTE, its own port). It
# counts every malloc/calloc/realloc/free (and the aligned variants) of the
# whole process, and writes the counts to $MALLOC_COUNT_FILE on SIGUSR2. So
# the figure covers everything the proxy does for a transaction: framing,
# classification (and its per-loop cache), routing, pooling, and SwiftNIO's
# own allocations, including the buffer each socket read goes into, on the
# client and the server side. (NIO pools its receive buffers and reuses one
# when nothing else still references it, so a read allocates only when the
# previous buffer is still held, e.g. queued for a write.) It also includes
# background work meanwhile (health probes, timers), which is measured while
# idle and reported alongside. Connection setup is excluded by the warm-up
# only partly: pgbench -t opens its ALLOC_CLIENTS connections inside the
# counted window, a fixed cost spread over the transactions.
write_malloc_shim() {
  cat >"$WORK/malloc-count.c" <<'EOF'
/* Counts heap calls of the process it is preloaded into; on SIGUSR2 writes the
   counts to $MALLOC_COUNT_FILE (via a temporary file and rename, so a reader
   never sees half a file). Generated by bench/pgbench-compare.sh. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_ulong n_malloc, n_calloc, n_realloc, n_free, n_aligned;
static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);
static void *(*real_memalign)(size_t, size_t);

/* dlsym may allocate (calloc) while we resolve: serve that from a static
   arena, which is zeroed, never freed and never counted. */
static char arena[16384] __attribute__((aligned(64)));
static atomic_size_t arena_used;
static atomic_int resolving;

static void *arena_alloc(size_t size) {
    size_t need = (size + 63) & ~(size_t)63;
    size_t offset = atomic_fetch_add(&arena_used, need);
    return offset + need <= sizeof arena ? arena + offset : NULL;
}
static int in_arena(const void *p) {
    return (const char *)p >= arena && (const char *)p < arena + sizeof arena;
}

static void resolve(void) {
    atomic_store(&resolving, 1);
    real_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
    real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    real_posix_memalign = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
    real_aligned_alloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "aligned_alloc");
    real_memalign = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "memalign");
    real_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");   /* last: it marks "resolved" */
    atomic_store(&resolving, 0);
}
#define READY(fn) (fn != NULL || (!atomic_load(&resolving) && (resolve(), fn != NULL)))
#define COUNT(counter) atomic_fetch_add_explicit(&counter, 1, memory_order_relaxed)

void *malloc(size_t size) {
    if (!READY(real_malloc)) return arena_alloc(size);
    COUNT(n_malloc);
    return real_malloc(size);
}
void *calloc(size_t n, size_t size) {
    if (!READY(real_calloc)) return size && n > (size_t)-1 / size ? NULL : arena_alloc(n * size);
    COUNT(n_calloc);
    return real_calloc(n, size);
}
void *realloc(void *p, size_t size) {
    if (!READY(real_realloc)) return NULL;
    if (in_arena(p)) {   /* move out of the arena; the old size is unknown, copy what can exist */
        void *q = malloc(size);
        size_t room = (size_t)(arena + sizeof arena - (char *)p);
        if (q) memcpy(q, p, size < room ? size : room);
        return q;
    }
    COUNT(n_realloc);
    return real_realloc(p, size);
}
void free(void *p) {
    if (p == NULL || in_arena(p)) return;
    if (!READY(real_free)) return;
    COUNT(n_free);
    real_free(p);
}
int posix_memalign(void **out, size_t alignment, size_t size) {
    if (!READY(real_posix_memalign)) return ENOMEM;
    COUNT(n_aligned);
    return real_posix_memalign(out, alignment, size);
}
void *aligned_alloc(size_t alignment, size_t size) {
    if (!READY(real_aligned_alloc)) return NULL;
    COUNT(n_aligned);
    return real_aligned_alloc(alignment, size);
}
void *memalign(size_t alignment, size_t size) {
    if (!READY(real_memalign)) return NULL;
    COUNT(n_aligned);
    return real_memalign(alignment, size);
}

static char out_path[4096], tmp_path[4100];

static size_t put(char *buf, size_t at, const char *name, unsigned long value) {
    char digits[24];
    int n = 0;
    while (*name) buf[at++] = *name++;
    buf[at++] = ' ';
    do { digits[n++] = (char)('0' + value % 10); value /= 10; } while (value);
    while (n) buf[at++] = digits[--n];
    buf[at++] = '\n';
    return at;
}

/* Async-signal-safe: no stdio, no allocation. */
static void dump(int sig) {
    char buf[256];
    size_t len = 0;
    int saved = errno, fd;
    (void)sig;
    len = put(buf, len, "malloc", atomic_load(&n_malloc));
    len = put(buf, len, "calloc", atomic_load(&n_calloc));
    len = put(buf, len, "realloc", atomic_load(&n_realloc));
    len = put(buf, len, "free", atomic_load(&n_free));
    len = put(buf, len, "aligned", atomic_load(&n_aligned));
    fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        ssize_t w = write(fd, buf, len);
        close(fd);
        if (w == (ssize_t)len) rename(tmp_path, out_path);
    }
    errno = saved;
}

__attribute__((constructor)) static void install(void) {
    const char *path = getenv("MALLOC_COUNT_FILE");
    struct sigaction action;
    if (path == NULL || *path == 0 || strlen(path) >= sizeof out_path) return;
    strcpy(out_path, path);
    strcpy(tmp_path, path);
    strcat(tmp_path, ".tmp");
    memset(&action, 0, sizeof action);
    action.sa_handler = dump;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    sigaction(SIGUSR2, &action, NULL);
}
EOF
  gcc -O2 -Wall -shared -fPIC -o "$WORK/malloc-count.so" "$WORK/malloc-count.c" -ldl
}

# SIGUSR2 caught by the process (SigCgt bit 12) and the shim mapped into it.
shim_active() {
  local pid="$1" mask
  grep -q 'malloc-count\.so' "/proc/$pid/maps" 2>/dev/null || return 1
  mask="$(awk '/^SigCgt:/{print $2}' "/proc/$pid/status" 2>/dev/null)"
  [ -n "$mask" ] && (( (16#$mask >> 11) & 1 ))
}

# Ask the shim for its counts; prints "malloc calloc realloc free aligned".
alloc_counts() {
  local pid="$1" file="$WORK/malloc-counts"
  rm -f "$file"
  kill -USR2 "$pid" 2>/dev/null || return 1
  for _ in $(seq 1 50); do
    if [ -s "$file" ]; then
      awk '{v[$1] = $2} END { printf "%s %s %s %s %s\n", v["malloc"], v["calloc"], v["realloc"], v["free"], v["aligned"] }' "$file"
      return 0
    fi
    sleep 0.1
  done
  return 1
}

alloc_unavailable() { ALLOC_LINES+=("allocation counting unavailable: $*"); warn "allocation counting unavailable: $*"; }

# alloc_run LABEL pgbench-options...: a warm-up, counts A, -t ALLOC_TRANSACTIONS, counts B;
# appends (B - A) / transactions to ALLOC_LINES. Uses pid and idle_rate of alloc_section.
alloc_run() {
  local label="$1" key="alloc|$1" a b t0 elapsed a_m a_c a_r a_f a_al b_m b_c b_r b_f b_al
  shift
  log "allocations ($label): warm-up, then -t $ALLOC_TRANSACTIONS -c $ALLOC_CLIENTS"
  run_pgbench_raw "alloc-warmup|$label" "warm-up" "$ALLOC_PORT" alloc "$ALLOC_TIMEOUT" -- \
    -c "$ALLOC_CLIENTS" -j "$ALLOC_JOBS" -t 200 "$@"
  a="$(alloc_counts "$pid" || true)"
  t0="$(date +%s.%N)"
  run_pgbench_raw "$key" "$label" "$ALLOC_PORT" alloc "$ALLOC_TIMEOUT" -- \
    -c "$ALLOC_CLIENTS" -j "$ALLOC_JOBS" -t "$ALLOC_TRANSACTIONS" "$@"
  elapsed="$(awk -v t0="$t0" -v t1="$(date +%s.%N)" 'BEGIN { printf "%.1f", t1 - t0 }')"
  b="$(alloc_counts "$pid" || true)"
  if [ -z "${XACTS[$key]-}" ] || [ "${XACTS[$key]}" -le 0 ]; then
    ALLOC_LINES+=("alloc: $(printf '%-31s' "$label") failed: ${ERR[$key]:-no transactions}")
    return
  fi
  if [ -z "$a" ] || [ -z "$b" ]; then
    alloc_unavailable "no counts from the shim for $label"; return
  fi
  read -r a_m a_c a_r a_f a_al <<<"$a"
  read -r b_m b_c b_r b_f b_al <<<"$b"
  # Each pgbench connection is a new client session, which allocates: zero means no counting.
  if [ $((b_m - a_m)) -le 0 ]; then
    alloc_unavailable "malloc count did not move during $label"; return
  fi
  ALLOC_LINES+=("$(awk -v m="$label" -v x="${XACTS[$key]}" -v s="$elapsed" -v idle="$idle_rate" \
    -v news=$(( (b_m - a_m) + (b_c - a_c) + (b_al - a_al) )) -v re=$((b_r - a_r)) -v fr=$((b_f - a_f)) \
    'BEGIN { printf "alloc: %-31s %7.2f mallocs/tx  %7.2f frees/tx  %5.2f reallocs/tx  (%d tx in %.1f s; idle background %.1f/s = %.2f/tx of that)",
             m, news / x, fr / x, re / x, x, s, idle, idle * s / x }')")
}

alloc_section() {
  local pid m c0 c1 t0 idle_rate
  if ! command -v gcc >/dev/null 2>&1; then alloc_unavailable "gcc not found"; return; fi
  if ! write_malloc_shim 2>"$WORK/malloc-count.build.log"; then
    alloc_unavailable "the shim did not compile ($(head -n 1 "$WORK/malloc-count.build.log"))"; return
  fi
  write_config "$WORK/proxy-alloc.conf" "listen_port=$ALLOC_PORT" "pool_mode=transaction" "default_route=$ALLOC_ROUTE"
  start_switchyard alloc "$ALLOC_PORT" "$WORK/proxy-alloc.conf" \
    "LD_PRELOAD=$WORK/malloc-count.so" "MALLOC_COUNT_FILE=$WORK/malloc-counts"
  pid="${INSTANCE_PID[alloc]}"
  if [ "$ALLOC_ROUTE" = auto ]; then wait_for_replica_routing alloc "$ALLOC_PORT" || true; fi
  if ! shim_active "$pid"; then
    alloc_unavailable "LD_PRELOAD did not take effect (shim not loaded or SIGUSR2 not caught)"
    stop_switchyard alloc; return
  fi
  # Background allocations while idle (health probes, timers), per second.
  read -r c0 _ <<<"$(alloc_counts "$pid" || true)"
  t0=$SECONDS; sleep 3
  read -r c1 _ <<<"$(alloc_counts "$pid" || true)"
  if [ -z "${c0:-}" ] || [ -z "${c1:-}" ] || [ "$c1" -le 0 ]; then
    alloc_unavailable "the shim reported no counts (malloc count stays 0)"
    stop_switchyard alloc; return
  fi
  idle_rate="$(awk -v a="$c0" -v b="$c1" -v s=$((SECONDS - t0)) 'BEGIN { printf "%.1f", (b - a) / (s > 0 ? s : 1) }')"
  for m in $MODES; do
    alloc_run "-M $m" -M "$m" -S
  done
  # The same text every time: every statement after the first is a hit in the
  # classification cache, so this isolates the relay from the cache inserts
  # that -S (a new literal in each statement) causes in simple mode.
  if [[ " $MODES " == *" simple "* ]]; then
    echo 'SELECT abalance FROM pgbench_accounts WHERE aid = 4242;' >"$WORK/constant-select.sql"
    alloc_run "-M simple, one constant SELECT" -M simple -f "$WORK/constant-select.sql"
  fi
  stop_switchyard alloc
}

# ---------------------------------------------------------------------------
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
if [ -n "$TABLE_WORKLOADS" ]; then
  start_pgbouncer
  if [ "$SKIP_SWITCHYARD" != 1 ]; then
    # Like for like with direct and PgBouncer: every statement to the primary (COMPARE_ROUTE).
    # Routing to the replica is measured on its own in the read-heavy section.
    write_config "$WORK/proxy.conf" "listen_port=$PROXY_PORT" "default_route=${COMPARE_ROUTE:-primary}"
    start_switchyard main "$PROXY_PORT" "$WORK/proxy.conf"
    if [ -n "$BASELINE_BIN" ]; then
      write_config "$WORK/proxy-baseline.conf" "listen_port=$BASELINE_PORT" "default_route=${COMPARE_ROUTE:-primary}"
      SWITCHYARD_BIN="$BASELINE_BIN" start_switchyard baseline "$BASELINE_PORT" "$WORK/proxy-baseline.conf"
    fi
  fi
fi

section "Versions"
"$PGBOUNCER_BIN" --version 2>/dev/null | sed -n 1p   # not head: SIGPIPE + pipefail
"$PG_BIN/postgres" --version
"$PG_BIN/pgbench" --version
if [ "$SKIP_SWITCHYARD" = 1 ]; then sy_what="skipped"; else sy_what="$SWITCHYARD_BIN$SY_DEBUG_NOTE"; fi
echo "switchyard: $(git -C "$SWITCHYARD_ROOT" describe --always --dirty 2>/dev/null || echo 'no commits yet') ($sy_what)"
echo "cpus: $(nproc); pgbouncer: pool_mode=transaction default_pool_size=20; switchyard: see $(basename "$SWITCHYARD_CONFIG")"

if [ -n "$TABLE_WORKLOADS" ]; then
  section "Running pgbench (${DURATION}s per run)"
  total=0; for w in $TABLE_WORKLOADS; do for m in $MODES; do total=$((total + 1)); done; done
  n=0
  for w in $TABLE_WORKLOADS; do
    for m in $MODES; do
      n=$((n + 1))
      log "[$n/$total] workload=$w mode=$m"
      for t in "${TARGETS[@]}"; do
        if [ "$t" = switchyard ] && [ "$SKIP_SWITCHYARD" = 1 ]; then continue; fi
        run_pgbench "$w" "$m" "$t"
      done
    done
  done
  # The other sections run their own instances; stopping these also closes
  # their server connections, which flushes those backends' statistics.
  stop_switchyard main
  stop_switchyard baseline
  stop_pgbouncer
fi

if [ "$READ_HEAVY" = 1 ] && [ "$SKIP_SWITCHYARD" != 1 ]; then
  section "Read-heavy routing (${DURATION}s per run)"
  read_heavy_section
fi

if [ "$SKIP_ALLOC" != 1 ] && [ "$SKIP_SWITCHYARD" != 1 ]; then
  section "Allocations per transaction (-t $ALLOC_TRANSACTIONS -c $ALLOC_CLIENTS per mode)"
  alloc_section
fi

if [ "$SKIP_CLASSIFIER" != 1 ] && [ "$SKIP_SWITCHYARD" != 1 ]; then
  section "Classifier benchmark ($CLASSIFIER_ITERATIONS iterations)"
  classifier_section   # alone on our side: every proxy and pgbench has stopped
fi

section "Summary"
if [ -n "$TABLE_WORKLOADS" ]; then
  print_table
  if [[ " $MODES " == *" prepared "* ]]; then
    echo
    echo "Note: pgbouncer < 1.21 in transaction mode cannot pool named prepared statements"
    echo "(they live on one server connection), so its 'prepared' runs are expected to fail."
  fi
fi
if [ "$READ_HEAVY" = 1 ]; then
  if [ "$SKIP_SWITCHYARD" = 1 ]; then echo; echo "Read-heavy routing: skipped (SKIP_SWITCHYARD=1)"; else print_read_heavy; fi
fi
echo
if [ "$SKIP_SWITCHYARD" = 1 ] || [ "$SKIP_CLASSIFIER" = 1 ]; then
  echo "classifier: skipped"
else
  printf '%s\n' "${CLASSIFIER_LINES[@]}"
fi
echo
if [ "$SKIP_SWITCHYARD" = 1 ] || [ "$SKIP_ALLOC" = 1 ]; then
  echo "alloc: skipped"
else
  echo "Heap allocations in Switchyard per transaction (pgbench -S unless noted; malloc+calloc+aligned allocs"
  echo "of the whole process, so SwiftNIO's read buffers and background work are included), ${ALLOC_CLIENTS} clients,"
  echo "pool_mode = transaction, default_route = $ALLOC_ROUTE, after a 200-transaction warm-up:$SY_DEBUG_NOTE"
  printf '%s\n' "${ALLOC_LINES[@]}"
  if [[ " $MODES " == *" simple "* ]]; then
    echo "(-M simple -S sends a new literal in every statement, so each one is classified afresh and its text"
    echo "added to the per-event-loop classification cache; the constant-SELECT line is the relay without that.)"
  fi
fi
print_errors
