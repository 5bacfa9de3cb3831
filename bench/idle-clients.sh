#!/usr/bin/env bash
# Proxy memory per idle client: IDLE_CLIENTS logged-in connections that send nothing, held open against
# Switchyard and against PgBouncer in turn; the figure is (RSS after - RSS before) / clients, from
# /proc/PID/status. The clients are bench/idle-client.py (its own SCRAM, so logins are cheap).
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IDLE_LINES=()

# idle_measure LABEL PORT PID: one run of idle-client.py, appended to IDLE_LINES.
idle_measure() {
  local label="$1" port="$2" pid="$3" out rc=0 before after opened
  log "idle clients ($label): opening $IDLE_CLIENTS"
  out="$(timeout -k 5 600 python3 "$BENCH_DIR/idle-client.py" "$PG_HOST" "$port" "$APP_USER" "$APP_PASSWORD" bench \
           "$IDLE_CLIENTS" "$pid" 2>&1)" || rc=$?
  if [ "$rc" -ne 0 ]; then
    IDLE_LINES+=("idle: $(printf '%-10s' "$label") failed: $(printf '%s' "$out" | tail -n 1)")
    return
  fi
  read -r before after opened <<<"$out"
  IDLE_LINES+=("$(awk -v l="$label" -v b="$before" -v a="$after" -v n="$opened" \
    'BEGIN { printf "idle: %-10s %6.2f KB per idle client  (RSS %d KB -> %d KB with %d clients)", l, (a - b) / n, b, a, n }')")
}

idle_section() {
  # Both poolers and this shell's clients need a descriptor per connection.
  ulimit -n "$(( IDLE_CLIENTS * 2 + 256 ))" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  write_config "$WORK/proxy-idle.conf" "listen_port=$PROXY_PORT" "max_client_conn=$(( IDLE_CLIENTS + 100 ))"
  start_switchyard idle "$PROXY_PORT" "$WORK/proxy-idle.conf"
  idle_measure switchyard "$PROXY_PORT" "${INSTANCE_PID[idle]}"
  stop_switchyard idle
  PGB_MAX_CLIENT_CONN=$(( IDLE_CLIENTS + 100 )) start_pgbouncer
  idle_measure pgbouncer "$PGBOUNCER_PORT" "$(cat "$PGB_PID_FILE")"
  stop_pgbouncer
}

idle_summary() {
  echo "Memory per idle client (RSS growth / clients, each client logged in and silent, fd limit $(ulimit -n)):$SY_DEBUG_NOTE"
  printf '%s\n' "${IDLE_LINES[@]}"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  [ "$SKIP_SWITCHYARD" != 1 ] || die "idle-clients.sh measures Switchyard; unset SKIP_SWITCHYARD"
  bench_prepare
  bench_versions
  section "Idle clients ($IDLE_CLIENTS per pooler)"
  idle_section
  section "Summary"
  idle_summary
fi
