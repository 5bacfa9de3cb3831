#!/usr/bin/env bash
# The statement classifier's cost per statement, from `switchyard benchmark-classifier` (meaningful in
# release builds). Knobs: CLASSIFIER_ITERATIONS, SWITCHYARD_BIN (see lib.sh).
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

classifier_section() {
  local out rc=0
  out="$(timeout -k 5 "$CLASSIFIER_TIMEOUT" "$SWITCHYARD_BIN" benchmark-classifier \
           --iterations "$CLASSIFIER_ITERATIONS" 2>&1)" || rc=$?
  if [ "$rc" -eq 0 ] && [ -n "$out" ]; then
    mapfile -t CLASSIFIER_LINES <<<"$out"
  else
    CLASSIFIER_LINES=("classifier: unavailable ($SWITCHYARD_BIN benchmark-classifier exit code $rc: $(printf '%s' "$out" | tail -n 1))")
  fi
}

classifier_summary() { printf '%s\n' "${CLASSIFIER_LINES[@]}"; }

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  bench_prepare
  section "Classifier benchmark ($CLASSIFIER_ITERATIONS iterations)"
  classifier_section
  section "Summary"
  classifier_summary
fi
