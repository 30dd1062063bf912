#!/usr/bin/env bash
# Style checks (issue 14, docs/style.md):
#   .ci/check-style.sh format   every tracked *.cpp/*.h matches .clang-format
#   .ci/check-style.sh tidy     clang-tidy (.clang-tidy) over the production sources
#   .ci/check-style.sh tidy FILE...   only these .cpp files
#   .ci/check-style.sh [all]    both
# Environment: BUILD_DIR (default build; must hold compile_commands.json, which
# the top-level CMakeLists exports), JOBS (default 2), CLANG_FORMAT, CLANG_TIDY.
# Exits non-zero on any formatting difference or any clang-tidy finding.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-all}"
[ $# -gt 0 ] && shift
BUILD_DIR="${BUILD_DIR:-build}"
JOBS="${JOBS:-2}"
CLANG_FORMAT="${CLANG_FORMAT:-clang-format}"
CLANG_TIDY="${CLANG_TIDY:-clang-tidy}"
status=0

check_format() {
  local files bad=()
  mapfile -t files < <(git ls-files '*.cpp' '*.h')
  for f in "${files[@]}"; do
    "$CLANG_FORMAT" --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
  done
  if [ ${#bad[@]} -eq 0 ]; then
    echo "format: ${#files[@]} files match .clang-format"
    return 0
  fi
  printf 'format: %s\n' "${bad[@]/#/needs clang-format: }"
  echo "format: ${#bad[@]} of ${#files[@]} files differ from .clang-format; fix with:"
  echo "  clang-format -i ${bad[*]:0:3}$([ ${#bad[@]} -gt 3 ] && echo ' ...')"
  return 1
}

# The translation units clang-tidy checks: the libraries and the shipped
# binaries. tests/ is left out (tests/.clang-tidy still applies when an editor
# runs clang-tidy there), and so is generated code in the build dir.
production_sources() {
  git ls-files 'cloud/*.cpp' 'device/*.cpp' 'examples/*.cpp' 'partition/*.cpp' \
    'scheduler/*.cpp' 'sim/*.cpp' 'transport/*.cpp'
}

check_tidy() {
  local db="$BUILD_DIR/compile_commands.json"
  if [ ! -f "$db" ]; then
    echo "tidy: $db not found: configure the build first (cmake -S . -B $BUILD_DIR)" >&2
    return 2
  fi
  local files=() f
  while read -r f; do
    # Only what the build compiles (e.g. no fuzz-only or arch-specific file it skips).
    grep -q "\"file\": \"$PWD/$f\"" "$db" && files+=("$f")
  done < <(if [ $# -gt 0 ]; then printf '%s\n' "$@"; else production_sources; fi)
  if [ ${#files[@]} -eq 0 ]; then
    echo "tidy: $db lists none of this tree's sources (configured from another directory?)" >&2
    return 2
  fi
  local logs
  logs="$(mktemp -d)"
  local start=$SECONDS
  printf '%s\n' "${files[@]}" | xargs -P "$JOBS" -I{} sh -c \
    'log="$4/$(echo "$3" | tr / _).log"
     "$1" -p "$2" --quiet "$3" >"$log" 2>&1 ||
       echo "$3:1:1: error: clang-tidy exited with status $? [clang-tidy-failed]" >>"$log"' \
    _ "$CLANG_TIDY" "$BUILD_DIR" {} "$logs"
  local elapsed=$((SECONDS - start))
  # One finding per "file:line:col: warning|error: message [check]" line;
  # a header's finding is reported once even when several files include it.
  cat "$logs"/*.log | grep -E '^[^ ]+:[0-9]+:[0-9]+: (warning|error): ' | sort -u >"$logs/findings" || true
  local n
  n=$(wc -l <"$logs/findings")
  if [ "$n" -eq 0 ]; then
    echo "tidy: ${#files[@]} files, no finding (${elapsed} s, ${JOBS} jobs)"
    rm -rf "$logs"
    return 0
  fi
  sed "s|^$PWD/||" "$logs/findings"
  echo "tidy: $n findings in ${#files[@]} files (${elapsed} s, ${JOBS} jobs); by check:"
  grep -oE '\[[a-z0-9.,-]+\]$' "$logs/findings" | sort | uniq -c | sort -rn | sed 's/^/  /'
  echo "tidy: full clang-tidy output in $logs"
  return 1
}

case "$mode" in
  format) check_format || status=1 ;;
  tidy) check_tidy "$@" || status=1 ;;
  all)
    check_format || status=1
    check_tidy || status=1
    ;;
  *)
    echo "usage: .ci/check-style.sh [format|tidy|all]" >&2
    exit 2
    ;;
esac
exit "$status"
