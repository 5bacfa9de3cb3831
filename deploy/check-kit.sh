#!/usr/bin/env bash
# Check the deploy and observability kit with the tools its users run:
#
#   1. systemd:    systemd-analyze verify deploy/systemd/switchyard.service, plus the keys
#                  the drain needs (TimeoutStopSec > shutdown_timeout), and its
#                  ExecStartPre (switchyard check-config) on a real file
#   2. Prometheus: promtool check rules / check config / test rules (every alert fires)
#   3. Kubernetes: yamllint, kubectl kustomize, kubernetes-validate (the API schemas),
#                  consistency (probes, preStop, grace > drain, selectors, mounts), and
#                  switchyard check-config on the ConfigMap's proxy.conf + the Secret's userlist
#   4. Container:  the Containerfile's runtime packages match ldd of the binary; then
#                  (unless SWITCHYARD_KIT_CONTAINER=0) podman builds its runtime stage and
#                  runs it: psql through the container, SIGTERM drain (container/test-image.sh)
#   5. Grafana:    the dashboard JSON loads and is importable as is
#   6. Live:       a real Switchyard in front of the running PostgreSQL cluster, a real
#                  Prometheus (Debian's) started with the kit's prometheus.yml and rules,
#                  pgbench through the proxy; every metric the rules and the dashboard use
#                  is in /metrics, every expression evaluates, every selector and every
#                  dashboard query returns data, all rule groups load healthy; then a
#                  rejected and an accepted SIGHUP reload (ExecReload) and a SIGTERM drain
#                  (KillSignal) that ends within TimeoutStopSec.
#
# Needs a running PostgreSQL primary + replica of deploy/cluster.sh (deploy/test.sh has one).
# Environment (defaults in brackets):
#   SWITCHYARD_BIN            the switchyard binary [.build/debug/switchyard]
#   SWITCHYARD_PRIMARY_PORT   the cluster's primary port [15432]
#   SWITCHYARD_REPLICA_PORT   the cluster's replica port [15433]
#   SWITCHYARD_KIT_PROXY_PORT, SWITCHYARD_KIT_METRICS_PORT, SWITCHYARD_KIT_PROMETHEUS_PORT
#                             ports this script listens on [26432, 29127, 29090]
#   SWITCHYARD_KIT_CACHE      where the kubernetes-validate venv is kept [/var/tmp/switchyard-kit]
#   SWITCHYARD_KIT_CONTAINER  1: build and run the container image with podman; 0: skip [1]
# Exit status 0 when every check passes; otherwise the first failure is printed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=deploy/lib.sh
. "$ROOT/deploy/lib.sh"
cd "$ROOT"

BIN="${SWITCHYARD_BIN:-$ROOT/.build/debug/switchyard}"
KIT_PROXY_PORT="${SWITCHYARD_KIT_PROXY_PORT:-26432}"
KIT_METRICS_PORT="${SWITCHYARD_KIT_METRICS_PORT:-29127}"
KIT_PROM_PORT="${SWITCHYARD_KIT_PROMETHEUS_PORT:-29090}"
KIT_CACHE="${SWITCHYARD_KIT_CACHE:-/var/tmp/switchyard-kit}"
KUBERNETES_VALIDATE_VERSION=1.37.0
PY=/usr/bin/python3
KIT="$ROOT/deploy"
CHECKS=("$PY" "$KIT/kit_checks.py")

WORK="$(mktemp -d /tmp/switchyard-kit.XXXXXX)"
PROXY_PID=""
PROM_PID=""

