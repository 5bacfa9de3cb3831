#!/usr/bin/env bash
# Read-your-writes efficiency: how many reads replicas still serve when every client reads what it wrote.
#
# pgbench script (one transaction = 10 autocommit statements, 10% writes): insert a row, read it back
# (a miss is recorded in ryw_violations by the script itself), then 8 point reads of pgbench_accounts.
# Interleaved in one run, with the replicas 0 ms and then REPLAY_DELAY (5 ms) behind
# (recovery_min_apply_delay on both):
#   session  Switchyard, read_consistency = session (the default)
#   eventual Switchyard, read_consistency = eventual (reads may miss the write)
#   primary  Switchyard, default_route = primary (all to the primary)
# Printed per case: tps, transaction latency p50/p99 (pgbench -l), the average latency of the
# read-back statement (pgbench -r), the share of reads that replicas served (SHOW STATS), and violations.
# Target: with replicas 5 ms behind, >= 70% of reads on replicas at session level, 0 violations.
#
# Knobs: see lib.sh (DURATION, CLIENTS, JOBS); REPLAY_DELAY [5ms], DELAYS ["0 $REPLAY_DELAY"], MODE [simple].
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REPLAY_DELAY="${REPLAY_DELAY:-5ms}"
DELAYS="${DELAYS:-0 $REPLAY_DELAY}"
MODE="${MODE:-simple}"
RYW_METRICS_PORT="${RYW_METRICS_PORT:-$((PROXY_PORT + 4))}"
RYW_CASES=(session eventual primary)
declare -A RYW_SHARE=() RYW_VIOLATIONS=() RYW_P50=() RYW_P99=() RYW_READBACK=() RYW_WAIT=()

replica_sql() { "$PG_BIN/psql" -X -At -h "$SOCKET_DIR" -p "$1" -U postgres -d postgres -c "$2" >/dev/null; }
primary_sql() { PGPASSWORD="$APP_PASSWORD" "$PG_BIN/psql" -X -At -h "$PG_HOST" -p "$PRIMARY_PORT" -U "$APP_USER" -d bench -c "$1"; }
console() { PGPASSWORD=admin-secret "$PG_BIN/psql" -X -At -F '|' -h "$PG_HOST" -p "$1" -U admin -d switchyard -c "$2"; }

set_replay_delay() {
  local port
  for port in "$REPLICA_PORT" "$REPLICA2_PORT"; do
    if [ "$1" = 0 ]; then replica_sql "$port" "alter system reset recovery_min_apply_delay"
    else replica_sql "$port" "alter system set recovery_min_apply_delay = '$1'"; fi
    replica_sql "$port" "select pg_reload_conf()"
  done
}

write_script() {
  local i
  cat >"$WORK/ryw.sql" <<'EOF'
\set v random(1, 2000000000)
insert into ryw_rows (v) values (:v);
select count(*) as found from ryw_rows where v = :v \gset
\if :found = 0
insert into ryw_violations (v) values (:v);
\endif
EOF
  for i in 1 2 3 4 5 6 7 8; do
    printf '\\set a%d random(1, 100000 * :scale)\nselect abalance from pgbench_accounts where aid = :a%d;\n' "$i" "$i" >>"$WORK/ryw.sql"
  done
}

# p50 and p99 of the latency column (3rd, microseconds) of pgbench -l logs, in ms.
percentiles() {
  cat "$@" 2>/dev/null | awk '{print $3}' | sort -n | awk '
    { v[NR] = $1 } END { if (NR == 0) { print "- -"; exit }
      p50 = v[int(NR * 0.50) > 0 ? int(NR * 0.50) : 1]; p99 = v[int(NR * 0.99) > 0 ? int(NR * 0.99) : 1]
      printf "%.2f %.2f\n", p50 / 1000, p99 / 1000 }'
}

# p50/p99 of the wait a read made for a replica to replay its write (the added read latency), as the
# upper bounds of the histogram buckets they fall in, and how many reads waited.
wait_quantiles() {
  curl -s "http://127.0.0.1:$RYW_METRICS_PORT/metrics" | awk '
    /^switchyard_read_consistency_wait_seconds_bucket/ { le = $1; sub(/.*le="/, "", le); sub(/".*/, "", le); n++; b[n] = le; c[n] = $2 }
    END { total = c[n]; if (total == 0) { print "none"; exit }
      for (i = 1; i <= n; i++) { if (p50 == "" && c[i] >= total * 0.5) p50 = b[i]; if (p99 == "" && c[i] >= total * 0.99) p99 = b[i] }
      printf "%s/%s s (%d)", p50, p99, total }'
}

# Replica share of the reads: replica transactions over 9 reads per pgbench transaction.
replica_share() {
  local port="$1" xacts="$2" replica
  replica="$(console "$port" "show stats" | awk -F'|' '$2 == "replica" { s += $4 } END { print s + 0 }')"
  awk -v r="$replica" -v x="$xacts" 'BEGIN { if (x > 0) printf "%.1f%%", 100 * r / (9 * x); else printf "-" }'
}

