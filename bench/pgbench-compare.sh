#!/usr/bin/env bash
# Throughput/latency comparison: pgbench straight to PostgreSQL vs through
# Switchyard vs through pgbouncer (transaction pooling), interleaved so all
# three see the same machine state. This is a benchmark, not a test: it
# prints a table and only fails if the setup itself fails.
#
# Environment knobs (defaults in brackets):
#   DURATION [15]   seconds per pgbench run
#   CLIENTS [16]    pgbench -c;   JOBS [2]  pgbench -j
#   MODES ["simple extended prepared"]          pgbench -M values
#   WORKLOADS ["select-only tpcb-like"]         pgbench -b builtin scripts
#   SWITCHYARD_CONFIG [<repo>/proxy.conf]       config copied for the proxy
#   SKIP_SWITCHYARD=1   skip building/running Switchyard (columns say "skipped")
#   SWITCHYARD_BIN=...  use this prebuilt binary instead of building one
#   KEEP_LOGS=1         keep the temp dir with configs and raw pgbench output
#   KEEP_CLUSTER=1      leave the cluster running even if this script started it
#
# Everything runs on one machine: pgbench, the poolers and PostgreSQL compete
# for the same cores, so compare ratios, not absolute numbers.
set -euo pipefail

# shellcheck source=deploy/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../deploy/lib.sh"

DURATION="${DURATION:-15}"
CLIENTS="${CLIENTS:-16}"
JOBS="${JOBS:-2}"
MODES="${MODES:-simple extended prepared}"
WORKLOADS="${WORKLOADS:-select-only tpcb-like}"
SKIP_SWITCHYARD="${SKIP_SWITCHYARD:-0}"
SWITCHYARD_CONFIG="${SWITCHYARD_CONFIG:-$SWITCHYARD_ROOT/proxy.conf}"
STARTUP_TIMEOUT=30                  # seconds for a pooler to accept queries
RUN_TIMEOUT=$((DURATION + 60))      # hard cap per pgbench run

for v in DURATION CLIENTS JOBS; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[ "$JOBS" -le "$CLIENTS" ] || JOBS="$CLIENTS"   # pgbench rejects -j > -c

TARGETS=(direct switchyard pgbouncer)
declare -A TARGET_PORT=([direct]="$PRIMARY_PORT" [switchyard]="$PROXY_PORT" [pgbouncer]="$PGBOUNCER_PORT")
declare -A TPS=() LAT=() ERR=()

WORK=""
SY_PID=""
SY_EXITED=0
PGBENCH_PID=""
PGB_PID_FILE=""
STARTED_CLUSTER=0

