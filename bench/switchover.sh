#!/usr/bin/env bash
# SWITCHOVER under write load: pgbench tpcb-like through Switchyard, a SWITCHOVER to the physical
# standby partway through, on a fresh deploy/switchover-lab.sh lab per run. Per run it prints the
# client-visible maximum latency, the p99 of transactions that ended inside the switch window, failed
# and lost transactions (pgbench's processed count minus pgbench_history rows on the new primary), the
# clients held and the phase timings; then min, median and max across runs. The last run also
# switches back (after making the former primary a standby of the new one) and reports that too.
#
# Knobs: RUNS [10], DURATION [30] seconds of pgbench, SWITCH_AT [10] seconds into it, CLIENTS [16],
# JOBS [2], SWITCHYARD_BIN (else a release build), LAB_PROXY_PORT [16540], KEEP_LOGS=1.
# Target: max client-visible latency < 250 ms, 0 errors, 0 lost, in every run.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=deploy/lib.sh
. "$HERE/../deploy/lib.sh"

RUNS="${RUNS:-10}"; DURATION="${DURATION:-30}"; SWITCH_AT="${SWITCH_AT:-10}"
CLIENTS="${CLIENTS:-16}"; JOBS="${JOBS:-2}"; PORT="${LAB_PROXY_PORT:-16540}"
for v in RUNS DURATION SWITCH_AT CLIENTS JOBS PORT; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[ "$SWITCH_AT" -lt "$DURATION" ] || die "SWITCH_AT ($SWITCH_AT) must be less than DURATION ($DURATION)"
LAB="$HERE/../deploy/switchover-lab.sh"
export SWITCHYARD_PG_DIR="${SWITCHYARD_PG_DIR:-/tmp/switchyard-bench-pg}"
LAB_SOCKETS="$SWITCHYARD_PG_DIR-lab/run"
WORK="$(mktemp -d /tmp/switchyard-switchover-bench.XXXXXX)"
chmod 755 "$WORK"
PROXY_PID=""

