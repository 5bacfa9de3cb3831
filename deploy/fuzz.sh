#!/usr/bin/env bash
# Coverage-guided fuzzing of Switchyard's input decoders with libFuzzer and AddressSanitizer.
# The targets and the invariants each checks: Sources/SwitchyardFuzzTargets/.
#
#   deploy/fuzz.sh build                 build .build-fuzz/$FUZZ_BUILD/switchyard-fuzz (SWITCHYARD_FUZZ=1;
#                                        FUZZ_BUILD=debug by default, release for long runs)
#   deploy/fuzz.sh run [target ...]      fuzz each target (all when none is named), one after another,
#                                        for FUZZ_SECONDS (default 60) or FUZZ_RUNS executions each
#   deploy/fuzz.sh smoke                 build, then every target for 15 s: what CI runs
#   deploy/fuzz.sh list                  the target names
#   deploy/fuzz.sh capture               re-capture the seed corpus from real psql, pgbench and
#                                        psycopg traffic against the local cluster (deploy/cluster.sh start)
#
# Each run starts from the committed seeds (Tests/SwitchyardFuzzTargetsTests/Corpus/<target>) plus what
# earlier runs here found interesting (.build-fuzz/corpus/<target>). A finding (crash, sanitizer
# report, broken invariant, timeout) is saved under .build-fuzz/findings/<target>/ and fails the run;
# copy it into the seed corpus as finding-<name> once fixed, and the unit tests replay it for good.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=deploy/lib.sh
. "$ROOT/deploy/lib.sh"
cd "$ROOT"

SCRATCH="$ROOT/.build-fuzz"
# debug builds in about 5 minutes (CI's smoke run); release takes about 10 but runs ten times as many
# inputs per second, for long runs.
FUZZ_BUILD="${FUZZ_BUILD:-debug}"
case "$FUZZ_BUILD" in debug|release) ;; *) die "FUZZ_BUILD must be debug or release (got '$FUZZ_BUILD')" ;; esac
BIN="$SCRATCH/$FUZZ_BUILD/switchyard-fuzz"
SEEDS="$ROOT/Tests/SwitchyardFuzzTargetsTests/Corpus"
# One seed directory per target (CorpusReplayTests checks every target has one).
mapfile -t TARGETS < <(ls "$SEEDS")

build() {
  ensure_swift_build_deps
  log "building switchyard-fuzz (libFuzzer + AddressSanitizer) into $SCRATCH"
  local status
  SWITCHYARD_FUZZ=1 swift build -c "$FUZZ_BUILD" --scratch-path "$SCRATCH" --product switchyard-fuzz 2>&1 \
    | { grep -v "ld.gold: warning: Cannot export local symbol" || true; } >&2
  status="${PIPESTATUS[0]}"
  [ "$status" -eq 0 ] && [ -x "$BIN" ] || die "the fuzz build failed (exit $status; see output above)"
}

# fuzz_one TARGET: one libFuzzer run; prints a summary line; returns non-zero on a finding.
fuzz_one() {
  local target="$1" corpus="$SCRATCH/corpus/$1" findings="$SCRATCH/findings/$1" log="$SCRATCH/logs/$1.log"
  [ -d "$SEEDS/$target" ] || die "unknown target $target (deploy/fuzz.sh list)"
  mkdir -p "$corpus" "$findings" "$(dirname "$log")"
  local limits=(-max_total_time="${FUZZ_SECONDS:-60}")
  [ -n "${FUZZ_RUNS:-}" ] && limits=(-runs="$FUZZ_RUNS")
  local rc=0
  # -timeout: one input taking over 10 s is a finding (a hang a client could cause);
  # -rss_limit_mb: so is memory that grows past 2 GB.
  # SWIFT_BACKTRACE off: the sanitizer reports the crash; the backtracer only trips over ASan.
  SWITCHYARD_FUZZ_TARGET="$target" ASAN_OPTIONS="detect_leaks=0:abort_on_error=1" SWIFT_BACKTRACE=enable=no \
    "$BIN" "${limits[@]}" -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
      -artifact_prefix="$findings/" "$corpus" "$SEEDS/$target" >"$log" 2>&1 || rc=$?
  local execs cov
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  cov="$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1)"
  printf '%-22s executions %-10s %-22s corpus %-5s findings %s\n' "$target" "${execs:-?}" "${cov:-cov: ?}" \
    "$(find "$corpus" -type f | wc -l)" "$(find "$findings" -type f | wc -l)"
  if [ "$rc" -ne 0 ]; then
    warn "$target: libFuzzer exited $rc; its report:"
    grep -E "ERROR|Fatal error|SUMMARY|Test unit written|==[0-9]+==" "$log" | head -20 >&2
    return 1
  fi
}

run() {
  [ -x "$BIN" ] || build
  local failed=0 target
  [ "$#" -gt 0 ] || set -- "${TARGETS[@]}"
  for target in "$@"; do fuzz_one "$target" || failed=1; done
  [ "$failed" -eq 0 ] || die "fuzzing found something: see $SCRATCH/findings and $SCRATCH/logs"
}

case "${1:-}" in
  build) build ;;
  run) shift; run "$@" ;;
  smoke) build; FUZZ_SECONDS="${FUZZ_SECONDS:-15}" run ;;
  list) printf '%s\n' "${TARGETS[@]}" ;;
  capture) eval "$(bash "$ROOT/deploy/cluster.sh" env)"; "${SWITCHYARD_TEST_PYTHON:-python3}" "$ROOT/deploy/fuzz-capture.py" ;;
  *) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