# shellcheck disable=SC2317  # invoked via trap
cleanup() {
  local rc=$?
  set +e
  local pid
  for pid in "$PROM_PID" "$PROXY_PID"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null
      wait "$pid" 2>/dev/null
    fi
  done
  if [ "$rc" -ne 0 ]; then
    show_log_tail "$WORK/switchyard.log" 30
    show_log_tail "$WORK/prometheus.log" 15
    echo "check-kit FAILED (work files kept in $WORK)" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------
section "Kit prerequisites"
# Debian package : a file it provides (checked cheaply, apt-get only when missing).
KIT_PACKAGES=(
  "prometheus:/usr/bin/prometheus"
  "yamllint:/usr/bin/yamllint"
  "python3-yaml:"
  "python3-venv:"
  "systemd:/usr/bin/systemd-analyze"
  "curl:/usr/bin/curl"
  "postgresql-client-15:$PG_BIN/pgbench"
)
missing=()
for entry in "${KIT_PACKAGES[@]}"; do
  pkg="${entry%%:*}"; file="${entry#*:}"
  if ! _pkg_installed "$pkg" || { [ -n "$file" ] && [ ! -e "$file" ]; }; then missing+=("$pkg"); fi
done
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing: ${missing[*]}"
  _as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || die "apt-get update failed"
  _as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
fi
# kubernetes-validate (the Kubernetes API's JSON schemas, offline) from PyPI, in a cached venv.
KV="$KIT_CACHE/venv/bin/kubernetes-validate"
if ! [ -x "$KV" ] || [ "$("$KIT_CACHE/venv/bin/pip" show kubernetes-validate 2>/dev/null | sed -n 's/^Version: //p')" != "$KUBERNETES_VALIDATE_VERSION" ]; then
  log "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $KIT_CACHE/venv"
  mkdir -p "$KIT_CACHE"
  "$PY" -m venv "$KIT_CACHE/venv" || die "python3 -m venv failed"
  timeout 300 "$KIT_CACHE/venv/bin/pip" install -q "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
    || die "pip install kubernetes-validate failed"
fi
[ -x "$BIN" ] || die "no switchyard binary at $BIN (build it, or set SWITCHYARD_BIN)"
for port in "$KIT_PROXY_PORT" "$KIT_METRICS_PORT" "$KIT_PROM_PORT"; do
  if port_in_use "$port"; then die "port $port is in use; set SWITCHYARD_KIT_*_PORT"; fi
done
for port in "$PRIMARY_PORT" "$REPLICA_PORT"; do
  port_in_use "$port" || die "no PostgreSQL on 127.0.0.1:$port (start deploy/cluster.sh, or set SWITCHYARD_PRIMARY_PORT/SWITCHYARD_REPLICA_PORT)"
done
log "binary $BIN; PostgreSQL $PRIMARY_PORT/$REPLICA_PORT; proxy $KIT_PROXY_PORT, metrics $KIT_METRICS_PORT, prometheus $KIT_PROM_PORT"

# The configuration of the live test: the kit's defaults, a tiny pool so that
# pgbench makes clients queue (the wait metrics then carry real data).
cat >"$WORK/proxy.conf" <<EOF
[switchyard]
listen_addr = 127.0.0.1
listen_port = $KIT_PROXY_PORT
worker_threads = 2
pool_mode = transaction
pool_size = 2
shutdown_timeout = 30
auth_type = scram-sha-256
admin_users = admin
metrics_addr = 127.0.0.1
metrics_port = $KIT_METRICS_PORT
health_check_user = app

[servers]
primary  = host=127.0.0.1 port=$PRIMARY_PORT role=primary
replica1 = host=127.0.0.1 port=$REPLICA_PORT role=replica

[users]
app   = password=$APP_PASSWORD
admin = password=admin-secret
EOF
SHUTDOWN_TIMEOUT=30

# ---------------------------------------------------------------------------
section "1. systemd unit"
UNIT="$KIT/systemd/switchyard.service"
# verify checks that every Exec path exists; the binary is not installed in
# /usr/local/bin here, so verify a copy that names the binary under test.
sed "s#/usr/local/bin/switchyard#$BIN#g" "$UNIT" >"$WORK/switchyard.service"
verify_out="$(systemd-analyze verify "$WORK/switchyard.service" 2>&1)" \
  || die "systemd-analyze verify failed: $verify_out"
# It exits 0 on unknown keys and bad values, only warning: any output is a failure.
[ -z "$verify_out" ] || die "systemd-analyze verify warned: $verify_out"
log "systemd-analyze verify: clean"
"${CHECKS[@]}" systemd "$UNIT" "$SHUTDOWN_TIMEOUT"
# ExecStartPre on a good file passes, on a broken one fails with exit 2 (so the start fails).
"$BIN" check-config "$WORK/proxy.conf" >/dev/null || die "check-config rejects the test configuration"
printf '[switchyard]\npool_size = -1\n' >"$WORK/broken.conf"
rc=0; "$BIN" check-config "$WORK/broken.conf" >/dev/null 2>&1 || rc=$?
[ "$rc" -eq 2 ] || die "check-config on a broken file exited $rc, expected 2"
log "ExecStartPre check-config: 0 on a valid file, 2 on a broken one"

# ---------------------------------------------------------------------------
section "2. Prometheus rules"
promtool check rules "$KIT/prometheus/switchyard-rules.yml"
promtool check config "$KIT/prometheus/prometheus.yml"
(cd "$KIT/prometheus" && promtool test rules tests/switchyard-rules.test.yml)
# Every alert must be fired by at least one unit test.
"$PY" - "$KIT/prometheus/switchyard-rules.yml" "$KIT/prometheus/tests/switchyard-rules.test.yml" <<'PYEOF'
import sys, yaml
rules = yaml.safe_load(open(sys.argv[1])); tests = yaml.safe_load(open(sys.argv[2]))
alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
fired = {a["alertname"] for t in tests["tests"] for a in t.get("alert_rule_test", []) if a.get("exp_alerts")}
if alerts - fired:
    sys.exit(f"error: alerts with no firing unit test: {sorted(alerts - fired)}")
print(f"every one of the {len(alerts)} alerts fires in a unit test")
PYEOF

# ---------------------------------------------------------------------------
section "3. Kubernetes manifests"
yamllint -s -d '{extends: default, rules: {line-length: {max: 120}, document-start: disable}}' "$KIT/kubernetes"
log "yamllint: clean"
kubectl kustomize "$KIT/kubernetes" >"$WORK/kubernetes.yaml" || die "kubectl kustomize deploy/kubernetes failed"
"$KV" --strict "$WORK/kubernetes.yaml" >"$WORK/kubernetes-validate.log" 2>&1 \
  || { cat "$WORK/kubernetes-validate.log" >&2; die "kubernetes-validate rejected the manifests"; }
sed 's/^/  /' "$WORK/kubernetes-validate.log" >&2
"${CHECKS[@]}" kubernetes "$KIT/kubernetes" "$WORK/kubernetes.yaml"
mkdir -p "$WORK/k8s-config"
"${CHECKS[@]}" k8s-config "$WORK/kubernetes.yaml" "$WORK/k8s-config"
"$BIN" check-config "$WORK/k8s-config/proxy.conf" \
  || die "switchyard check-config rejects the ConfigMap's proxy.conf with the Secret's userlist"

# ---------------------------------------------------------------------------
section "4. Container image: runtime packages vs ldd"
CONTAINERFILE="$KIT/container/Containerfile"
"${CHECKS[@]}" containerfile-packages "$CONTAINERFILE" >"$WORK/declared"
# Every shared library the binary loads, by the Debian package that owns it. The Swift
# runtime (the toolchain's, no Debian package) is linked statically by the release
# build's --static-swift-stdlib: it must have a static archive, and the C/C++
# libraries that archive links (static-stdlib-args.lnk) count as needed too.
SWIFT_STATIC=""
for d in "$(dirname "$(readlink -f "$(command -v swift 2>/dev/null || echo /opt/swift/usr/bin/swift)")")/../lib/swift_static/linux" /opt/swift/usr/lib/swift_static/linux; do
  [ -d "$d" ] && { SWIFT_STATIC="$(cd "$d" && pwd)"; break; }
done
: >"$WORK/needed"
ldd "$BIN" >"$WORK/ldd.txt" || die "ldd $BIN failed"
static_libs=()
while read -r lib path; do
  case "$lib" in linux-vdso.so.*) continue ;; esac
  [ -n "$path" ] || path="$lib"
  [ "$path" != "not" ] || die "ldd: $lib not found"
  if pkg="$(dpkg -S "$path" 2>/dev/null || dpkg -S "$(readlink -f "$path")" 2>/dev/null \
            || dpkg -S "${path#/usr}" 2>/dev/null)"; then
    echo "${pkg%%:*}" >>"$WORK/needed"
  else
    base="$(basename "$lib" | sed 's/\.so.*//')"
    [ -n "$SWIFT_STATIC" ] && [ -f "$SWIFT_STATIC/$base.a" ] \
      || die "$lib ($path) belongs to no Debian package and has no static archive in ${SWIFT_STATIC:-the Swift toolchain}"
    static_libs+=("$base")
  fi
done < <(awk '/=>/ {print $1, $3; next} {print $1, ""}' "$WORK/ldd.txt")
if [ "${#static_libs[@]}" -gt 0 ]; then
  log "Swift runtime linked statically in the release image: ${static_libs[*]}"
  for l in $(tr -s ' \t' '\n\n' <"$SWIFT_STATIC/static-stdlib-args.lnk" | sed -n 's/^-l\(.\+\)$/\1/p' | sort -u); do
    [ -f "$SWIFT_STATIC/lib$l.a" ] && continue   # a Swift archive itself
    so="$(/sbin/ldconfig -p | awk -v n="lib$l.so" 'index($1, n) == 1 && !found {print $NF; found = 1}')"
    [ -n "$so" ] || die "static-stdlib-args.lnk links -l$l, which no installed library provides"
    pkg="$(dpkg -S "$so" 2>/dev/null || dpkg -S "$(readlink -f "$so")" 2>/dev/null)" || die "no package owns $so"
    echo "${pkg%%:*}" >>"$WORK/needed"
  done
fi
sort -u "$WORK/needed" -o "$WORK/needed"
if ! diff -u "$WORK/declared" "$WORK/needed" >"$WORK/packages.diff"; then
  cat "$WORK/packages.diff" >&2
  die "RUNTIME_PACKAGES in $CONTAINERFILE (---) differs from the packages ldd needs (+++)"
fi
log "runtime packages match ldd: $(tr '\n' ' ' <"$WORK/needed")"

if [ "${SWITCHYARD_KIT_CONTAINER:-1}" = 1 ]; then
  section "4b. Container image: build the runtime stage with podman, run it, psql through it"
  bash "$KIT/container/test-image.sh" "$WORK/proxy.conf"
else
  log "SWITCHYARD_KIT_CONTAINER=0: not building the image"
fi

# ---------------------------------------------------------------------------
section "5. Grafana dashboard"
"${CHECKS[@]}" dashboard "$KIT/grafana/switchyard.json"

# ---------------------------------------------------------------------------
section "6. Live: Switchyard + pgbench + a real Prometheus"
"$BIN" run --config "$WORK/proxy.conf" >"$WORK/switchyard.log" 2>&1 &
PROXY_PID=$!
ready=""
for _ in $(seq 1 300); do
  kill -0 "$PROXY_PID" 2>/dev/null || die "switchyard exited at start"
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$KIT_METRICS_PORT/readyz")" = 200 ]; then ready=1; break; fi
  sleep 0.1
