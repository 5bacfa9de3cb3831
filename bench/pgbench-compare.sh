#!/usr/bin/env bash
# Every benchmark driver in one run, on one build and one cluster: throughput.sh (the interleaved
# Switchyard / direct / PgBouncer / BASELINE_BIN table), read-heavy.sh, allocations.sh, idle-clients.sh
# and classifier.sh, then all their summaries. Knobs: see lib.sh; SKIP_SWITCHYARD, SKIP_ALLOC,
# SKIP_IDLE and SKIP_CLASSIFIER leave drivers out, WORKLOADS without read-heavy leaves read-heavy.sh out.
here="$(dirname "${BASH_SOURCE[0]}")"
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
for driver in throughput read-heavy allocations idle-clients classifier; do
  # shellcheck disable=SC1090
  . "$here/$driver.sh"
done

bench_prepare
[ -z "$TABLE_WORKLOADS" ] || throughput_start
bench_versions
[ -z "$TABLE_WORKLOADS" ] || throughput_run
run_switchyard_driver() { [ "$SKIP_SWITCHYARD" != 1 ] && [ "$1" != 1 ]; }
if [ "$READ_HEAVY" = 1 ] && run_switchyard_driver 0; then
  section "Read-heavy routing (${DURATION}s per run)"
  read_heavy_section
fi
if run_switchyard_driver "$SKIP_ALLOC"; then
  section "Allocations per transaction (-t $ALLOC_TRANSACTIONS -c $ALLOC_CLIENTS per mode)"
  alloc_section
fi
if run_switchyard_driver "$SKIP_IDLE"; then
  section "Idle clients ($IDLE_CLIENTS per pooler)"
  idle_section
fi
if run_switchyard_driver "$SKIP_CLASSIFIER"; then
  section "Classifier benchmark ($CLASSIFIER_ITERATIONS iterations)"
  classifier_section   # alone on our side: every proxy and pgbench has stopped
fi

section "Summary"
[ -z "$TABLE_WORKLOADS" ] || throughput_summary
if [ "$READ_HEAVY" = 1 ]; then
  if run_switchyard_driver 0; then print_read_heavy; else echo; echo "Read-heavy routing: skipped (SKIP_SWITCHYARD=1)"; fi
fi
echo
if run_switchyard_driver "$SKIP_CLASSIFIER"; then classifier_summary; else echo "classifier: skipped"; fi
echo
if run_switchyard_driver "$SKIP_ALLOC"; then alloc_summary; else echo "alloc: skipped"; fi
echo
if run_switchyard_driver "$SKIP_IDLE"; then idle_summary; else echo "idle: skipped"; fi
print_errors
