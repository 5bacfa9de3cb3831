#!/usr/bin/env bash
# Local PostgreSQL 15 test cluster for Switchyard: one primary (127.0.0.1:15432)
# and two streaming replicas (127.0.0.1:15433 and :15434), data under $SWITCHYARD_PG_DIR
# (default /tmp/switchyard-pg). Test/benchmark use only: durability is off.
#
#   deploy/cluster.sh start     create (if needed) and start all three servers
#   deploy/cluster.sh stop      stop them (no-op when nothing runs)
#   deploy/cluster.sh status    show state; exit 0 only if all three are running
#   deploy/cluster.sh env       print export lines for the test suite
#   deploy/cluster.sh destroy   stop and delete the data directory
set -euo pipefail

# shellcheck source=deploy/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

START_TIMEOUT=60   # seconds for pg_ctl -w and for the replica to catch up

usage() {
  sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# pg_ctl status: 0 = running. Needs the postgres user (pg_ctl refuses root).
node_running() {
  [ -f "$1/PG_VERSION" ] && as_postgres "$PG_BIN/pg_ctl" -D "$1" status >/dev/null 2>&1
}

# psql over the unix socket as superuser postgres (pg_hba: local all all trust).
psql_node() {
  local port="$1"; shift
  "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCKET_DIR" -p "$port" -U postgres "$@"
}

stop_node() {
  local name="$1" dir="$2" mode="${3:-fast}"
  node_running "$dir" || return 0
  log "stopping $name ($mode)"
  if ! as_postgres "$PG_BIN/pg_ctl" -D "$dir" -m "$mode" -w -t "$START_TIMEOUT" stop >/dev/null; then
    warn "$name did not stop in ${START_TIMEOUT}s with -m $mode; using -m immediate"
    as_postgres "$PG_BIN/pg_ctl" -D "$dir" -m immediate -w -t "$START_TIMEOUT" stop >/dev/null || true
  fi
}

start_node() {
  local name="$1" dir="$2" logf="$BASE/$1.log"
  log "starting $name"
  if ! as_postgres "$PG_BIN/pg_ctl" -D "$dir" -l "$logf" -w -t "$START_TIMEOUT" start >/dev/null; then
    show_log_tail "$logf"
    die "$name failed to start (full log: $logf)"
  fi
}

# rm -rf only a directory we created (marker file) or an empty one.
wipe_base() {
  case "$BASE" in
    ""|/|/tmp|/tmp/|/root|/home|/var|/usr|/etc|"${HOME:-/root}") die "refusing to wipe BASE=$BASE" ;;
  esac
  if [ -d "$BASE" ] && [ -n "$(ls -A "$BASE")" ] && [ ! -e "$BASE_MARKER" ]; then
    die "$BASE is not empty and was not created by cluster.sh; refusing to delete it (set SWITCHYARD_PG_DIR elsewhere)"
  fi
  rm -rf "$BASE"
}

init_primary() {
  log "initdb $PRIMARY_DIR"
  if ! as_postgres "$PG_BIN/initdb" -D "$PRIMARY_DIR" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 >"$BASE/initdb.log" 2>&1; then
    show_log_tail "$BASE/initdb.log"
    die "initdb failed"
  fi

  cat >>"$PRIMARY_DIR/postgresql.conf" <<EOF

# ---- Switchyard test cluster (written by deploy/cluster.sh) ----
listen_addresses = '127.0.0.1'          # loopback only
port = $PRIMARY_PORT
unix_socket_directories = '$SOCKET_DIR'
max_connections = 300                   # proxy tests open many backends
shared_buffers = 128MB
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
wal_keep_size = 512MB                   # replica has no slot; keep WAL for it
hot_standby = on
# Throwaway test data: trade durability for speed. Never use these in production.
fsync = off
# On, as in production: a commit's WAL is flushed (no fsync here) and streamed at once, so replicas
# can replay a client's write within a millisecond or so and serve its next read (read-your-writes).
# Off, WAL reaches replicas only when the WAL writer flushes it (wal_writer_delay, 200 ms).
synchronous_commit = ${SWITCHYARD_PG_SYNCHRONOUS_COMMIT:-on}
full_page_writes = off
# Logs the auth method of every connection; handy when debugging the proxy.
log_connections = on
log_line_prefix = '%m [%p] %q%u@%d '
cluster_name = 'switchyard-primary'
EOF

  # First match wins: the per-user methods must come before the catch-all.
  cat >"$PRIMARY_DIR/pg_hba.conf" <<'EOF'
# Switchyard test cluster (written by deploy/cluster.sh)
# TYPE  DATABASE     USER        ADDRESS        METHOD
local   all          all                        trust
host    replication  replicator  127.0.0.1/32   scram-sha-256
host    all          app_md5     127.0.0.1/32   md5
host    all          app_plain   127.0.0.1/32   password
host    all          app_trust   127.0.0.1/32   trust
host    all          all         127.0.0.1/32   scram-sha-256
EOF
}