done
[ -n "$ready" ] || die "switchyard's /readyz did not answer 200 within 30 s"
[ "$(curl -s "http://127.0.0.1:$KIT_METRICS_PORT/healthz")" = ok ] || die "/healthz did not answer ok"
log "switchyard ready (pid $PROXY_PID)"

"${CHECKS[@]}" prometheus-config "$KIT/prometheus/prometheus.yml" "$WORK/prometheus.yml" \
  "127.0.0.1:$KIT_METRICS_PORT" "$KIT/prometheus/switchyard-rules.yml"
promtool check config "$WORK/prometheus.yml" >/dev/null
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address="127.0.0.1:$KIT_PROM_PORT" >"$WORK/prometheus.log" 2>&1 &
PROM_PID=$!
API="http://127.0.0.1:$KIT_PROM_PORT/api/v1"

# Wait for the target to be up.
up=""
for _ in $(seq 1 60); do
  kill -0 "$PROM_PID" 2>/dev/null || die "prometheus exited"
  if curl -sf "$API/targets" 2>/dev/null | "$PY" -c '
import json, sys
t = json.load(sys.stdin)["data"]["activeTargets"]
sys.exit(0 if any(x["labels"].get("job") == "switchyard" and x["health"] == "up" for x in t) else 1)' 2>/dev/null; then up=1; break; fi
  sleep 0.5
done
[ -n "$up" ] || die "Prometheus did not report the switchyard target up within 30 s"
log "Prometheus (pid $PROM_PID) scrapes switchyard: target up"

# Load through the proxy: writes (primary) and reads (replica), with more clients than
# pool_size so that they queue. Time-bounded.
log "pgbench through the proxy (8 clients on pool_size 2, 6 s each, read-write then read-only)"
export PGPASSWORD="$APP_PASSWORD"
timeout 60 "$PG_BIN/pgbench" -n -h 127.0.0.1 -p "$KIT_PROXY_PORT" -U "$APP_USER" -c 8 -j 2 -T 6 bench \
  >"$WORK/pgbench-rw.log" 2>&1 || { cat "$WORK/pgbench-rw.log" >&2; die "pgbench (read-write) through the proxy failed"; }
timeout 60 "$PG_BIN/pgbench" -n -S -h 127.0.0.1 -p "$KIT_PROXY_PORT" -U "$APP_USER" -c 8 -j 2 -T 6 bench \
  >"$WORK/pgbench-ro.log" 2>&1 || { cat "$WORK/pgbench-ro.log" >&2; die "pgbench (select-only) through the proxy failed"; }
log "pgbench: $(grep -m1 '^tps' "$WORK/pgbench-rw.log"); select-only $(grep -m1 '^tps' "$WORK/pgbench-ro.log")"

# ExecReload: SIGHUP with a broken file is rejected (the proxy keeps running), then a good one.
cp "$WORK/proxy.conf" "$WORK/proxy.conf.good"
printf '\n[switchyard]\npool_size = zero\n' >>"$WORK/proxy.conf"
kill -HUP "$PROXY_PID"; sleep 1
cp "$WORK/proxy.conf.good" "$WORK/proxy.conf"
kill -HUP "$PROXY_PID"; sleep 1
kill -0 "$PROXY_PID" 2>/dev/null || die "switchyard died on SIGHUP"

# Every metric name the rules and the dashboard use is exported by the binary.
curl -sf "http://127.0.0.1:$KIT_METRICS_PORT/metrics" >"$WORK/metrics.txt" || die "scraping /metrics failed"
exported="$(sed -n 's/^\([a-zA-Z_:][a-zA-Z0-9_:]*\)[{ ].*/\1/p' "$WORK/metrics.txt" | sort -u)"
while read -r name; do
  [ "$name" = up ] && continue   # Prometheus' own
  grep -qx "$name" <<<"$exported" || die "the kit uses $name, which switchyard does not export (renamed?)"
done < <("${CHECKS[@]}" metric-names "$KIT/prometheus/switchyard-rules.yml" "$KIT/grafana/switchyard.json")
log "every metric name in the rules and the dashboard is in /metrics ($(wc -l <<<"$exported") series names exported)"

# Let Prometheus take a few scrapes after the load, then ask it.
sleep 3
query() {  # query EXPR -> prints the JSON answer; fails on an error answer
  curl -sf --get "$API/query" --data-urlencode "query=$1"
}
count_results() {
  "$PY" -c '
import json, sys
a = json.load(sys.stdin)
if a.get("status") != "success":
    sys.exit("error: " + str(a))
print(len(a["data"]["result"]))'
}
checked=0
while read -r line; do
  where="$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["where"])' "$line")"
  expr="$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["expr"])' "$line")"
  answer="$(query "$expr")" || die "Prometheus could not evaluate ($where): $expr"
  n="$(count_results <<<"$answer")" || die "Prometheus rejected ($where): $expr"
  # Dashboard queries must return data; an alert's expression is empty unless it fires.
  case "$where" in dashboard:*) [ "$n" -gt 0 ] || die "no data for $where: $expr" ;; esac
  checked=$((checked + 1))
