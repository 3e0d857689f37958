#!/usr/bin/env bash
# Build a JavaScript runnable project into a component, the steps
# `lily runnables build` runs for a JS project: bundle the entry with
# rolldown (the `lily:*` / `wasi:*` imports stay external), then
# componentize-js against the SDK's vendored WIT (world `js-runnable`, or
# `js-llm` when package.json has "lily": {"llm": true}).
# Usage: build.sh PROJECT_DIR OUT.wasm   (tools: $LILY_JS_TOOLS or setup.sh's dir)
set -euo pipefail
proj="$(cd "$1" && pwd)"; out="$2"
tools="${LILY_JS_TOOLS:-${LILY_TOOLS_DIR:-$HOME/.cache/lily-tools}/jco-1.35.0}"
bin="$tools/node_modules/.bin"
[ -x "$bin/componentize-js" ] || { echo "build.sh: no componentize-js in $tools; run: bash tests/js/setup.sh" >&2; exit 2; }
cd "$proj"
[ -d node_modules/lily-guest ] || npm install --silent --no-audit --no-fund >&2
entry="$(node -p "(require('./package.json').lily || {}).entry || 'component.js'")"
world="$(node -p "const l = require('./package.json').lily || {}; l.world || (l.llm ? 'js-llm' : 'js-runnable')")"
wit="$(node -p "(require('./package.json').lily || {}).wit || 'node_modules/lily-guest/wit'")"
mkdir -p build
"$bin/rolldown" "$entry" --format esm --file build/bundle.js \
  --external 'lily:runnable/events@0.1.1,lily:runnable/effects@0.1.1,lily:runnable/llm@0.1.1,lily:runnable/types@0.1.1,wasi:filesystem/preopens@0.2.12,wasi:cli/environment@0.2.12,wasi:sockets/instance-network@0.2.12,wasi:sockets/tcp-create-socket@0.2.12,wasi:sockets/ip-name-lookup@0.2.12' >/dev/null
"$bin/componentize-js" --wit "$wit" -n "$world" -d http fetch-event -o "$out" build/bundle.js >&2
