#!/usr/bin/env bash
# Builds and runs the container recipe of this folder, as the test
# deploy_container_test and by hand (README "Deploy the cloud worker"):
#   bash deploy/docker/check-image.sh [BUILD_DIR [SHARED_DIR]]
# 1. the amd64 packages of BUILD_DIR (cpack), as the Dockerfile's header says;
# 2. the base image: this machine and CI reach the Debian mirror but not
#    Docker Hub, so `debian:bookworm-slim` is made from the same release
#    (mmdebstrap --variant=minbase bookworm, imported and tagged with that
#    name; cached a week in BUILD_DIR/container/); a normal machine pulls
#    the official one;
# 3. `podman build` of the unchanged Dockerfile (its apt-get from the mirror);
# 4. the image run with a volume holding SHARED_DIR/models/stories260K and
#    CURVE keys from `splitlm keygen`: /health on 9090 answers ready, the
#    x86 splitlm-device of BUILD_DIR splits generations through the
#    published 5555 with the tokens of a local `splitlm generate`, a device
#    without the keys is refused, and `podman stop` (SIGTERM) drains and
#    exits 0.
# Exit 77 (skipped) without root, podman, mmdebstrap, user namespaces or
# the shared model; everything else that goes wrong fails. Podman works in
# a private store under a temporary directory, removed at the end.
set -euo pipefail
src="$(cd "$(dirname "$0")/../.." && pwd)"
build="$(cd "${1:-$src/build}" && pwd)"
shared="${2:-${SPLITLM_SHARED:-$src/../shared}}"
skip() { echo "SKIP: $*" >&2; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || skip "needs root (podman's rootful mode; the check does not set up subuids)"
command -v podman >/dev/null || skip "podman is not installed (apt-get install podman runc mmdebstrap)"
command -v mmdebstrap >/dev/null || skip "mmdebstrap is not installed (apt-get install podman runc mmdebstrap)"
unshare --user --map-root-user true 2>/dev/null || skip "user namespaces are not available here"
model="$shared/models/stories260K"
[ -f "$model/config.json" ] || skip "$model is absent (../shared sits beside the checkout in CI)"

work="$(mktemp -d)"
started=$SECONDS
step() { echo "[$((SECONDS - started)) s] $*"; }
cleanup() {
  for driver in overlay vfs; do
    [ -d "$work/storage-$driver" ] || continue
    podman --root "$work/storage-$driver" --runroot "$work/run-$driver" --storage-driver "$driver" \
      rm -f -a >/dev/null 2>&1 || true
    podman --root "$work/storage-$driver" --runroot "$work/run-$driver" --storage-driver "$driver" \
      rmi -f -a >/dev/null 2>&1 || true
  done
  for m in $(awk -v w="$work/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r); do umount "$m" || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# 1. The packages.
mkdir -p "$work/context"
(cd "$work" && cpack -G DEB --config "$build/CPackConfig.cmake" -B "$work/debs" >"$work/cpack.log" 2>&1) ||
  { cat "$work/cpack.log" >&2; fail "cpack"; }
cp "$work"/debs/splitlm-common_*_amd64.deb "$work"/debs/splitlm-cloud_*_amd64.deb "$src"/deploy/docker/Dockerfile \
  "$src"/deploy/docker/cloud.toml "$work/context/"
step "packages: $(cd "$work/context" && ls *.deb | tr '\n' ' ')"

# 2. The base image, from the Debian mirror (Docker Hub is out of reach).
base="$build/container/debian-bookworm-slim.tar"
if [ -z "$(find "$base" -mtime -7 -size +1M 2>/dev/null)" ]; then  # absent or a week old
  mkdir -p "$build/container"
  mmdebstrap --variant=minbase --format=tar \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
    bookworm "$base.part" "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main" </dev/null >"$work/mmdebstrap.log" 2>&1 ||
    { tail -n 20 "$work/mmdebstrap.log" >&2; rm -f "$base.part"; fail "mmdebstrap (is the Debian mirror reachable?)"; }
  mv "$base.part" "$base"
  step "base made with mmdebstrap: $base ($(du -m "$base" | cut -f1) MB)"
fi

# Podman's storage: overlay, else vfs. The runtime: crun, else runc (crun
# 1.8 refuses a cgroup v1/v2 hybrid). Limits: podman's default ulimits are
# above what an unprivileged sandbox may set, so the host's are passed.
nproc="$(ulimit -Hu)" pid_max="$(cat /proc/sys/kernel/pid_max)"
if [ "$nproc" = unlimited ] || [ "$nproc" -gt "$pid_max" ]; then nproc="$pid_max"; fi
nofile="$(ulimit -Hn)"
if [ "$nofile" = unlimited ]; then nofile=1048576; fi
limits=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")
found=""
for driver in overlay vfs; do
  P=(podman --root "$work/storage-$driver" --runroot "$work/run-$driver" --storage-driver "$driver")
  if ! "${P[@]}" import "$base" docker.io/library/debian:bookworm-slim >/dev/null 2>"$work/probe.err"; then
    echo "podman import with storage $driver: $(tail -n 1 "$work/probe.err")" >&2
    continue
  fi
  for runtime in crun runc; do
    command -v "$runtime" >/dev/null || continue
    if "${P[@]}" --runtime "$runtime" run --rm "${limits[@]}" --network none debian:bookworm-slim true \
        2>"$work/probe.err"; then
      found=1
      break 2
    fi
    echo "podman run with storage $driver, runtime $runtime: $(tail -n 1 "$work/probe.err")" >&2
  done
done
[ -n "$found" ] || fail "podman cannot run a container here (overlay or vfs, crun or runc; errors above)"
P+=(--runtime "$runtime")
step "podman: storage $driver, runtime $runtime"

# 3. The Dockerfile, unchanged; the base is the local one (--pull=never).
"${P[@]}" build --pull=never --layers=false "${limits[@]}" -t splitlm-cloud "$work/context" >"$work/build.log" 2>&1 ||
  { tail -n 30 "$work/build.log" >&2; fail "podman build"; }
fetched="$(grep -o 'Fetched [0-9.]* [kMG]B' "$work/build.log" | awk '{print $2 " " $3}' | paste -sd+ -)"
step "image built (apt fetched ${fetched:-nothing})"

# 4. The worker in the container: the model and the keys in the volume,
# owned by the image's splitlm user.
vol="$work/volume"
mkdir -p "$vol/models" "$vol/keys"
cp -r "$model" "$vol/models/model"
"$build/bin/splitlm" keygen --out "$vol/keys/cloud" >/dev/null 2>&1 || fail "splitlm keygen (cloud)"
"$build/bin/splitlm" keygen --out "$work/device" >/dev/null 2>&1 || fail "splitlm keygen (device)"
cp "$work/device.pub" "$vol/keys/devices.txt"
owner="$("${P[@]}" run --rm "${limits[@]}" --network none --entrypoint id splitlm-cloud -u):$("${P[@]}" run --rm \
  "${limits[@]}" --network none --entrypoint id splitlm-cloud -g)"
chown -R "$owner" "$vol"
"${P[@]}" run -d --name worker "${limits[@]}" -v "$vol:/var/lib/splitlm" -p 127.0.0.1::5555 -p 127.0.0.1::9090 \
  splitlm-cloud >/dev/null || fail "podman run"
logs() { "${P[@]}" logs worker >"$work/worker.log" 2>&1 || true; tail -n 20 "$work/worker.log" >&2; }

# GET PATH on 127.0.0.1:PORT, body on stdout (bash's /dev/tcp, no curl needed).
http_get() {
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
  cat <&3
  exec 3<&-
}
http_port="$("${P[@]}" port worker 9090/tcp | head -n1 | sed 's/.*://')"
zmq_port="$("${P[@]}" port worker 5555/tcp | head -n1 | sed 's/.*://')"
[ -n "$http_port" ] && [ -n "$zmq_port" ] || { logs; fail "ports 5555 and 9090 are not published"; }
ready=""
for _ in $(seq 600); do  # up to 60 s for the model to load
  [ "$("${P[@]}" inspect -f '{{.State.Running}}' worker)" = true ] || { logs; fail "the worker exited"; }
  health="$(http_get "$http_port" /health 2>/dev/null || true)"
  case "$health" in *"200 OK"*'"status":"ok"'*) ready=1; break ;; esac
  sleep 0.1
done
[ -n "$ready" ] || { logs; fail "/health did not answer ready: $health"; }
step "worker ready: /health on 127.0.0.1:$http_port answers $(echo "$health" | tail -n 1)"

gen=(generate --prompt-ids "1 5 9" --max-tokens 16 --print-ids --ignore-eos)
expected="$("$build/bin/splitlm" --threads 1 "${gen[@]}" --model "$model" 2>"$work/local.err")" ||
  { cat "$work/local.err" >&2; fail "local splitlm generate"; }
for cut in 1 3; do
  got="$("$build/bin/splitlm-device" --threads 1 --model "$model" --cloud "tcp://127.0.0.1:$zmq_port" \
    --key "$work/device.key" --server-key "$vol/keys/cloud.pub" --fallback fail --cut "$cut" "${gen[@]}" \
    2>"$work/device.err")" || { cat "$work/device.err" >&2; logs; fail "split generation at cut $cut"; }
  grep -q " 0 on the device" "$work/device.err" || { cat "$work/device.err" >&2; fail "cut $cut: not all tokens from the cloud"; }
  [ "$got" = "$expected" ] || fail "cut $cut through the container: '$got', local '$expected'"
  step "cut $cut through the container: $got (= local)"
done
if "$build/bin/splitlm-device" --threads 1 --model "$model" --cloud "tcp://127.0.0.1:$zmq_port" --fallback fail \
    --cut 1 "${gen[@]}" >/dev/null 2>"$work/nokey.err"; then
  fail "a device without the CURVE keys was served"
fi
step "a device without the keys is refused: $(tail -n 1 "$work/nokey.err")"

# SIGTERM: the worker drains (no session open) and exits 0, well before
# podman's SIGKILL (the stop timeout is above cloud.drain_timeout_s = 30).
"${P[@]}" stop -t 60 worker >/dev/null || fail "podman stop"
code="$("${P[@]}" inspect -f '{{.State.ExitCode}}' worker)"
[ "$code" = 0 ] || { logs; fail "the worker exited $code on SIGTERM"; }
"${P[@]}" logs worker >"$work/worker.log" 2>&1
grep -q "drained" "$work/worker.log" || { logs; fail "no drain logged on SIGTERM"; }
step "podman stop: drained, exit 0"
echo "container check passed in $((SECONDS - started)) s"