done < <("${CHECKS[@]}" exprs "$KIT/prometheus/switchyard-rules.yml" "$KIT/grafana/switchyard.json")
log "all $checked expressions (dashboard + rules) evaluate; every dashboard query returns data"
n_sel=0
while read -r sel; do
  n="$(query "$sel" | count_results)" || die "Prometheus rejected the selector $sel"
  [ "$n" -gt 0 ] || die "no series for $sel (used by the rules or the dashboard)"
  n_sel=$((n_sel + 1))
done < <("${CHECKS[@]}" selectors "$KIT/prometheus/switchyard-rules.yml" "$KIT/grafana/switchyard.json")
log "all $n_sel metric selectors of the rules and the dashboard return series"

# Real numbers from the load, through Prometheus.
value() {  # value EXPR -> the first sample's value
  query "$1" | "$PY" -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
print(r[0]["value"][1] if r else "none")'
}
q_primary="$(value 'sum(switchyard_queries_total{route="primary"})')"
q_replica="$(value 'sum(switchyard_queries_total{route="replica"})')"
waits="$(value 'sum(switchyard_pool_wait_seconds_count)')"
rejected="$(value 'sum(switchyard_reloads_total{result="rejected"})')"
accepted="$(value 'sum(switchyard_reloads_total{result="ok"})')"
log "via Prometheus: queries primary=$q_primary replica=$q_replica, queued leases=$waits, reloads ok=$accepted rejected=$rejected"
"$PY" -c 'import sys; a = [float(x) for x in sys.argv[1:]]; sys.exit(0 if a[0] > 0 and a[1] > 0 else 1)' \
  "${q_primary/none/0}" "${q_replica/none/0}" || die "pgbench's queries did not reach both the primary and the replica"
