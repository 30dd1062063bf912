#!/usr/bin/env bash
# The aarch64 build on an x86 Debian 12 machine, called by cmake/bootstrap.sh:
#   cross_arm64.sh sysroot        the arm64 sysroot only
#   cross_arm64.sh build [TGT..]  sysroot + cross build into build-arm64/
#   cross_arm64.sh run NAME ARGS  build-arm64/bin/NAME under qemu-aarch64
# Environment: ARM64_BUILD_DIR (default build-arm64), ARM64_SYSROOT (default
# build-arm64-sysroot), JOBS (default nproc).
#
# The arm64 -dev packages cannot be installed next to their amd64 twins, so
# they are resolved by a private apt (its own state, arm64 only, nothing
# installed), downloaded, and unpacked with dpkg-deb -x into the sysroot; no
# maintainer script runs, so the few things they would do (absolute symlinks,
# the libblas alternative) are done here.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
BUILD="${ARM64_BUILD_DIR:-build-arm64}"
case "$BUILD" in /*) ;; *) BUILD="$root/$BUILD" ;; esac
SYSROOT="${ARM64_SYSROOT:-$root/build-arm64-sysroot}"
JOBS="${JOBS:-$(nproc)}"
TRIPLET=aarch64-linux-gnu

host_packages=(g++-aarch64-linux-gnu qemu-user capnproto cmake ninja-build pkg-config)
# The closure of these (arm64) is unpacked into the sysroot.
target_packages=(libc6-dev libstdc++-12-dev libtorch-dev libopenblas0-openmp
  libzmq3-dev cppzmq-dev libcapnp-dev libspdlog-dev libsentencepiece-dev
  libtomlplusplus-dev libcli11-dev nlohmann-json3-dev libxxhash-dev libpcre2-dev
  libutf8proc-dev libgtest-dev libboost-dev)

sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

install_host() {
  local missing=() p
  for p in "${host_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return
  echo "cross-arm64: installing ${missing[*]}" >&2
  sudo_ apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive sudo_ apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

# The sysroot is rebuilt when the package list changes.
make_sysroot() {
  local stamp="$SYSROOT/.splitlm-sysroot"
  local want="${target_packages[*]}"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return; fi
  echo "cross-arm64: making the arm64 sysroot in $SYSROOT" >&2
  local apt_dir="$SYSROOT.apt"
  rm -rf "$SYSROOT"
  mkdir -p "$SYSROOT" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
  : >"$apt_dir/status"
  local apt_opts=(-o "Dir::State=$apt_dir" -o "Dir::State::Lists=$apt_dir/lists"
    -o "Dir::State::status=$apt_dir/status" -o "Dir::Cache=$apt_dir/cache"
    -o APT::Architecture=arm64 -o "APT::Architectures::=arm64" -o Debug::NoLocking=1
    -o APT::Sandbox::User=root)
  apt-get "${apt_opts[@]}" update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y -q -d \
    --no-install-recommends "${target_packages[@]}" >&2
  local deb n=0
  for deb in "$apt_dir"/cache/archives/*.deb; do
    dpkg-deb -x "$deb" "$SYSROOT"
    n=$((n + 1))
  done
  echo "cross-arm64: unpacked $n packages" >&2
  # Absolute symlinks point at the host: make them point inside the sysroot.
  local link target
  while IFS= read -r -d '' link; do
    target="$(readlink "$link")"
    case "$target" in /*) ln -sfn --relative "$SYSROOT$target" "$link" ;; esac
  done < <(find "$SYSROOT" -type l -print0)
  # The alternatives dpkg would set: BLAS and LAPACK are OpenBLAS.
  local lib="$SYSROOT/usr/lib/$TRIPLET"
  for so in libblas.so.3 liblapack.so.3; do
    ln -sfn "openblas-openmp/$so" "$lib/$so"
  done
  ln -sfn libblas.so.3 "$lib/libblas.so"
  ln -sfn liblapack.so.3 "$lib/liblapack.so"
  # Debian's cross g++ looks for its own headers and libraries under
  # <sysroot>/usr/aarch64-linux-gnu when a sysroot is given.
  ln -sfn "/usr/$TRIPLET" "$SYSROOT/usr/$TRIPLET"
  echo "$want" >"$stamp"
}

configure() {
  if [ -f "$BUILD/build.ninja" ]; then return; fi
  local launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  ARM64_SYSROOT="$SYSROOT" cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_TOOLCHAIN_FILE="$root/cmake/aarch64-linux-gnu.cmake" -DSPLITLM_ARM64_SYSROOT="$SYSROOT" \
    -DCMAKE_GTEST_DISCOVER_TESTS_DISCOVERY_MODE=PRE_TEST "${launcher[@]}" >&2
}

run() {
  local name="$1"
  shift
  local lib="$SYSROOT/usr/lib/$TRIPLET"
  QEMU_LD_PREFIX="$SYSROOT" LD_LIBRARY_PATH="$lib/openblas-openmp:$lib:$SYSROOT/lib/$TRIPLET" \
    exec qemu-aarch64 -L "$SYSROOT" "$BUILD/bin/$name" "$@"
}

mode="${1:-build}"
shift || true
case "$mode" in
  sysroot)
    install_host
    make_sysroot
    ;;
  build)
    install_host
    make_sysroot
    configure
    ARM64_SYSROOT="$SYSROOT" cmake --build "$BUILD" -j "$JOBS" -- "$@" >&2
    ;;
  run)
    [ $# -ge 1 ] || { echo "usage: bootstrap.sh run-arm64 NAME [ARGS...]" >&2; exit 2; }
    [ -x "$BUILD/bin/$1" ] || { echo "run-arm64: $BUILD/bin/$1 not built (bootstrap.sh cross-arm64)" >&2; exit 2; }
    run "$@"
    ;;
  *)
    echo "usage: cross_arm64.sh [sysroot|build [TARGETS...]|run NAME ARGS...]" >&2
    exit 2
    ;;
esac
