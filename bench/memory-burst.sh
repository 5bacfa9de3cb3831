#!/usr/bin/env bash
# Memory under a burst of very large messages: BURST_CLIENTS clients each send one BURST_MB MB Parse at the
# same moment while one more client runs pgbench through the same Switchyard. Prints the proxy's RSS before
# the burst, its peak, and BURST_SETTLE seconds after the burst, what each burst client saw, and the pgbench
# client's errors and latency. Knobs (besides lib.sh's):
#   BURST_CLIENTS [6]  BURST_MB [300]  BURST_SETTLE [30]
#   BURST_CONFIG [""]  extra [switchyard] keys, e.g. "max_buffered_bytes=268435456" (the default budget,
#                      512 MiB, fits one 300 MB message at a time)
#   BURST_PGBENCH ["-c 1 -M extended -b select-only"]
# Targets (issue "bounded memory"): peak RSS <= budget + 100 MB; RSS after settling <= 2x before; 0 pgbench errors.
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BURST_CLIENTS="${BURST_CLIENTS:-6}"
BURST_MB="${BURST_MB:-300}"
BURST_SETTLE="${BURST_SETTLE:-30}"
BURST_CONFIG="${BURST_CONFIG-}"
BURST_PGBENCH="${BURST_PGBENCH:--c 1 -M extended -b select-only}"
for v in BURST_CLIENTS BURST_MB BURST_SETTLE; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
BURST_LINES=()

# burst_run LABEL BINARY: one instance, one burst, lines appended to BURST_LINES.
burst_run() {
  local label="$1" binary="$2" pid before peak after sampler pgb_raw i rc=0 lat_avg lat_max errors xacts started
  local -a bursts=()
  local -a keys=("listen_port=$PROXY_PORT")
  # shellcheck disable=SC2206
  [ -z "$BURST_CONFIG" ] || keys+=($BURST_CONFIG)
  write_config "$WORK/proxy-burst-$label.conf" "${keys[@]}"
  SWITCHYARD_BIN="$binary" start_switchyard "burst-$label" "$PROXY_PORT" "$WORK/proxy-burst-$label.conf"
  pid="${INSTANCE_PID[burst-$label]}"
  sleep 2
  before="$(rss_kb "$pid")"
  # RSS every 100 ms into a file; the peak is its maximum.
  (while alive "$pid"; do rss_kb "$pid"; sleep 0.1; done) >"$WORK/rss-$label.txt" &
  sampler=$!
  pgb_raw="$WORK/pgbench-burst-$label.log"
  # shellcheck disable=SC2086
  # Runs until stopped after the settling time: the figures come from its per-transaction log.
  PGPASSWORD="$APP_PASSWORD" timeout -k 5 $((BURST_SETTLE + 900)) "$PG_BIN/pgbench" -h "$PG_HOST" -p "$PROXY_PORT" \
    -U "$APP_USER" -n $BURST_PGBENCH -T 3600 --log --log-prefix="$WORK/pgb-$label" bench >"$pgb_raw" 2>&1 &
  PGBENCH_PID=$!
  sleep 3
  log "burst ($label): $BURST_CLIENTS clients x $BURST_MB MB Parse"
  for i in $(seq 1 "$BURST_CLIENTS"); do
    timeout -k 5 600 python3 "$BENCH_DIR/burst-client.py" "$PG_HOST" "$PROXY_PORT" "$APP_USER" "$APP_PASSWORD" bench \
      "$BURST_MB" >"$WORK/burst-$label-$i.txt" 2>&1 &
    bursts+=($!)
  done
  started=$SECONDS
  wait "${bursts[@]}" || true   # each client's outcome is in its file
  log "burst ($label): done in $((SECONDS - started))s; settling ${BURST_SETTLE}s"
  sleep "$BURST_SETTLE"
  after="$(rss_kb "$pid")"
  if alive "$PGBENCH_PID"; then
    kill -TERM "$PGBENCH_PID" 2>/dev/null || true
    wait "$PGBENCH_PID" 2>/dev/null || true
  else
    wait "$PGBENCH_PID" || rc=$?   # it stopped by itself: an abort
    [ "$rc" -ne 0 ] || rc=1
  fi
  PGBENCH_PID=""
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  peak="$(sort -n "$WORK/rss-$label.txt" | tail -n 1)"
  errors="$(grep -ciE 'error|fatal|abort' "$pgb_raw" || true)"
  [ "$rc" -eq 0 ] || errors="pgbench ended early (exit $rc): $(grep -m1 -iE 'error|fatal|abort' "$pgb_raw" || tail -n 1 "$pgb_raw")"
  xacts="$(cat "$WORK"/pgb-"$label"* 2>/dev/null | wc -l)"
  # pgbench --log lines: client_id transaction_no time_us script_no time_epoch time_us
  read -r lat_avg lat_max < <(cat "$WORK"/pgb-"$label"* 2>/dev/null |
    awk '{ s += $3; n++; if ($3 > m) m = $3 } END { if (n) printf "%.2f %.1f\n", s / n / 1000, m / 1000; else print "- -" }')
  BURST_LINES+=("$(printf 'burst: %-10s RSS before %7d KB  peak %8d KB  after %ss %7d KB (%.2fx before)' \
    "$label" "$before" "$peak" "$BURST_SETTLE" "$after" "$(awk -v a="$after" -v b="$before" 'BEGIN { print a / b }')")")
  BURST_LINES+=("$(printf '       %-10s pgbench: %s transactions, failed %s, latency avg %s ms, max %s ms' \
    "$label" "${xacts:--}" "${errors:-0}" "$lat_avg" "$lat_max")")
  # "ok SECONDS" or "error SQLSTATE SECONDS message": counted by outcome, with the slowest client's time.
  BURST_LINES+=("$(printf '       %-10s burst clients: %s' "$label" "$(cat "$WORK"/burst-"$label"-*.txt | awk '
    $1 == "ok" { key = "ok"; t = $2 } $1 == "error" { key = "error " $2; t = $3 } $1 != "ok" && $1 != "error" { key = "failed: " $0; t = 0 }
    { n[key]++; if (t > slowest) slowest = t; if ($1 == "error" && !(key in text)) { $1 = $2 = $3 = ""; text[key] = $0 } }
    END { for (k in n) printf "%d %s%s; ", n[k], k, (k in text ? " (" substr(text[k], 4) ")" : ""); printf "slowest %.1f s", slowest }')")")
  stop_switchyard "burst-$label"
}

burst_section() {
  burst_run switchyard "$SWITCHYARD_BIN"
  if [ -n "$BASELINE_BIN" ]; then BURST_CONFIG="${BASELINE_BURST_CONFIG-}" burst_run baseline "$BASELINE_BIN"; fi
}

burst_summary() {
  echo "Memory under a burst ($BURST_CLIENTS clients x $BURST_MB MB Parse, pgbench $BURST_PGBENCH beside them; config: ${BURST_CONFIG:-none}):$SY_DEBUG_NOTE"
  printf '%s\n' "${BURST_LINES[@]}"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  [ "$SKIP_SWITCHYARD" != 1 ] || die "memory-burst.sh measures Switchyard; unset SKIP_SWITCHYARD"
  bench_prepare
  bench_versions
  section "Memory burst"
  burst_section
  section "Summary"
  burst_summary
fi
