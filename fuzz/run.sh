#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer, with AddressSanitizer) of Switchyard's pure decoders and parsers.
#
#   fuzz/run.sh [seconds-per-target] [targets...]     default: 60 s each for wire sql config scram
#
# Builds fuzz/ (a package of its own: it only links with -sanitize=fuzzer) into .build-fuzz, then runs
# each target with its corpus in fuzz/corpus/<target> (seeds checked in; new finds are kept locally).
# A crash leaves its input as fuzz/crash-<target>-*; replay it with
#   FUZZ_TARGET=<target> .build-fuzz/release/switchyard-fuzz <file>
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
SECONDS_EACH="${1:-60}"; shift || true
TARGETS=("${@:-wire sql config scram}")
# shellcheck disable=SC2206
TARGETS=(${TARGETS[*]})
swift build -c release --scratch-path ../.build-fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
BIN=../.build-fuzz/release/switchyard-fuzz
status=0
for target in "${TARGETS[@]}"; do
  mkdir -p "corpus/$target" "work/$target"
  echo "== $target: ${SECONDS_EACH}s"
  # New corpus entries go to work/ (not committed); the checked-in seeds stay as they are.
  if ! FUZZ_TARGET="$target" "$BIN" "work/$target" "corpus/$target" -max_total_time="$SECONDS_EACH" -max_len=4096 \
        -artifact_prefix="crash-$target-" -print_final_stats=1 2>"work/$target.log"; then
    echo "   FAILED: see fuzz/work/$target.log and fuzz/crash-$target-*"; status=1
  fi
  grep -E "stat::number_of_executed_units|stat::new_units_added|cov:" "work/$target.log" | tail -3 | sed 's/^/   /'
done
exit "$status"