create_roles() {
  log "creating roles and databases"
  # switchyard_users groups the four test logins so grants are given once.
  psql_node "$PRIMARY_PORT" -d postgres <<'SQL'
SET password_encryption = 'scram-sha-256';
CREATE ROLE switchyard_users NOLOGIN;
CREATE ROLE app       LOGIN PASSWORD 'app-secret'   IN ROLE switchyard_users;
CREATE ROLE app_plain LOGIN PASSWORD 'plain-secret' IN ROLE switchyard_users;
CREATE ROLE app_trust LOGIN                          IN ROLE switchyard_users;
-- Stored as an md5 hash so the md5 pg_hba method really does md5 (with a
-- SCRAM verifier the server would silently upgrade md5 to SCRAM).
SET password_encryption = 'md5';
CREATE ROLE app_md5   LOGIN PASSWORD 'md5-secret'   IN ROLE switchyard_users;
SET password_encryption = 'scram-sha-256';
CREATE ROLE replicator REPLICATION LOGIN PASSWORD 'repl-secret';
-- switchover_user of the tests: the minimal grants the README lists, not a superuser.
CREATE ROLE switchover LOGIN PASSWORD 'switchover-secret' IN ROLE pg_signal_backend, pg_read_all_stats;
GRANT EXECUTE ON FUNCTION pg_promote(boolean, integer), pg_reload_conf() TO switchover;
GRANT ALTER SYSTEM ON PARAMETER default_transaction_read_only TO switchover;
CREATE DATABASE app   OWNER app;
CREATE DATABASE bench OWNER app;
GRANT CONNECT, CREATE, TEMPORARY ON DATABASE app, bench TO switchyard_users;
SQL
  local db
  for db in app bench; do
    # Everyone may create tables, and may use the tables app creates
    # (e.g. the pgbench tables), in schema public.
    psql_node "$PRIMARY_PORT" -d "$db" <<'SQL'
GRANT ALL ON SCHEMA public TO switchyard_users;
ALTER DEFAULT PRIVILEGES FOR ROLE app IN SCHEMA public GRANT ALL ON TABLES    TO switchyard_users;
ALTER DEFAULT PRIVILEGES FOR ROLE app IN SCHEMA public GRANT ALL ON SEQUENCES TO switchyard_users;
SQL
  done
}

init_pgbench() {
  log "pgbench -i -s ${PGBENCH_SCALE:-4} in database bench (as app, over TCP/SCRAM)"
  if ! PGPASSWORD="$APP_PASSWORD" timeout 300 "$PG_BIN/pgbench" -i -q -s "${PGBENCH_SCALE:-4}" \
        -h "$PG_HOST" -p "$PRIMARY_PORT" -U "$APP_USER" bench >"$BASE/pgbench-init.log" 2>&1; then
    show_log_tail "$BASE/pgbench-init.log"
    die "pgbench -i failed"
  fi
}

# create_replica NAME DIR PORT: a streaming replica from a base backup of the primary.
create_replica() {
  local name="$1" dir="$2" port="$3"
  log "pg_basebackup -> $dir"
  # Password via a passfile owned by postgres; -R records passfile= (not the
  # password itself) in the replica's primary_conninfo.
  printf '%s:%s:*:replicator:repl-secret\n' "$PG_HOST" "$PRIMARY_PORT" >"$PGPASS_FILE"
  chown postgres:postgres "$PGPASS_FILE"
  chmod 600 "$PGPASS_FILE"
  if ! as_postgres env PGPASSFILE="$PGPASS_FILE" timeout 300 "$PG_BIN/pg_basebackup" \
        -h "$PG_HOST" -p "$PRIMARY_PORT" -U replicator -w \
        -D "$dir" -R -X stream -c fast >"$BASE/basebackup-$name.log" 2>&1; then
    show_log_tail "$BASE/basebackup-$name.log"
    die "pg_basebackup for $name failed"
  fi
  cat >>"$dir/postgresql.conf" <<EOF

# ---- replica overrides (written by deploy/cluster.sh) ----
port = $port
hot_standby = on
cluster_name = 'switchyard-$name'     # shows as application_name in pg_stat_replication
EOF
}

# wait_for_replicas: both replicas in recovery and streaming from the primary.
wait_for_replicas() {
  local deadline=$((SECONDS + START_TIMEOUT)) rec="" rec2="" streaming=""
  while [ "$SECONDS" -lt "$deadline" ]; do
    rec="$(psql_node "$REPLICA_PORT" -d postgres -Atc 'select pg_is_in_recovery()' 2>/dev/null || true)"
    rec2="$(psql_node "$REPLICA2_PORT" -d postgres -Atc 'select pg_is_in_recovery()' 2>/dev/null || true)"
    streaming="$(psql_node "$PRIMARY_PORT" -d postgres -Atc \
      "select count(*) from pg_stat_replication where state = 'streaming'" 2>/dev/null || true)"
    if [ "$rec" = t ] && [ "$rec2" = t ] && [ "${streaming:-0}" -ge 2 ] 2>/dev/null; then
      return 0
    fi
    sleep 0.5
  done
  show_log_tail "$BASE/replica.log"
  show_log_tail "$BASE/replica2.log"
  die "replicas not streaming after ${START_TIMEOUT}s (in recovery: '${rec}'/'${rec2}', streaming senders: '${streaming}')"
}

