#!/usr/bin/env bash
# A throwaway primary with two streaming replicas for SWITCHOVER tests and benchmarks, apart from
# the shared test cluster (a switchover changes which server is the primary, for good):
# primary 127.0.0.1:15440, replicas :15441 (the switchover target) and :15442, data under
# ${SWITCHYARD_PG_DIR:-/tmp/switchyard-pg}-lab, synchronous_commit on as in production.
#
#   deploy/switchover-lab.sh start     create it afresh (wiping a previous lab) and start it
#   deploy/switchover-lab.sh stop      stop it
#   deploy/switchover-lab.sh destroy   stop it and delete its data
#   deploy/switchover-lab.sh rebuild-primary
#                                      after a SWITCHOVER to :15441, make the fenced former primary
#                                      (:15440) a standby of it again (fresh base backup), the
#                                      reverse replication that a switch back needs
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export SWITCHYARD_PG_DIR="${SWITCHYARD_PG_DIR:-/tmp/switchyard-pg}-lab"
export SWITCHYARD_PRIMARY_PORT="${SWITCHYARD_LAB_PRIMARY_PORT:-15440}"
export SWITCHYARD_REPLICA_PORT="${SWITCHYARD_LAB_STANDBY_PORT:-15441}"
export SWITCHYARD_REPLICA2_PORT="${SWITCHYARD_LAB_REPLICA_PORT:-15442}"
export SWITCHYARD_PG_SYNCHRONOUS_COMMIT=on
export PGBENCH_SCALE="${PGBENCH_SCALE:-1}"
# rebuild_former_primary: stop :15440, replace its data with a base backup of :15441, start it as a standby.
rebuild_former_primary() {
  # shellcheck source=deploy/lib.sh
  . "$HERE/lib.sh"
  local dir="$PRIMARY_DIR" logf="$BASE/primary.log"
  as_postgres "$PG_BIN/pg_ctl" -D "$dir" -m fast -w -t 60 stop >/dev/null || true
  rm -rf "$dir"
  printf '%s:%s:*:replicator:repl-secret\n' "$PG_HOST" "$REPLICA_PORT" >"$PGPASS_FILE"
  chown postgres:postgres "$PGPASS_FILE"; chmod 600 "$PGPASS_FILE"
  if ! as_postgres env PGPASSFILE="$PGPASS_FILE" timeout 300 "$PG_BIN/pg_basebackup" -h "$PG_HOST" -p "$REPLICA_PORT" \
        -U replicator -w -D "$dir" -R -X stream -c fast >"$BASE/basebackup-rebuild.log" 2>&1; then
    show_log_tail "$BASE/basebackup-rebuild.log"; die "pg_basebackup from :$REPLICA_PORT failed"
  fi
  cat >>"$dir/postgresql.conf" <<CONF

# ---- rebuilt as a standby of :$REPLICA_PORT (deploy/switchover-lab.sh rebuild-primary) ----
port = $PRIMARY_PORT
cluster_name = 'switchyard-primary'
CONF
  # The fence (default_transaction_read_only in postgresql.auto.conf) went with the old data: the copy
  # carries the new primary's settings, plus -R's primary_conninfo pointing at it.
  as_postgres "$PG_BIN/pg_ctl" -D "$dir" -l "$logf" -w -t 60 start >/dev/null || { show_log_tail "$logf"; die "rebuilt standby failed to start"; }
  local deadline=$((SECONDS + 60))
  while [ "$SECONDS" -lt "$deadline" ]; do
    [ "$("$PG_BIN/psql" -X -h "$SOCKET_DIR" -p "$PRIMARY_PORT" -U postgres -d postgres -Atc \
        "select status from pg_stat_wal_receiver" 2>/dev/null)" = streaming ] && { log "former primary streams from :$REPLICA_PORT"; return 0; }
    sleep 0.2
  done
  die "the rebuilt standby on :$PRIMARY_PORT is not streaming after 60 s"
}

case "${1:-}" in
  rebuild-primary) rebuild_former_primary ;;
  start)   bash "$HERE/cluster.sh" destroy && bash "$HERE/cluster.sh" start ;;
  stop)    bash "$HERE/cluster.sh" stop ;;
  destroy) bash "$HERE/cluster.sh" destroy ;;
  *)       sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
