#!/usr/bin/env bash
# Start a working local setup: PostgreSQL 15 primary + replica (deploy/cluster.sh)
# and a release build of Switchyard in the foreground on 127.0.0.1:6432,
# configured by proxy.conf at the repository root.
#
# Ctrl-C stops the proxy; `deploy/cluster.sh stop` stops PostgreSQL.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=deploy/lib.sh
. "$ROOT/deploy/lib.sh"
cd "$ROOT"

CONFIG="$ROOT/proxy.conf"

section "Prerequisites"
ensure_packages
ensure_swift_build_deps
[ -f "$CONFIG" ] || die "missing $CONFIG"

section "PostgreSQL (primary :$PRIMARY_PORT, replicas :$REPLICA_PORT and :$REPLICA2_PORT, data in $BASE)"
bash "$ROOT/deploy/cluster.sh" start

section "Build"
build_switchyard_release   # sets SWITCHYARD_BIN; dies with a clear message on failure

if port_in_use "$PROXY_PORT"; then
  die "port $PROXY_PORT is already in use (another switchyard, or the Debian pgbouncer service?)"
fi
if port_in_use 9127; then
  die "port 9127 (metrics_port in proxy.conf) is already in use"
fi

cat <<EOF

====================================================================
 Switchyard is starting on $PG_HOST:$PROXY_PORT (config: proxy.conf)
   PostgreSQL primary $PG_HOST:$PRIMARY_PORT, replicas $PG_HOST:$REPLICA_PORT and :$REPLICA2_PORT
   (data and logs in $BASE)

 Try, from another terminal:
   psql "host=$PG_HOST port=$PROXY_PORT user=app dbname=app password=app-secret"
   PGPASSWORD=app-secret pgbench -h $PG_HOST -p $PROXY_PORT -U app -S -T 10 bench
   psql "host=$PG_HOST port=$PROXY_PORT user=admin dbname=switchyard password=admin-secret" -c 'SHOW SERVERS'
   $SWITCHYARD_BIN status
   curl -s $PG_HOST:9127/metrics

 Ctrl-C stops the proxy; deploy/cluster.sh stop stops PostgreSQL.
====================================================================

EOF

exec "$SWITCHYARD_BIN" run --config "$CONFIG"
