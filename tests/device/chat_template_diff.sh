#!/usr/bin/env bash
# Renders conversations with every chat template (../shared and built-in)
# through `splitlm chat-render` and through @huggingface/jinja, and requires
# byte-identical text. Args: BIN_DIR NPM_DIR SHARED_DIR SRC_DIR
set -euo pipefail
bin="$1"; npm_dir="$2"; shared="$3"; src="$4"
if ! command -v node >/dev/null; then echo "node is not installed: run cmake/bootstrap.sh test" >&2; exit 1; fi
if [ ! -d "$npm_dir/node_modules/@huggingface/jinja" ]; then
  echo "the @huggingface/jinja npm package is missing in $npm_dir: run cmake/bootstrap.sh test (it installs it)" >&2
  exit 1
fi
if [ ! -d "$shared/tokenizers" ]; then
  echo "SKIPPED: $shared/tokenizers is absent (the shared test data)"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cp "$src/chat_template_diff.mjs" "$npm_dir/"
node "$npm_dir/chat_template_diff.mjs" "$bin/splitlm" "$shared" "$tmp" "$src/chat_template_constructs.jinja"