[ "$rejected" = 1 ] && [ "$accepted" = 1 ] || die "expected one rejected and one accepted reload, got rejected=$rejected ok=$accepted"

# All rule groups loaded, every rule evaluated without error.
rules_ok=""
for _ in $(seq 1 20); do
  if curl -sf "$API/rules" | "$PY" -c '
import json, sys, yaml
groups = json.load(sys.stdin)["data"]["groups"]
want = yaml.safe_load(open(sys.argv[1]))["groups"]
names = {g["name"]: g for g in groups}
for g in want:
    got = names.get(g["name"])
    if not got or len(got["rules"]) != len(g["rules"]):
        sys.exit(1)
    bad = [r["name"] for r in got["rules"] if r.get("health") != "ok"]
    if bad:
        print("not healthy yet:", bad, [r.get("lastError") for r in got["rules"] if r.get("health") != "ok"], file=sys.stderr)
        sys.exit(1)
print(sum(len(g["rules"]) for g in want), "rules in", len(want), "groups loaded, all healthy")' "$KIT/prometheus/switchyard-rules.yml"; then
    rules_ok=1; break
  fi
  sleep 0.5
done
[ -n "$rules_ok" ] || die "GET /api/v1/rules: the kit's rule groups did not all load healthy"
firing="$(curl -sf "$API/alerts" | "$PY" -c 'import json,sys; print(" ".join(sorted({a["labels"]["alertname"] for a in json.load(sys.stdin)["data"]["alerts"]})) or "none")')"
log "alerts pending or firing after the load: $firing"

# KillSignal=SIGTERM: the drain ends well within TimeoutStopSec.
kill -TERM "$PROXY_PID"
start=$SECONDS; rc=""
for _ in $(seq 1 450); do
  if ! kill -0 "$PROXY_PID" 2>/dev/null; then wait "$PROXY_PID" && rc=0 || rc=$?; break; fi
  sleep 0.1
done
[ -n "$rc" ] || die "switchyard did not exit within 45 s of SIGTERM (TimeoutStopSec)"
PROXY_PID=""
[ "$rc" -eq 0 ] || die "switchyard exited $rc after SIGTERM"
log "SIGTERM: drained and exited 0 after $((SECONDS - start)) s"

section "Deploy kit: all checks passed"
