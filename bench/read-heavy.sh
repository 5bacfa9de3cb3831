#!/usr/bin/env bash
# Read-heavy routing: a 90% read / 10% write mix through Switchyard with default_route = auto (reads to
# the replicas) vs default_route = primary, and the share of transactions each server committed.
# Knobs: see lib.sh (DURATION, CLIENTS, JOBS, MODES, STATS_SETTLE).
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

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

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  [ "$SKIP_SWITCHYARD" != 1 ] || die "read-heavy.sh measures Switchyard; unset SKIP_SWITCHYARD"
  bench_prepare
  bench_versions
  section "Read-heavy routing (${DURATION}s per run)"
  read_heavy_section
  section "Summary"
  print_read_heavy
  print_errors
fi