# kill -0 also succeeds for zombies, which pid 1 of a container may reap late.
alive() {
  kill -0 "$1" 2>/dev/null && [ "$(sed -E 's/.*\) (.).*/\1/' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

cleanup() {
  local rc=$? pid
  set +e
  if [ -n "$PGBENCH_PID" ]; then
    kill -TERM "$PGBENCH_PID" 2>/dev/null   # timeout passes it on to pgbench
    wait "$PGBENCH_PID" 2>/dev/null
  fi
  if [ -n "$SY_PID" ] && kill -0 "$SY_PID" 2>/dev/null; then
    kill -TERM "$SY_PID" 2>/dev/null
    for _ in $(seq 1 20); do alive "$SY_PID" || break; sleep 0.5; done
    kill -KILL "$SY_PID" 2>/dev/null
    wait "$SY_PID" 2>/dev/null
  fi
  if [ -n "$PGB_PID_FILE" ] && [ -s "$PGB_PID_FILE" ]; then
    pid="$(cat "$PGB_PID_FILE")"
    # Only signal the pid if it really is our pgbouncer.
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = pgbouncer ]; then
      kill -TERM "$pid" 2>/dev/null
      for _ in $(seq 1 20); do alive "$pid" || break; sleep 0.5; done
      if alive "$pid"; then kill -KILL "$pid" 2>/dev/null; fi
    fi
  fi
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

# Poll until "select 1" works through host:port as app; give up after
# STARTUP_TIMEOUT seconds or as soon as the process behind it dies.
wait_for_sql() {
  local name="$1" port="$2" logf="$3" pid="${4:-}" deadline=$((SECONDS + STARTUP_TIMEOUT))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if PGPASSWORD="$APP_PASSWORD" PGCONNECT_TIMEOUT=3 timeout 10 "$PG_BIN/psql" -X -q \
         -h "$PG_HOST" -p "$port" -U "$APP_USER" -d bench -Atc 'select 1' >/dev/null 2>&1; then
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
    die "port $PGBOUNCER_PORT is already in use; stop whatever listens there"
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

start_switchyard() {
  if port_in_use "$PROXY_PORT"; then
    die "port $PROXY_PORT is already in use (is deploy/local-up.sh running?)"
  fi
  cp "$SWITCHYARD_CONFIG" "$WORK/proxy.conf"
  log "starting switchyard on $PG_HOST:$PROXY_PORT ($SWITCHYARD_CONFIG)"
  (cd "$SWITCHYARD_ROOT" && exec "$SWITCHYARD_BIN" run --config "$WORK/proxy.conf") \
    >"$WORK/switchyard.log" 2>&1 &
  SY_PID=$!
  wait_for_sql switchyard "$PROXY_PORT" "$WORK/switchyard.log" "$SY_PID"
}

# One pgbench run; fills TPS/LAT or ERR for key "workload|mode|target".
run_pgbench() {
  local workload="$1" mode="$2" target="$3" key="$1|$2|$3" rc tps lat err
  local raw="$WORK/pgbench-$workload-$mode-$target.log"
  rc=0
  # In the background + wait, so Ctrl-C/TERM run the traps at once (bash defers
  # traps while a foreground child runs, and timeout's own process group does
  # not receive the terminal's Ctrl-C); cleanup() kills PGBENCH_PID.
  PGPASSWORD="$APP_PASSWORD" PGCONNECT_TIMEOUT=10 timeout -k 5 "$RUN_TIMEOUT" \
    "$PG_BIN/pgbench" -h "$PG_HOST" -p "${TARGET_PORT[$target]}" -U "$APP_USER" \
      -n -c "$CLIENTS" -j "$JOBS" -T "$DURATION" -M "$mode" -b "$workload" bench \
      >"$raw" 2>&1 &
  PGBENCH_PID=$!
  wait "$PGBENCH_PID" || rc=$?
  PGBENCH_PID=""
  tps="$(awk '/^tps = /{print $3; exit}' "$raw")"
  lat="$(awk '/^latency average = /{print $4; exit}' "$raw")"
  if [ "$rc" -eq 0 ] && [ -n "$tps" ] && [ -n "$lat" ]; then
    TPS[$key]="$tps"; LAT[$key]="$lat"
    printf '    %-10s %10.0f tps  %8.3f ms\n' "$target" "$tps" "$lat" >&2
  else
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
      err="timed out after ${RUN_TIMEOUT}s"
    else
      err="$(grep -m1 -iE 'error|fatal|abort' "$raw" || tail -n 1 "$raw")"
      err="${err:-pgbench exit code $rc, no output}"
    fi
    if [ "$target" = switchyard ] && [ -n "$SY_PID" ] && ! alive "$SY_PID"; then
      err="$err (the switchyard process has exited)"
      if [ "$SY_EXITED" = 0 ]; then show_log_tail "$WORK/switchyard.log" 20; fi
      SY_EXITED=1
    fi
    ERR[$key]="$err"
    printf '    %-10s failed: %s\n' "$target" "$err" >&2
  fi
}

fmt_tps() { if [ -n "${TPS[$1]-}" ]; then printf '%.0f' "${TPS[$1]}"; else printf '%s' "$2"; fi; }
fmt_lat() { if [ -n "${LAT[$1]-}" ]; then printf '%.3f' "${LAT[$1]}"; else printf '%s' "$2"; fi; }
ratio() {
  if [ -n "${TPS[$1]-}" ] && [ -n "${TPS[$2]-}" ]; then
    awk -v a="${TPS[$1]}" -v b="${TPS[$2]}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'
  else printf -- '-'; fi
}

print_table() {
  local w m t key empty
  local fmt='%-12s %-9s | %9s %8s | %9s %8s | %9s %8s | %7s %9s\n'
  echo
  echo "Results: tps (without initial connection time) and latency average in ms;"
  echo "${CLIENTS} clients, ${JOBS} threads, ${DURATION}s per run. Ratios compare tps."
  # shellcheck disable=SC2059
  printf "$fmt" workload mode "direct" "lat ms" "switchyd" "lat ms" "pgbouncer" "lat ms" "sy/pgb" "sy/direct"
  printf '%s\n' "$(printf '%.0s-' $(seq 1 106))"
  for w in $WORKLOADS; do
    for m in $MODES; do
      local cells=()
      for t in "${TARGETS[@]}"; do
        key="$w|$m|$t"; empty=failed
        if [ "$t" = switchyard ] && [ "$SKIP_SWITCHYARD" = 1 ]; then empty=skipped; fi
        cells+=("$(fmt_tps "$key" "$empty")" "$(fmt_lat "$key" -)")
      done
      # shellcheck disable=SC2059
      printf "$fmt" "$w" "$m" "${cells[@]}" \
        "$(ratio "$w|$m|switchyard" "$w|$m|pgbouncer")" "$(ratio "$w|$m|switchyard" "$w|$m|direct")"
    done
  done
  if [ "${#ERR[@]}" -gt 0 ]; then
    echo
    echo "Failed runs (first error line):"
    for key in "${!ERR[@]}"; do
      printf '  %-32s %s\n' "${key//|/ }" "${ERR[$key]}"
    done | sort
  fi
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
fi

if bash "$SWITCHYARD_ROOT/deploy/cluster.sh" status >/dev/null 2>&1; then
  log "using the running cluster in $BASE"
else
  bash "$SWITCHYARD_ROOT/deploy/cluster.sh" start
  STARTED_CLUSTER=1
fi

WORK="$(mktemp -d /tmp/switchyard-bench.XXXXXX)"
chmod 755 "$WORK"
start_pgbouncer
if [ "$SKIP_SWITCHYARD" != 1 ]; then
  start_switchyard
fi

section "Versions"
"$PGBOUNCER_BIN" --version 2>/dev/null | sed -n 1p   # not head: SIGPIPE + pipefail
"$PG_BIN/postgres" --version
"$PG_BIN/pgbench" --version
echo "switchyard: $(git -C "$SWITCHYARD_ROOT" describe --always --dirty 2>/dev/null || echo 'no commits yet')$( [ "$SKIP_SWITCHYARD" = 1 ] && echo ' (skipped)')"
echo "cpus: $(nproc); pgbouncer: pool_mode=transaction default_pool_size=20; switchyard: see $(basename "$SWITCHYARD_CONFIG")"

section "Running pgbench (${DURATION}s per run)"
total=0; for w in $WORKLOADS; do for m in $MODES; do total=$((total + 1)); done; done
n=0
for w in $WORKLOADS; do
  for m in $MODES; do
    n=$((n + 1))
    log "[$n/$total] workload=$w mode=$m"
    for t in "${TARGETS[@]}"; do
      if [ "$t" = switchyard ] && [ "$SKIP_SWITCHYARD" = 1 ]; then continue; fi
      run_pgbench "$w" "$m" "$t"
    done
  done
done

section "Summary"
print_table
if [[ " $MODES " == *" prepared "* ]]; then
  echo
  echo "Note: pgbouncer < 1.21 in transaction mode cannot pool named prepared statements"
  echo "(they live on one server connection), so its 'prepared' runs are expected to fail."
fi
