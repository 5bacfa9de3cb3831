#!/usr/bin/env bash
# Half-open connections: pgbench (-c 4 -S -M extended, DURATION s) through Switchyard and through PgBouncer,
# first alone, then while HALF_OPEN (5000) more connections sit there without finishing start-up
# (bench/half-open-client.py: half silent, half stopped inside the startup packet). Prints tps and average
# latency both ways and the ratio, and the pooler's RSS with them open. Runs well inside Switchyard's 60 s
# login timeout. Knobs (besides lib.sh's): HALF_OPEN [5000].
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HALF_OPEN="${HALF_OPEN:-5000}"
[[ "$HALF_OPEN" =~ ^[1-9][0-9]*$ ]] || die "HALF_OPEN must be a positive integer (got '$HALF_OPEN')"
HALF_LINES=()

# half_open_run LABEL PORT PID: pgbench alone, then beside HALF_OPEN idle connections.
half_open_run() {
  local label="$1" port="$2" pid="$3" opener rss_before rss_open
  run_pgbench_raw "half|$label|alone" "$label alone" "$port" "" "$RUN_TIMEOUT" -- -c 4 -j 2 -T "$DURATION" -S -M extended
  rss_before="$(rss_kb "$pid")"
  python3 "$BENCH_DIR/half-open-client.py" "$PG_HOST" "$port" "$HALF_OPEN" >"$WORK/half-open-$label.txt" 2>&1 &
  opener=$!
  local deadline=$((SECONDS + 40))
  until grep -q '^opened' "$WORK/half-open-$label.txt" 2>/dev/null; do
    alive "$opener" || { cat "$WORK/half-open-$label.txt" >&2; die "half-open-client.py failed against $label"; }
    [ "$SECONDS" -lt "$deadline" ] || die "opening $HALF_OPEN connections to $label took over 40 s"
    sleep 0.2
  done
  rss_open="$(rss_kb "$pid")"
  run_pgbench_raw "half|$label|open" "$label + $HALF_OPEN half-open" "$port" "" "$RUN_TIMEOUT" -- -c 4 -j 2 -T "$DURATION" -S -M extended
  kill "$opener" 2>/dev/null || true
  wait "$opener" 2>/dev/null || true
  HALF_LINES+=("$(printf 'half-open: %-10s alone %s tps %s ms | with %d half-open %s tps %s ms | ratio %s | RSS %d KB -> %d KB' \
    "$label" "$(fmt_tps "half|$label|alone" failed)" "$(fmt_lat "half|$label|alone" -)" "$HALF_OPEN" \
    "$(fmt_tps "half|$label|open" failed)" "$(fmt_lat "half|$label|open" -)" "$(ratio "half|$label|open" "half|$label|alone")" \
    "$rss_before" "$rss_open")")
}

half_open_section() {
  ulimit -n "$(( HALF_OPEN * 2 + 256 ))" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  write_config "$WORK/proxy-half-open.conf" "listen_port=$PROXY_PORT" "max_client_conn=$(( HALF_OPEN + 100 ))" "default_route=primary"
  start_switchyard half-open "$PROXY_PORT" "$WORK/proxy-half-open.conf"
  half_open_run switchyard "$PROXY_PORT" "${INSTANCE_PID[half-open]}"
  stop_switchyard half-open
  PGB_MAX_CLIENT_CONN=$(( HALF_OPEN + 100 )) start_pgbouncer
  half_open_run pgbouncer "$PGBOUNCER_PORT" "$(cat "$PGB_PID_FILE")"
  stop_pgbouncer
}

half_open_summary() {
  echo "Half-open connections (pgbench -c 4 -S -M extended, ${DURATION}s, alone and beside $HALF_OPEN unfinished start-ups):$SY_DEBUG_NOTE"
  printf '%s\n' "${HALF_LINES[@]}"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  [ "$SKIP_SWITCHYARD" != 1 ] || die "half-open.sh measures Switchyard; unset SKIP_SWITCHYARD"
  bench_prepare
  bench_versions
  section "Half-open connections ($HALF_OPEN)"
  half_open_section
  section "Summary"
  half_open_summary
fi
