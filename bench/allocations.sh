#!/usr/bin/env bash
# Heap allocations per transaction in the proxy, in every pgbench -M mode, counted by a malloc shim
# preloaded into a Switchyard instance of its own. Knobs: ALLOC_TRANSACTIONS, ALLOC_CLIENTS, ALLOC_ROUTE,
# ALLOC_PORT, MODES (see lib.sh).
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

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
  gcc -O2 -Wall -shared -fPIC -o "$WORK/malloc-count.so" "$BENCH_DIR/malloc-count.c" -ldl
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

alloc_summary() {
  echo "Heap allocations in Switchyard per transaction (pgbench -S unless noted; malloc+calloc+aligned allocs"
  echo "of the whole process, so SwiftNIO's read buffers and background work are included), ${ALLOC_CLIENTS} clients,"
  echo "pool_mode = transaction, default_route = $ALLOC_ROUTE, after a 200-transaction warm-up:$SY_DEBUG_NOTE"
  printf '%s\n' "${ALLOC_LINES[@]}"
  if [[ " $MODES " == *" simple "* ]]; then
    echo "(-M simple -S sends a new literal in every statement; the classification cache admits a statement"
    echo "on its second sighting, so those cost a hash, never a copy; the constant-SELECT line is a cache hit.)"
  fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  [ "$SKIP_SWITCHYARD" != 1 ] || die "allocations.sh measures Switchyard; unset SKIP_SWITCHYARD"
  bench_prepare
  bench_versions
  section "Allocations per transaction (-t $ALLOC_TRANSACTIONS -c $ALLOC_CLIENTS per mode)"
  alloc_section
  section "Summary"
  alloc_summary
  print_errors
fi