ryw_section() {
  local scale delay case key port conf logs pl
  scale="$(primary_sql "select count(*) from pgbench_branches")"
  primary_sql "create table if not exists ryw_rows (id bigserial primary key, v bigint not null);
               create index if not exists ryw_rows_v on ryw_rows (v);
               create table if not exists ryw_violations (v bigint not null, at timestamptz not null default now())" >/dev/null
  write_script
  write_config "$WORK/ryw-session.conf" "listen_port=$PROXY_PORT" "read_consistency=session" "default_route=auto"
  write_config "$WORK/ryw-eventual.conf" "listen_port=$PROXY_PORT" "read_consistency=eventual" "default_route=auto"
  write_config "$WORK/ryw-primary.conf" "listen_port=$PROXY_PORT" "default_route=primary"
  # The instances serve metrics (for the wait histogram): write_config turns them off, so turn them on.
  sed -i "s/^metrics_port = 0\$/metrics_port = $RYW_METRICS_PORT/" "$WORK"/ryw-*.conf
  for delay in $DELAYS; do
    set_replay_delay "$delay"
    for case in "${RYW_CASES[@]}"; do
      key="ryw|$delay|$case"
      primary_sql "truncate ryw_rows, ryw_violations" >/dev/null
      start_switchyard "ryw-$case" "$PROXY_PORT" "$WORK/ryw-$case.conf"
      [ "$case" = primary ] || wait_for_replica_routing "ryw-$case" "$PROXY_PORT" || true
      logs="$WORK/ryw-${delay}-${case}"
      mkdir -p "$logs"
      log "read-your-writes: replicas $delay behind, $case"
      run_pgbench_raw "$key" "$case ($delay)" "$PROXY_PORT" "ryw-$case" "$RUN_TIMEOUT" -- \
        -c "$CLIENTS" -j "$JOBS" -T "$DURATION" -M "$MODE" -s "$scale" -r -l --log-prefix="$logs/pgbench_log" -f "$WORK/ryw.sql"
      if [ -n "${XACTS[$key]-}" ]; then
        RYW_SHARE[$key]="$(replica_share "$PROXY_PORT" "${XACTS[$key]}")"
        read -r RYW_P50[$key] RYW_P99[$key] <<<"$(percentiles "$logs"/pgbench_log.*)"
        pl="$WORK/pgbench-${key//[^A-Za-z0-9_.-]/_}.log"
        # -r: "  0.123  0  select count(*) as found from ryw_rows where v = :v" (latency ms, failures, statement)
        RYW_READBACK[$key]="$(awk '/select count\(\*\) as found/ { print $1; exit }' "$pl")"
        RYW_WAIT[$key]="$(wait_quantiles)"
      fi
      RYW_VIOLATIONS[$key]="$(primary_sql "select count(*) from ryw_violations")"
      stop_switchyard "ryw-$case"
    done
  done
  set_replay_delay 0
}

print_ryw() {
  local delay case key fmt='%-7s %-9s | %8s %8s | %8s %8s | %9s | %-24s | %8s | %10s\n'
  echo
  echo "Read-your-writes: pgbench -M $MODE, ${CLIENTS} clients, ${DURATION}s per run; per transaction 1 insert,"
  echo "its read-back, 8 point reads (90% reads).$SY_DEBUG_NOTE"
  # shellcheck disable=SC2059
  printf "$fmt" delay case tps "/eventual" "p50 ms" "p99 ms" "readback" "wait p50/p99 (waits)" "replicas" violations
  printf '%s\n' "$(printf '%.0s-' $(seq 1 118))"
  for delay in $DELAYS; do
    for case in "${RYW_CASES[@]}"; do
      key="ryw|$delay|$case"
      # shellcheck disable=SC2059
      printf "$fmt" "$delay" "$case" "$(fmt_tps "$key" failed)" "$(ratio "$key" "ryw|$delay|eventual")" \
        "${RYW_P50[$key]:--}" "${RYW_P99[$key]:--}" "${RYW_READBACK[$key]:--}" "${RYW_WAIT[$key]:--}" "${RYW_SHARE[$key]:--}" "${RYW_VIOLATIONS[$key]:--}"
    done
  done
  echo "readback: average ms of the read right after the write (pgbench -r); wait: how long reads waited for a"
  echo "replica to replay the write (histogram bucket bounds, switchyard_read_consistency_wait_seconds); replicas: share of the 9 reads"
  echo "per transaction that replicas served (SHOW STATS); violations: read-backs that missed the write."
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  [ "$SKIP_SWITCHYARD" != 1 ] || die "read-your-writes.sh measures Switchyard; unset SKIP_SWITCHYARD"
  bench_prepare
  trap 'set_replay_delay 0 2>/dev/null || true; cleanup' EXIT
  bench_versions
  section "Read-your-writes (${DURATION}s per run)"
  ryw_section
  section "Summary"
  print_ryw
  print_errors
fi
