#!/usr/bin/env bash
# Build the runtime stage of deploy/container/Containerfile with podman and run
# it: psql through the container to the running PostgreSQL cluster, metrics from
# it, non-root, no missing library, and a SIGTERM drain that exits 0.
#
#   deploy/container/test-image.sh PROXY_CONF    (called by deploy/check-kit.sh)
#
# What differs from a production build, because this machine reaches no image
# registry (only Debian's and PyPI's package archives):
#   - the base image is Debian bookworm made here by debootstrap --variant=minbase
#     from the Debian archive (a stand-in for debian:bookworm-slim), kept as
#     localhost/switchyard-kit-base:bookworm;
#   - the build stage (FROM swift:...) is replaced with --build-context build=DIR
#     holding the binary under test ($SWITCHYARD_BIN). A debug binary loads the
#     Swift runtime from the toolchain, so those .so files go into DIR too, at the
#     path the binary looks for them; the release build links them statically.
# The runtime stage itself (apt-get of RUNTIME_PACKAGES, the user, COPY, USER,
# ENTRYPOINT, CMD) runs as written.
#
# podman needs runc here (crun refuses cgroups v1/v2 hybrid mode), and explicit
# --ulimit values (its default RLIMIT_NOFILE exceeds our hard limit, and the
# session lacks CAP_SYS_RESOURCE to raise it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=deploy/lib.sh
. "$ROOT/deploy/lib.sh"

CONF="${1:?usage: test-image.sh PROXY_CONF}"
BIN="${SWITCHYARD_BIN:-$ROOT/.build/debug/switchyard}"
CACHE="${SWITCHYARD_KIT_CACHE:-/var/tmp/switchyard-kit}"
BASE_IMAGE=localhost/switchyard-kit-base:bookworm
IMAGE=localhost/switchyard-kit-test:latest
NAME="switchyard-kit-test-$$"
PROXY_PORT="$(sed -n 's/^listen_port *= *//p' "$CONF")"
METRICS_PORT="$(sed -n 's/^metrics_port *= *//p' "$CONF")"
# Lowering limits needs no privilege; raising them does.
ULIMITS=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit "nproc=4096:4096")
PODMAN=(podman --runtime runc)