cmd_start() {
  ensure_packages
  if node_running "$PRIMARY_DIR" && node_running "$REPLICA_DIR" && node_running "$REPLICA2_DIR"; then
    log "cluster already running (primary $PG_HOST:$PRIMARY_PORT, replicas $PG_HOST:$REPLICA_PORT and :$REPLICA2_PORT, data $BASE)"
    return 0
  fi
  if [ -e "$BASE" ]; then
    log "found a stopped or partial cluster in $BASE; wiping it and starting fresh"
    stop_node replica2 "$REPLICA2_DIR" immediate
    stop_node replica "$REPLICA_DIR" immediate
    stop_node primary "$PRIMARY_DIR" immediate
    wipe_base
  fi
  local port
  for port in "$PRIMARY_PORT" "$REPLICA_PORT" "$REPLICA2_PORT"; do
    if port_in_use "$port"; then
      die "port $port is already in use by another process (another cluster with a different SWITCHYARD_PG_DIR?)"
    fi
  done

  mkdir -p "$BASE" "$SOCKET_DIR"
  touch "$BASE_MARKER"
  chown -R postgres:postgres "$BASE"
  chmod 755 "$BASE" "$SOCKET_DIR"
  as_postgres test -w "$BASE" \
    || die "the postgres user cannot write to $BASE (are its parent directories traversable?)"

  init_primary
  start_node primary "$PRIMARY_DIR"
  create_roles
  # Before the base backup, so the replica copies the tables instead of replaying them.
  init_pgbench
  create_replica replica "$REPLICA_DIR" "$REPLICA_PORT"
  create_replica replica2 "$REPLICA2_DIR" "$REPLICA2_PORT"
  start_node replica "$REPLICA_DIR"
  start_node replica2 "$REPLICA2_DIR"
  wait_for_replicas
  log "cluster ready: primary $PG_HOST:$PRIMARY_PORT, replicas $PG_HOST:$REPLICA_PORT and :$REPLICA2_PORT (streaming), sockets $SOCKET_DIR, logs $BASE/*.log"
}

cmd_stop() {
  if ! node_running "$PRIMARY_DIR" && ! node_running "$REPLICA_DIR" && ! node_running "$REPLICA2_DIR"; then
    log "cluster not running ($BASE)"
    return 0
  fi
  # Replicas first, so they do not spin retrying a vanished primary.
  stop_node replica2 "$REPLICA2_DIR"
  stop_node replica "$REPLICA_DIR"
  stop_node primary "$PRIMARY_DIR"
  log "cluster stopped"
}

cmd_status() {
  local rc=0 rec senders
  if node_running "$PRIMARY_DIR"; then
    senders="$(psql_node "$PRIMARY_PORT" -d postgres -Atc \
      "select coalesce(string_agg(application_name || ' ' || state, ', '), 'none') from pg_stat_replication" 2>/dev/null || echo '?')"
    echo "primary: running on $PG_HOST:$PRIMARY_PORT (replication: $senders)"
  else
    echo "primary: not running"; rc=3
  fi
  if node_running "$REPLICA_DIR"; then
    rec="$(psql_node "$REPLICA_PORT" -d postgres -Atc 'select pg_is_in_recovery()' 2>/dev/null || echo '?')"
    echo "replica: running on $PG_HOST:$REPLICA_PORT (in recovery: $rec)"
  else
    echo "replica: not running"; rc=3
  fi
  if node_running "$REPLICA2_DIR"; then
    rec="$(psql_node "$REPLICA2_PORT" -d postgres -Atc 'select pg_is_in_recovery()' 2>/dev/null || echo '?')"
    echo "replica2: running on $PG_HOST:$REPLICA2_PORT (in recovery: $rec)"
  else
    echo "replica2: not running"; rc=3
  fi
  echo "data:    $BASE"
  return "$rc"
}

cmd_env() {
  local py
  if ! py="$(find_test_python)"; then
    warn "no python3 with psycopg found; install python3-psycopg (deploy/cluster.sh start does)"
    py=/usr/bin/python3
  fi
  printf 'export SWITCHYARD_TEST_PG_HOST=%q\n' "$PG_HOST"
  printf 'export SWITCHYARD_TEST_PG_PORT=%q\n' "$PRIMARY_PORT"
  printf 'export SWITCHYARD_TEST_REPLICA_PORT=%q\n' "$REPLICA_PORT"
  printf 'export SWITCHYARD_TEST_REPLICA2_PORT=%q\n' "$REPLICA2_PORT"
  printf 'export SWITCHYARD_TEST_PG_SOCKET_DIR=%q\n' "$SOCKET_DIR"
  printf 'export SWITCHYARD_TEST_PYTHON=%q\n' "$py"
}

cmd_destroy() {
  cmd_stop
  if [ -e "$BASE" ]; then
    wipe_base
    log "removed $BASE"
  fi
}

case "${1:-}" in
  start)   cmd_start ;;
  stop)    cmd_stop ;;
  status)  cmd_status ;;
  env)     cmd_env ;;
  destroy) cmd_destroy ;;
  *)       usage ;;
esac
