#!/usr/bin/env bash
# Soak: SOAK_CLIENTS (10000) logged-in idle clients stay connected to one Switchyard while pgbench
# (SOAK_PGBENCH: -c 16 -j 2 -M extended -b tpcb-like; add -C for a new connection per transaction, so logins
# churn too) runs for SOAK_SECONDS (600). Every SOAK_SAMPLE (10) s the proxy's RSS and descriptor count are
# sampled; prints first, last, min and max of each, and pgbench's transactions and errors.
# Knobs (besides lib.sh's): SOAK_CLIENTS, SOAK_SECONDS, SOAK_SAMPLE.
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SOAK_CLIENTS="${SOAK_CLIENTS:-10000}"
SOAK_SECONDS="${SOAK_SECONDS:-600}"
SOAK_SAMPLE="${SOAK_SAMPLE:-10}"
SOAK_PGBENCH="${SOAK_PGBENCH:--c 16 -j 2 -M extended -b tpcb-like}"
for v in SOAK_CLIENTS SOAK_SECONDS SOAK_SAMPLE; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
SOAK_LINES=()

soak_section() {
  local pid holder rc=0 raw="$WORK/pgbench-soak.log" samples="$WORK/soak-samples.txt" t
  ulimit -n "$(( SOAK_CLIENTS * 2 + 256 ))" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  write_config "$WORK/proxy-soak.conf" "listen_port=$PROXY_PORT" "max_client_conn=$(( SOAK_CLIENTS + 200 ))"
  start_switchyard soak "$PROXY_PORT" "$WORK/proxy-soak.conf"
  pid="${INSTANCE_PID[soak]}"
  log "soak: opening $SOAK_CLIENTS idle clients"
  python3 "$BENCH_DIR/idle-client.py" "$PG_HOST" "$PROXY_PORT" "$APP_USER" "$APP_PASSWORD" bench "$SOAK_CLIENTS" "$pid" \
    $((SOAK_SECONDS + 60)) >"$WORK/soak-idle.txt" 2>&1 &
  holder=$!
  until [ -s "$WORK/soak-idle.txt" ]; do
    alive "$holder" || { cat "$WORK/soak-idle.txt" >&2; die "idle-client.py failed"; }
    sleep 0.5
  done
  log "soak: $(cat "$WORK/soak-idle.txt") (RSS before, after, clients); pgbench for ${SOAK_SECONDS}s"
  # shellcheck disable=SC2086
  PGPASSWORD="$APP_PASSWORD" timeout -k 5 $((SOAK_SECONDS + 120)) "$PG_BIN/pgbench" -h "$PG_HOST" -p "$PROXY_PORT" \
    -U "$APP_USER" -n $SOAK_PGBENCH -T "$SOAK_SECONDS" bench >"$raw" 2>&1 &
  PGBENCH_PID=$!
  : >"$samples"
  t=0
  while alive "$PGBENCH_PID"; do
    printf '%d %s %s\n' "$t" "$(rss_kb "$pid")" "$(ls "/proc/$pid/fd" | wc -l)" >>"$samples"
    sleep "$SOAK_SAMPLE"
    t=$((t + SOAK_SAMPLE))
  done
  wait "$PGBENCH_PID" || rc=$?
  PGBENCH_PID=""
  kill "$holder" 2>/dev/null || true
  wait "$holder" 2>/dev/null || true
  SOAK_LINES+=("$(awk 'NR == 1 { r0 = $2; f0 = $3; rmin = rmax = $2; fmin = fmax = $3 }
    { if ($2 < rmin) rmin = $2; if ($2 > rmax) rmax = $2; if ($3 < fmin) fmin = $3; if ($3 > fmax) fmax = $3; r = $2; f = $3; n++ }
    END { printf "soak: %d samples; RSS first %d KB, last %d KB, min %d, max %d; descriptors first %d, last %d, min %d, max %d", n, r0, r, rmin, rmax, f0, f, fmin, fmax }' "$samples")")
  SOAK_LINES+=("$(printf 'soak: pgbench exit %d, %s transactions, failed %s; %s' "$rc" \
    "$(awk -F': ' '/^number of transactions actually processed/ { print $2; exit }' "$raw")" \
    "$(awk '/^number of failed transactions/ { print $5; exit }' "$raw")" "$(grep -m1 '^tps' "$raw" || tail -n 1 "$raw")")")
  SOAK_LINES+=("soak: clients still connected at the end: $(grep -c . "$WORK/soak-idle.txt") report line(s): $(cat "$WORK/soak-idle.txt")")
  stop_switchyard soak
}

soak_summary() {
  echo "Soak ($SOAK_CLIENTS idle clients held, pgbench $SOAK_PGBENCH for ${SOAK_SECONDS}s):$SY_DEBUG_NOTE"
  printf '%s\n' "${SOAK_LINES[@]}"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  [ "$SKIP_SWITCHYARD" != 1 ] || die "soak.sh measures Switchyard; unset SKIP_SWITCHYARD"
  bench_prepare
  bench_versions
  section "Soak (${SOAK_SECONDS}s)"
  soak_section
  section "Summary"
  soak_summary
fi
