#!/usr/bin/env bash
# Install (or reuse) the pinned JavaScript component toolchain: jco 1.35.0
# and componentize-js 0.22.0 (the componentize-js that jco 1.35.0 depends
# on; 0.23.0 is newer than jco's `^0.22.0` range) with rolldown as their
# bundler and preview2-shim 0.25.0 (which componentize-js needs to run), from tests/js/tools-package{,-lock}.json (`npm ci`, so every
# transitive version is pinned too).
# Dir: ${LILY_TOOLS_DIR:-$HOME/.cache/lily-tools}/jco-1.35.0. Idempotent.
# The last line of stdout is the tools directory (LILY_JS_TOOLS).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="1.35.0"
dir="${LILY_TOOLS_DIR:-$HOME/.cache/lily-tools}/jco-$version"
have() { node -p "require('$dir/node_modules/@bytecodealliance/componentize-js/package.json').version" 2>/dev/null || true; }
# componentize-js 0.22.0 imports @bytecodealliance/preview2-shim at run time
# but lists it only as a dev dependency, so it is pinned here directly; a
# tools dir installed without it (from the earlier lock) is reinstalled.
if [ ! -x "$dir/node_modules/.bin/componentize-js" ] || [ ! -x "$dir/node_modules/.bin/rolldown" ] || [ "$(have)" != "0.22.0" ] \
  || [ ! -f "$dir/node_modules/@bytecodealliance/preview2-shim/package.json" ]; then
  mkdir -p "$dir"
  cp "$here/tools-package.json" "$dir/package.json"
  cp "$here/tools-package-lock.json" "$dir/package-lock.json"
  (cd "$dir" && npm ci --silent --no-audit --no-fund >&2)
  [ "$(have)" = "0.22.0" ] || { echo "tests/js/setup.sh: componentize-js is '$(have)', want 0.22.0" >&2; exit 1; }
fi
echo "$dir"
