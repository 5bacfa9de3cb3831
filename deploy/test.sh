#!/usr/bin/env bash
# Run all Switchyard tests: unit tests plus the integration tests, against a
# FRESH local PostgreSQL 15 primary + streaming replica that is created for
# this run and stopped when it ends. This is what CI runs (.ci/run).
#
#   deploy/test.sh                      # everything
#   deploy/test.sh --filter Integration # extra args go to `swift test`
#
# The test cluster lives in $SWITCHYARD_TEST_PG_DIR (default
# /tmp/switchyard-test-pg), separate from the dev cluster of deploy/cluster.sh,
# but it uses the same ports (15432/15433), so only one can run at a time.
# Its logs (*.log) are kept after the run for post-mortems.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export SWITCHYARD_PG_DIR="${SWITCHYARD_TEST_PG_DIR:-/tmp/switchyard-test-pg}"
# shellcheck source=deploy/lib.sh
. "$ROOT/deploy/lib.sh"
cd "$ROOT"

CLUSTER="$ROOT/deploy/cluster.sh"

# shellcheck disable=SC2317  # invoked via trap
finish() {
  local rc=$?
  set +e
  section "Stopping the test cluster"
  bash "$CLUSTER" stop
  bash "$ROOT/deploy/switchover-lab.sh" destroy >/dev/null 2>&1 || true
  if [ "$rc" -ne 0 ] && [ -f "$BASE/primary.log" ]; then
    echo "PostgreSQL logs for this run: $BASE/primary.log, $BASE/replica.log, $BASE/replica2.log" >&2
  fi
  exit "$rc"
}
# Ctrl-C/TERM become normal exits so the EXIT trap always stops Postgres.
trap 'exit 130' INT
trap 'exit 143' TERM

section "Prerequisites"
ensure_packages
ensure_swift_build_deps
swift --version 2>&1 | sed -n 1p   # sed, not head: head would SIGPIPE swift under pipefail

section "Fresh PostgreSQL test cluster in $BASE"
trap finish EXIT
# Wipe whatever a previous run left, then make sure nobody else holds the ports.
bash "$CLUSTER" destroy
bash "$ROOT/deploy/switchover-lab.sh" destroy
for port in "$PRIMARY_PORT" "$REPLICA_PORT" "$REPLICA2_PORT"; do
  if port_in_use "$port"; then
    die "port $port is busy: stop the dev cluster first (deploy/cluster.sh stop) or whatever else listens there"
  fi
done
bash "$CLUSTER" start

# Connection details for the integration tests.
eval "$(bash "$CLUSTER" env)"
export SWITCHYARD_INTEGRATION=1
bash "$CLUSTER" env | sed 's/^/  /' >&2
echo "  export SWITCHYARD_INTEGRATION=1" >&2

section "Build (swift build --build-tests)"
swift build --build-tests

section "Tests (swift test --skip-build --no-parallel $*)"
# --no-parallel: swift-testing runs tests concurrently by default, but the
# integration tests share one cluster (and fixed ports), so run them serially.
rc=0
swift test --skip-build --no-parallel "$@" || rc=$?

if [ "$rc" -eq 0 ] && [ "$#" -eq 0 ]; then
  section "Deploy kit (deploy/check-kit.sh)"
  SWITCHYARD_BIN="$ROOT/.build/debug/switchyard" \
  SWITCHYARD_PRIMARY_PORT="$PRIMARY_PORT" SWITCHYARD_REPLICA_PORT="$REPLICA_PORT" \
    bash "$ROOT/deploy/check-kit.sh" || rc=$?
fi

if [ "$rc" -eq 0 ] && [ "$#" -eq 0 ]; then
  # A bounded run of every fuzz target (its own build, with libFuzzer and AddressSanitizer); the
  # seeds and past findings already ran above, in CorpusReplayTests.
  section "Fuzz smoke (deploy/fuzz.sh smoke)"
  bash "$ROOT/deploy/fuzz.sh" smoke || rc=$?
fi

if [ "$rc" -eq 0 ]; then
  section "All tests passed"
else
  section "Tests FAILED (swift test exit code $rc)"
fi
exit "$rc"
