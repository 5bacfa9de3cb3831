#!/usr/bin/env bash
# A throwaway primary with two streaming replicas for SWITCHOVER tests and benchmarks, apart from
# the shared test cluster (a switchover changes which server is the primary, for good):
# primary 127.0.0.1:15440, replicas :15441 (the switchover target) and :15442, data under
# ${SWITCHYARD_PG_DIR:-/tmp/switchyard-pg}-lab, synchronous_commit on as in production.
#
#   deploy/switchover-lab.sh start     create it afresh (wiping a previous lab) and start it
#   deploy/switchover-lab.sh stop      stop it
#   deploy/switchover-lab.sh destroy   stop it and delete its data
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export SWITCHYARD_PG_DIR="${SWITCHYARD_PG_DIR:-/tmp/switchyard-pg}-lab"
export SWITCHYARD_PRIMARY_PORT="${SWITCHYARD_LAB_PRIMARY_PORT:-15440}"
export SWITCHYARD_REPLICA_PORT="${SWITCHYARD_LAB_STANDBY_PORT:-15441}"
export SWITCHYARD_REPLICA2_PORT="${SWITCHYARD_LAB_REPLICA_PORT:-15442}"
export SWITCHYARD_PG_SYNCHRONOUS_COMMIT=on
export PGBENCH_SCALE="${PGBENCH_SCALE:-1}"
case "${1:-}" in
  start)   bash "$HERE/cluster.sh" destroy && bash "$HERE/cluster.sh" start ;;
  stop)    bash "$HERE/cluster.sh" stop ;;
  destroy) bash "$HERE/cluster.sh" destroy ;;
  *)       sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
