#!/usr/bin/env bash
# Differential test: splitlm's tokenizer.json tokenizers against the reference
# @huggingface/tokenizers (npm, installed by cmake/bootstrap.sh into build/npm)
# on a generated corpus of 10,000 strings, for Llama 3 and Qwen3: identical ids
# for every string, and decoding gives the reference's text back.
# Args: BIN_DIR NPM_DIR SHARED_DIR SRC_DIR. Exit 77 (skipped) without node,
# the npm package or ../shared.
set -euo pipefail
bin="$1"; npm_dir="$2"; shared="$3"; src="$4"
count="${SPLITLM_TOKENIZER_CORPUS:-10000}"
if ! command -v node >/dev/null; then echo "SKIP: node is not installed" >&2; exit 77; fi
if [ ! -d "$npm_dir/node_modules/@huggingface/tokenizers" ]; then
  echo "SKIP: @huggingface/tokenizers is missing in $npm_dir: run cmake/bootstrap.sh test (it installs it)" >&2
  exit 77
fi
if [ ! -d "$shared/tokenizers/llama3" ]; then echo "SKIP: $shared/tokenizers is absent (test data)" >&2; exit 77; fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

node "$src/tokenizer_corpus.mjs" jsonl "$count" 13 > "$tmp/corpus.jsonl"
status=0
for m in llama3 qwen3; do
  node "$src/tokenizer_reference.mjs" encode "$npm_dir" "$shared/tokenizers/$m" "$tmp/corpus.jsonl" "$tmp/ref_$m.jsonl"
  "$bin/splitlm" tokenize --tokenizer "$shared/tokenizers/$m/tokenizer.json" --jsonl "$tmp/corpus.jsonl" > "$tmp/ours_$m.jsonl"
  "$bin/splitlm" detokenize --tokenizer "$shared/tokenizers/$m/tokenizer.json" --jsonl "$tmp/ours_$m.jsonl" > "$tmp/ours_$m.text"
  node "$src/tokenizer_reference.mjs" compare "$m" "$tmp/corpus.jsonl" "$tmp/ref_$m.jsonl" "$tmp/ours_$m.jsonl" \
    "$tmp/ours_$m.text" || status=1
done
exit $status
