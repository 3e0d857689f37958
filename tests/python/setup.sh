#!/usr/bin/env bash
# Create/reuse a venv with the pinned componentize-py (builds Python
# runnables into components: `lily runnables build`, tests/e2e/python.rs,
# the Python path of docs/guest-authoring.md, host/benches/python.rs).
# Venv: ${LILY_TOOLS_DIR:-$HOME/.cache/lily-tools}/componentize-py-<version>. Idempotent.
# The last line of stdout is the componentize-py executable.
set -euo pipefail
want="0.25.1"
venv="${LILY_TOOLS_DIR:-$HOME/.cache/lily-tools}/componentize-py-$want"
tool="$venv/bin/componentize-py"
have() { "$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("componentize-py"))' 2>/dev/null || true; }
if [ ! -x "$tool" ] || [ "$(have)" != "$want" ]; then
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "componentize-py==$want" >&2
  [ "$(have)" = "$want" ] || { echo "tests/python/setup.sh: componentize-py is '$(have)', want $want" >&2; exit 1; }
fi
echo "$tool"
