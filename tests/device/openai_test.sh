#!/usr/bin/env bash
# Starts a cloud worker and a device serving HTTP, then drives the device
# with the stock `openai` npm client. Args: BIN_DIR NPM_DIR SHARED_DIR SRC_DIR
set -euo pipefail
bin="$1"; npm_dir="$2"; shared="$3"; src="$4"
tmp="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

if [ ! -d "$npm_dir/node_modules/openai" ]; then
  echo "the openai npm package is missing in $npm_dir: run cmake/bootstrap.sh test (it installs it)" >&2
  exit 1
fi
tok_args=(); has_tok=0
if [ -f "$shared/tokenizers/llama2/tokenizer.model" ]; then
  tok_args=(--tokenizer "$shared/tokenizers/llama2/tokenizer.model"); has_tok=1
else
  echo "note: $shared/tokenizers/llama2/tokenizer.model absent: chat checks are skipped" >&2
fi
"$bin/splitlm" make-model --preset tiny --vocab 32000 --seed 5 --out "$tmp/m" "${tok_args[@]}" --log-level warn
# The local greedy continuation: its text with a tokenizer, else its ids.
if [ $has_tok = 1 ]; then
  expected="$("$bin/splitlm" generate --model "$tmp/m" --prompt-ids "1 5 9" --max-tokens 8 --log-level warn)"
else
  expected="$("$bin/splitlm" generate --model "$tmp/m" --prompt-ids "1 5 9" --max-tokens 8 --print-ids --log-level warn)"
  expected="${expected#1 5 9 }"
fi

# A chat template that does not exist ends start-up with the way out.
if "$bin/splitlm-device" --model "$tmp/m" --cut 2 serve --http 127.0.0.1:0 --chat-template nope 2>"$tmp/bad.err"; then
  echo "splitlm-device started with --chat-template nope" >&2; exit 1
fi
grep -q "chat template nope: neither a built-in template (chatml, llama2, llama3, mistral, zephyr) nor a file" "$tmp/bad.err" ||
  { echo "unexpected error for --chat-template nope:" >&2; cat "$tmp/bad.err" >&2; exit 1; }

exec 3< <(exec "$bin/splitlm-cloud" --model "$tmp/m" --bind 'tcp://127.0.0.1:*' --threads 1 2>"$tmp/cloud.err")
pids+=($!)
read -r -t 120 line <&3 || { cat "$tmp/cloud.err" >&2; exit 1; }
endpoint="${line#listening on }"
exec 4< <(exec "$bin/splitlm-device" --model "$tmp/m" --cloud "$endpoint" --cut 2 --threads 1 serve --http 127.0.0.1:0 --chat-template chatml 2>"$tmp/device.err")
pids+=($!)
read -r -t 120 line <&4 || { cat "$tmp/device.err" >&2; exit 1; }
url="${line#serving on }"

cp "$src/openai_client_test.mjs" "$npm_dir/"
status=0
node "$npm_dir/openai_client_test.mjs" "$url" "$expected" "$has_tok" || status=$?
if [ $status -ne 0 ]; then echo "--- device log"; tail -20 "$tmp/device.err"; fi
exit $status