cleanup() {
  [ -n "$PROXY_PID" ] && kill "$PROXY_PID" 2>/dev/null || true
  bash "$LAB" destroy >/dev/null 2>&1 || true
  if [ "${KEEP_LOGS:-0}" = 1 ]; then log "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

if [ -z "${SWITCHYARD_BIN:-}" ]; then build_switchyard_release; fi
[ -x "$SWITCHYARD_BIN" ] || die "SWITCHYARD_BIN=$SWITCHYARD_BIN is not executable"

lab_sql() { "$PG_BIN/psql" -X -At -h "$LAB_SOCKETS" -p "$1" -U postgres -d bench -c "$2"; }
console() { PGPASSWORD=admin-secret "$PG_BIN/psql" -X -At -h 127.0.0.1 -p "$PORT" -U admin -d switchyard -c "$1"; }

start_proxy() {
  local dir="$1"
  cat >"$dir/proxy.conf" <<EOF
[switchyard]
listen_addr = 127.0.0.1
listen_port = $PORT
pool_mode = transaction
pool_size = $CLIENTS
admin_users = admin
health_check_user = app
health_check_interval = 0.2
switchover_user = switchover
state_file = $dir/state.json
log_level = notice

[servers]
primary = host=127.0.0.1 port=15440 role=primary
standby = host=127.0.0.1 port=15441 role=standby
replica = host=127.0.0.1 port=15442 role=replica

[users]
app = password=app-secret
admin = password=admin-secret
switchover = password=switchover-secret
EOF
  "$SWITCHYARD_BIN" run --config "$dir/proxy.conf" >"$dir/switchyard.log" 2>&1 &
  PROXY_PID=$!
  local deadline=$((SECONDS + 30))
  until console "SHOW VERSION" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || { tail -20 "$dir/switchyard.log" >&2; die "switchyard did not start"; }
    sleep 0.1
  done
}

stop_proxy() { kill "$PROXY_PID" 2>/dev/null || true; wait "$PROXY_PID" 2>/dev/null || true; PROXY_PID=""; }

# One switchover row as "outcome held longest_hold preflight drain fence catchup promote flip total".
row_fields() {
  awk -F'|' '{ printf "%s %s %.0f %.0f %.0f %.0f %.1f %.0f %.0f %.0f", $2, $8, $9, $10, $11, $12, $13, $14, $15, $16 }'
}

# max latency (ms) over every transaction, and p99 (ms) of those ending in [from, to] (epoch seconds).
latencies() {
  local from="$1" to="$2" max p99 n; shift 2
  max="$(cat "$@" | awk '{ lat = $3 / 1000; if (lat > max) max = lat } END { printf "%.1f", max }')"
  read -r p99 n <<<"$(cat "$@" | awk -v from="$from" -v to="$to" '{ end = $5 + $6 / 1e6; if (end >= from && end <= to) print $3 / 1000 }' \
    | sort -n | awk '{ v[NR] = $1 } END { i = int(0.99 * NR); if (i < 1) i = 1; printf "%.1f %d", (NR ? v[i] : 0), NR }')"
  printf '%s %s %s' "$max" "$p99" "$n"
}

declare -a MAXES HOLDS
printf '\n%-4s %-9s %8s %8s %6s %6s %5s %5s %9s %6s %6s %7s %8s %6s %6s\n' run outcome max_ms p99win_ms failed lost held hold_ms preflight drain fence catchup promote flip total
for run in $(seq 1 "$RUNS"); do
  dir="$WORK/run$run"; mkdir -p "$dir"; chmod 777 "$dir"
  bash "$LAB" start >"$dir/lab.log" 2>&1 || { tail -20 "$dir/lab.log" >&2; die "lab start failed"; }
  start_proxy "$dir"
  before="$(lab_sql 15440 'select count(*) from pgbench_history')"
  (cd "$dir" && PGPASSWORD=app-secret timeout $((DURATION + 60)) "$PG_BIN/pgbench" -h 127.0.0.1 -p "$PORT" -U app -n \
     -b tpcb-like -c "$CLIENTS" -j "$JOBS" -T "$DURATION" -l --log-prefix=tx bench >"$dir/pgbench.out" 2>&1) &
  bench_pid=$!
  sleep "$SWITCH_AT"
  t0="$(date +%s.%N)"
  console "SWITCHOVER TO standby" >"$dir/switchover.out" 2>"$dir/switchover.err" || true
  t1="$(date +%s.%N)"
  wait "$bench_pid" || true
  processed="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$dir/pgbench.out")"
  failed="$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$dir/pgbench.out")"
  after="$(lab_sql 15441 'select count(*) from pgbench_history' 2>/dev/null || echo '?')"
  lost="?"; [[ "$processed$after$before" =~ ^[0-9]+$ ]] && lost=$((processed - (after - before)))
  read -r max p99 _ <<<"$(latencies "$t0" "$(awk -v t="$t1" 'BEGIN { printf "%.6f", t + 1 }')" "$dir"/tx.*)"
  if [ -s "$dir/switchover.out" ]; then
    read -r outcome held hold pre drain fence catch promote flip total <<<"$(row_fields <"$dir/switchover.out")"
  else
    outcome="error"; held=0; hold=0; pre=0; drain=0; fence=0; catch=0; promote=0; flip=0; total=0
    sed 's/^/    /' "$dir/switchover.err" >&2
  fi
  printf '%-4s %-9s %8s %8s %6s %6s %5s %5s %9s %6s %6s %7s %8s %6s %6s\n' "$run" "$outcome" "$max" "$p99" "${failed:-?}" "$lost" \
    "$held" "$hold" "$pre" "$drain" "$fence" "$catch" "$promote" "$flip" "$total"
  MAXES+=("$max"); HOLDS+=("$hold")
  if [ "$run" -eq "$RUNS" ]; then
    refused="$(console 'SWITCHOVER TO primary' 2>&1 >/dev/null | sed -n 's/^ERROR: *//p' | head -1 || true)"
    printf '\nswitch back before reverse replication: %s\n' "${refused:-NOT REFUSED}"
    bash "$LAB" rebuild-primary >"$dir/rebuild.log" 2>&1 || { tail -20 "$dir/rebuild.log" >&2; die "rebuild-primary failed"; }
    back="$(console 'SWITCHOVER TO primary' 2>&1)" || true
    printf 'switch back after rebuild-primary: %s\n' "$(printf '%s\n' "$back" | grep '|' | row_fields || printf '%s' "$back")"
  fi
  stop_proxy
done

summary() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { printf "min %s, median %s, max %s", v[1], v[int((NR + 1) / 2)], v[NR] }'; }
printf '\nmax client-visible latency (ms): %s\n' "$(summary "${MAXES[@]}")"
printf 'client hold (ms):                %s\n' "$(summary "${HOLDS[@]}")"
printf 'target: max latency < 250 ms, 0 failed, 0 lost, in every run\n'