WORK="$(mktemp -d /tmp/switchyard-image.XXXXXX)"
# shellcheck disable=SC2317
cleanup() {
  local rc=$?
  set +e
  "${PODMAN[@]}" rm -f -t 0 "$NAME" >/dev/null 2>&1
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

missing=()
for entry in podman:/usr/bin/podman runc:/usr/sbin/runc debootstrap:/usr/sbin/debootstrap; do
  pkg="${entry%%:*}"; file="${entry#*:}"
  { _pkg_installed "$pkg" && [ -e "$file" ]; } || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing: ${missing[*]}"
  _as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || die "apt-get update failed"
  _as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
fi

if ! "${PODMAN[@]}" image exists "$BASE_IMAGE"; then
  log "making the base image $BASE_IMAGE (debootstrap --variant=minbase bookworm; a few minutes, once)"
  mkdir -p "$CACHE"
  rm -rf "$CACHE/rootfs"
  timeout 900 debootstrap --variant=minbase bookworm "$CACHE/rootfs" http://deb.debian.org/debian \
    >"$CACHE/debootstrap.log" 2>&1 || { tail -20 "$CACHE/debootstrap.log" >&2; die "debootstrap failed"; }
  rm -rf "$CACHE/rootfs/var/cache/apt/archives/"*.deb "$CACHE/rootfs/var/lib/apt/lists/"*
  tar -C "$CACHE/rootfs" -c . | "${PODMAN[@]}" import -q - "$BASE_IMAGE" >/dev/null || die "podman import failed"
  rm -rf "$CACHE/rootfs"
fi

# The stand-in for the build stage's /out.
CTX="$WORK/build"
install -D -m 0755 "$BIN" "$CTX/out/usr/local/bin/switchyard"
while read -r lib path; do
  [ -n "$path" ] || continue
  if ! dpkg -S "$path" >/dev/null 2>&1 && ! dpkg -S "$(readlink -f "$path")" >/dev/null 2>&1; then
    install -D -m 0644 "$(readlink -f "$path")" "$CTX/out$path"   # the toolchain's Swift runtime
  fi
done < <(ldd "$BIN" | awk '/=>/ {print $1, $3}')
mkdir -p "$WORK/context"

log "podman build --target runtime (base $BASE_IMAGE, build stage = the binary under test)"
start=$SECONDS
timeout 900 "${PODMAN[@]}" build --pull=never --network=host "${ULIMITS[@]}" \
    --build-context "build=$CTX" --build-arg "RUNTIME_IMAGE=$BASE_IMAGE" --target runtime \
    -f "$ROOT/deploy/container/Containerfile" -t "$IMAGE" "$WORK/context" >"$WORK/build.log" 2>&1 \
  || { tail -30 "$WORK/build.log" >&2; die "podman build failed"; }
log "image built in $((SECONDS - start)) s: $("${PODMAN[@]}" image inspect "$IMAGE" --format '{{.Size}}') bytes"

# Inside the image: every library resolves, the user is not root.
ldd_out="$("${PODMAN[@]}" run --rm --network=none "${ULIMITS[@]}" --entrypoint /usr/bin/ldd "$IMAGE" /usr/local/bin/switchyard 2>&1)" \
  || die "ldd in the image failed: $ldd_out"
if grep -q 'not found' <<<"$ldd_out"; then echo "$ldd_out" >&2; die "libraries missing in the image"; fi
uid="$("${PODMAN[@]}" run --rm --network=none "${ULIMITS[@]}" --entrypoint /usr/bin/id "$IMAGE" -u)"
[ "$uid" = 10001 ] || die "the image runs as uid $uid, expected 10001"
log "in the image: all libraries found, uid $uid"

# Run it with the default CMD and the test config mounted where the CMD expects it.
"${PODMAN[@]}" run -d --name "$NAME" --network=host "${ULIMITS[@]}" \
    -v "$CONF:/etc/switchyard/proxy.conf:ro" "$IMAGE" >/dev/null || die "podman run failed"
ready=""
for _ in $(seq 1 300); do
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$METRICS_PORT/readyz")" = 200 ]; then ready=1; break; fi
  [ "$("${PODMAN[@]}" inspect -f '{{.State.Running}}' "$NAME")" = true ] || break
  sleep 0.1
done
[ -n "$ready" ] || { "${PODMAN[@]}" logs "$NAME" 2>&1 | tail -20 >&2; die "the container did not become ready"; }
answer="$(PGPASSWORD="$APP_PASSWORD" timeout 30 "$PG_BIN/psql" -X -At \
  "host=127.0.0.1 port=$PROXY_PORT user=$APP_USER dbname=bench" \
  -c "select count(*) from pgbench_branches" -c "select 'through-the-container'")" \
  || die "psql through the container failed"
[ "$(tail -1 <<<"$answer")" = through-the-container ] || die "unexpected psql answer: $answer"
metrics="$(curl -sf "http://127.0.0.1:$METRICS_PORT/metrics")" || die "scraping the container's /metrics failed"
grep -q '^switchyard_queries_total' <<<"$metrics" || die "the container's /metrics has no switchyard_queries_total"
log "psql through the container: ok ($(head -1 <<<"$answer") branches); /metrics served"

start=$SECONDS
"${PODMAN[@]}" stop -t 45 "$NAME" >/dev/null
code="$("${PODMAN[@]}" inspect -f '{{.State.ExitCode}}' "$NAME")"
[ "$code" = 0 ] || { "${PODMAN[@]}" logs "$NAME" 2>&1 | tail -20 >&2; die "the container exited $code on SIGTERM"; }
log "podman stop (SIGTERM): drained and exited 0 in $((SECONDS - start)) s"
