#!/usr/bin/env bash
# Writes docs/dependencies.dot and docs/dependencies.svg: splitlm's libraries
# and executables and what each links, from CMake's own graph
# (`cmake --graphviz`, in a scratch build directory; nothing is compiled).
# The svg needs graphviz's `dot`. The test `dependency_layers` checks the
# .dot against the build.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/CMakeGraphVizOptions.cmake" <<'OPTIONS'
set(GRAPHVIZ_GRAPH_NAME "splitlm")
set(GRAPHVIZ_EXTERNAL_LIBS FALSE)
set(GRAPHVIZ_INTERFACE_LIBS FALSE)
set(GRAPHVIZ_OBJECT_LIBS FALSE)
set(GRAPHVIZ_MODULE_LIBS FALSE)
set(GRAPHVIZ_GENERATE_PER_TARGET FALSE)
set(GRAPHVIZ_GENERATE_DEPENDERS FALSE)
# The libraries and the three shipped executables only.
set(GRAPHVIZ_IGNORE_TARGETS "^splitlm_(test_util|torch|kernels_.*|spm)$" "_test$" "^fuzz_")
OPTIONS
cmake -S . -B "$tmp" -G Ninja -DSPLITLM_BUILD_TESTS=OFF --graphviz="$tmp/splitlm.dot" >/dev/null
{
  echo "// splitlm: libraries and what they link, written by cmake/dependency_graph.sh"
  echo "// from \`cmake --graphviz\`; layers (cmake/SplitlmLayers.cmake): transport, partition 0;"
  echo "// scheduler 1; device, cloud 2; sim 3; executables on top."
  cat "$tmp/splitlm.dot"
} > docs/dependencies.dot
if command -v dot >/dev/null; then
  dot -Tsvg docs/dependencies.dot -o docs/dependencies.svg
else
  echo "dependency_graph.sh: graphviz's dot is not installed: docs/dependencies.svg not redrawn" >&2
fi
