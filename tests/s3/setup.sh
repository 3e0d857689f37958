#!/usr/bin/env bash
# Create/reuse a venv with the pinned moto server (a real S3 API on
# loopback for the run-store tests, tests/e2e/store.rs).
# Venv: ${LILY_TOOLS_DIR:-$HOME/.cache/lily-tools}/moto-<version>. Idempotent.
# The last line of stdout is the moto_server executable.
set -euo pipefail
want="5.2.1"
venv="${LILY_TOOLS_DIR:-$HOME/.cache/lily-tools}/moto-$want"
tool="$venv/bin/moto_server"
have() { "$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null || true; }
if [ ! -x "$tool" ] || [ "$(have)" != "$want" ]; then
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "moto[server]==$want" >&2
  [ "$(have)" = "$want" ] || { echo "tests/s3/setup.sh: moto is '$(have)', want $want" >&2; exit 1; }
fi
echo "$tool"
