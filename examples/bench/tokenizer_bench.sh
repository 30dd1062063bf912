#!/usr/bin/env bash
# Tokenizer throughput: `splitlm tokenize` against @huggingface/tokenizers
# (node, pure JavaScript) on the same deterministic ~10 MB mixed-script text
# with the Llama 3 tokenizer.json, one thread each. A benchmark, not a test.
# Usage (from the repository root, after building):
#   flock /tmp/splitlm-cpu.lock examples/bench/tokenizer_bench.sh [TOKENIZER_DIR] [BYTES]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
tok="${1:-$root/../shared/tokenizers/llama3}"
bytes="${2:-10000000}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
node "$root/tests/partition/tokenizer_corpus.mjs" text "$bytes" 7 > "$tmp/text.txt"
echo "text: $(wc -c < "$tmp/text.txt") bytes (tests/partition/tokenizer_corpus.mjs text $bytes 7); tokenizer $tok"
for run in 1 2; do
  start=$(date +%s.%N)
  "$root/build/bin/splitlm" --threads 1 tokenize --tokenizer "$tok/tokenizer.json" --text-file "$tmp/text.txt" \
    --log-level debug 2> "$tmp/err" > "$tmp/ids.txt"
  end=$(date +%s.%N)
  enc="$(grep -o 'encoded .*' "$tmp/err")"
  echo "splitlm run $run: $enc; whole command $(echo "$end - $start" | bc) s ($(wc -w < "$tmp/ids.txt") ids)"
  node "$root/tests/partition/tokenizer_reference.mjs" bench "$root/build/npm" "$tok" "$tmp/text.txt"
done
