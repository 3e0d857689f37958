#!/usr/bin/env bash
# End to end against a real model (scripts/llm-local.sh): a fresh root,
# `lily llm check`, the example `review` job (llm-review.v1 + security.v1,
# llm-synth.v1, llm_with_fallback), then the server is stopped and the run
# is replayed with --verify from its tape. Not part of the default tests
# (the model server takes ~12 min to build once); `just llm-smoke`.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${LILY_LLM_PORT:-8099}
LILY=${LILY:-target/debug/lily}
[ -x "$LILY" ] || cargo build -p lily --locked
start=$(date +%s)
scripts/llm-local.sh start
ROOT=$(mktemp -d)
trap 'rm -rf "$ROOT"' EXIT
"$LILY" --root "$ROOT" init > /dev/null
cat > "$ROOT/.lily/config.yaml" <<YAML
llm:
  providers:
    local: {kind: openai, base_url: "http://127.0.0.1:$PORT/v1", timeout_seconds: 120, max_retries: 1}
  models:
    reviewer: {provider: local, model: "gemma-3-270m", temperature: 0, max_output_tokens: 512}
YAML
"$LILY" --root "$ROOT" llm check
t0=$(date +%s)
# 0 succeeded, 4 partial (the base model's review fails and the council goes on).
"$LILY" --root "$ROOT" jobs run review || [ $? -eq 4 ]
t1=$(date +%s)
run=$("$LILY" --root "$ROOT" --json jobs runs review --limit 1 | sed -n 's/.*"run_id": "\(.*\)".*/\1/p')
"$LILY" --root "$ROOT" jobs show "$run" | tee "$ROOT/show.txt"
calls=$(sed -n 's/^model calls: \([0-9]*\).*/\1/p' "$ROOT/show.txt")
[ "${calls:-0}" -ge 1 ] || { echo "the run made no model calls" >&2; exit 1; }
scripts/llm-local.sh stop
"$LILY" --root "$ROOT" jobs replay "$run" --verify
end=$(date +%s)
echo "llm-smoke: ok — $calls model calls, review job $((t1 - t0)) s, whole smoke $((end - start)) s (server start included)"
