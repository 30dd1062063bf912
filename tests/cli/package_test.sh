#!/usr/bin/env bash
# deploy_package_test: the Debian packages of this build (cpack) install into
# a clean root and work from there.
#   package_test.sh BUILD_DIR
# Checks: the four packages are made with the build's architecture; every
# library the binaries link directly comes from a package their Depends
# names (so apt on a fresh device pulls it in); unpacked into an empty root,
# the installed splitlm-device answers --help, the installed worker and agent
# split a generation with the installed tool's local tokens; the systemd
# units pass `systemd-analyze verify` against the unpacked root.
set -euo pipefail
build="$(cd "$1" && pwd)"
work="$(mktemp -d)"
cloud_pid=""
cleanup() {
  [ -n "$cloud_pid" ] && kill "$cloud_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

(cd "$work" && cpack -G DEB --config "$build/CPackConfig.cmake" -B "$work/out" >"$work/cpack.log" 2>&1) ||
  { cat "$work/cpack.log" >&2; fail "cpack"; }
arch="$(dpkg --print-architecture)"
for p in splitlm-common splitlm-cloud splitlm-device splitlm; do
  deb="$(ls "$work"/out/${p}_*_${arch}.deb 2>/dev/null | head -n1)"
  [ -n "$deb" ] || fail "no package ${p}_*_${arch}.deb in $(ls "$work/out")"
  [ "$(dpkg-deb -f "$deb" Package)" = "$p" ] || fail "$deb: Package field"
  dpkg-deb -x "$deb" "$work/root"
  echo "$p: $(dpkg-deb -f "$deb" Depends)"
done

# Every direct library dependency is declared: the package owning each
# NEEDED library on this machine is among the Depends (any alternative).
for p in cloud device tools; do
  case "$p" in tools) pkg=splitlm bin=splitlm ;; *) pkg=splitlm-$p bin=splitlm-$p ;; esac
  deb="$(ls "$work"/out/${pkg}_*_${arch}.deb | head -n1)"
  depends=" $(dpkg-deb -f "$deb" Depends | tr ',|' '  ' | sed 's/([^)]*)//g') "
  for lib in $(objdump -p "$work/root/usr/bin/$bin" | awk '/NEEDED/ {print $2}'); do
    path="$(ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64|AArch64/ && !n++ {print $NF}')"
    [ -n "$path" ] || fail "$bin needs $lib, not found on this machine"
    # dpkg knows a file by the path its package ships (/lib or /usr/lib).
    real="$(realpath "$path")"
    owner="$( (dpkg -S "$path" "$real" "${real#/usr}" 2>/dev/null || true) | awk -F: 'NR == 1 {print $1}')"
    [ -n "$owner" ] || fail "$bin needs $lib ($path), owned by no package"
    case "$depends" in *" $owner "*) ;; *) fail "$pkg links $lib from $owner, not in its Depends:$depends" ;; esac
  done
done

# From the unpacked root: --help, then a split generation.
r="$work/root/usr/bin"
[ -f "$work/root/usr/lib/splitlm/libsplitlm_spm.so" ] || fail "tokenizer shim not installed"
"$r/splitlm-device" --help >/dev/null || fail "splitlm-device --help"
"$r/splitlm" make-model --preset tiny --seed 5 --out "$work/model" >/dev/null 2>&1 || fail "splitlm make-model"
gen="generate --prompt-ids '1 5 9' --max-tokens 12 --print-ids --ignore-eos"
expected="$(eval "'$r/splitlm' --threads 1 $gen --model '$work/model'")"
"$r/splitlm-cloud" --model "$work/model" --bind 'tcp://127.0.0.1:*' --threads 1 >"$work/cloud.out" 2>"$work/cloud.err" &
cloud_pid=$!
timeout 60 bash -c "until grep -q '^listening on ' '$work/cloud.out'; do kill -0 $cloud_pid || exit 1; sleep 0.1; done" ||
  { cat "$work/cloud.err" >&2; fail "splitlm-cloud did not start"; }
ep="$(sed -n 's/^listening on //p' "$work/cloud.out" | head -n1)"
got="$(eval "'$r/splitlm-device' --threads 1 --model '$work/model' --cloud '$ep' --cut 1 $gen")"
[ "$got" = "$expected" ] || fail "installed pair: '$got', local '$expected'"
kill -TERM "$cloud_pid"
wait "$cloud_pid" || fail "splitlm-cloud did not exit 0 on SIGTERM"
cloud_pid=""
echo "installed pair: $got"

# The installed units, their binaries taken from the unpacked root (verify
# checks that ExecStart is executable; --root would need a whole system).
if command -v systemd-analyze >/dev/null; then
  mkdir -p "$work/units"
  for u in splitlm-cloud splitlm-device; do
    unit="$work/root/usr/lib/systemd/system/$u.service"
    [ -f "$unit" ] || fail "$u.service not installed"
    sed "s#^ExecStart=/usr/bin/#ExecStart=$work/root/usr/bin/#" "$unit" >"$work/units/$u.service"
    systemd-analyze verify "$work/units/$u.service" >"$work/verify.err" 2>&1 ||
      { cat "$work/verify.err" >&2; fail "systemd-analyze verify $u.service"; }
    [ ! -s "$work/verify.err" ] || { cat "$work/verify.err" >&2; fail "systemd-analyze verify $u.service warns"; }
  done
  echo "systemd units verified"
fi
echo "packages: $(cd "$work/out" && ls *.deb | tr '\n' ' ')"
