#!/usr/bin/env bash
# Throughput and latency: pgbench straight to PostgreSQL vs through Switchyard vs through PgBouncer
# (transaction pooling), and BASELINE_BIN beside them when set, interleaved per case so all of them
# see the same machine state. A benchmark, not a test: it prints a table and fails only if the setup
# fails. Knobs: see lib.sh (DURATION, CLIENTS, JOBS, MODES, WORKLOADS, COMPARE_ROUTE, BASELINE_BIN).
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

throughput_start() {
  start_pgbouncer
  [ "$SKIP_SWITCHYARD" = 1 ] && return 0
  # Like for like with direct and PgBouncer: every statement to the primary (COMPARE_ROUTE).
  # Routing to the replicas is measured on its own by read-heavy.sh.
  write_config "$WORK/proxy.conf" "listen_port=$PROXY_PORT" "default_route=${COMPARE_ROUTE:-primary}"
  start_switchyard main "$PROXY_PORT" "$WORK/proxy.conf"
  if [ -n "$BASELINE_BIN" ]; then
    write_config "$WORK/proxy-baseline.conf" "listen_port=$BASELINE_PORT" "default_route=${COMPARE_ROUTE:-primary}"
    SWITCHYARD_BIN="$BASELINE_BIN" start_switchyard baseline "$BASELINE_PORT" "$WORK/proxy-baseline.conf"
  fi
}

throughput_run() {
  local total=0 n=0 w m t
  section "Running pgbench (${DURATION}s per run)"
  for w in $TABLE_WORKLOADS; do for m in $MODES; do total=$((total + 1)); done; done
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
  # Other drivers run their own instances; stopping these also closes their server
  # connections, which flushes those backends' statistics.
  stop_switchyard main
  stop_switchyard baseline
  stop_pgbouncer
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
  echo
  echo "Pooler CPU per transaction, microseconds (user + kernel, all threads, from /proc/<pid>/task/*/schedstat;"
  echo "perf's instruction counters are not supported on this VM, and CPU time is the steadier figure here):"
  local t cpu_fmt='%-12s %-9s |'
  local cpu_targets=()
  for t in "${TARGETS[@]}"; do [ "$t" = direct ] || { cpu_targets+=("$t"); cpu_fmt="$cpu_fmt %10s"; }; done
  # shellcheck disable=SC2059
  printf "$cpu_fmt %8s\n" workload mode "${cpu_targets[@]}" "sy/pgb"
  for w in $TABLE_WORKLOADS; do
    for m in $MODES; do
      local row=()
      for t in "${cpu_targets[@]}"; do row+=("${CPU_US[$w|$m|$t]:--}"); done
      local cpu_ratio=-
      if [ -n "${CPU_US[$w|$m|switchyard]-}" ] && [ -n "${CPU_US[$w|$m|pgbouncer]-}" ]; then
        cpu_ratio="$(awk -v a="${CPU_US[$w|$m|switchyard]}" -v b="${CPU_US[$w|$m|pgbouncer]}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }')"
      fi
      # shellcheck disable=SC2059
      printf "$cpu_fmt %8s\n" "$w" "$m" "${row[@]}" "$cpu_ratio"
    done
  done
}

throughput_summary() {
  print_table
  if [[ " $MODES " == *" prepared "* ]]; then
    echo
    echo "Note: pgbouncer < 1.21 in transaction mode cannot pool named prepared statements"
    echo "(they live on one server connection), so its 'prepared' runs are expected to fail."
  fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  [ -n "$TABLE_WORKLOADS" ] || die "WORKLOADS names no pgbench builtin for the table (got '$WORKLOADS')"
  bench_prepare
  throughput_start
  bench_versions
  throughput_run
  section "Summary"
  throughput_summary
  print_errors
fi
