#!/usr/bin/env bash
# Create/reuse a venv with the pinned MCP Python SDK for tests/mcp/drive.py.
# Venv: ${LILY_MCP_VENV:-$HOME/.cache/lily-mcp-venv}. Idempotent.
# The last line of stdout is the venv's python; everything else goes to stderr.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
req="$here/requirements.txt"
venv="${LILY_MCP_VENV:-$HOME/.cache/lily-mcp-venv}"
want="$(sed -n 's/^mcp==\([^[:space:]]*\).*/\1/p' "$req" | head -n1)"
[ -n "$want" ] || { echo "setup.sh: no mcp==X pin in $req" >&2; exit 1; }
py="$venv/bin/python"

have() {
  "$py" -c 'import mcp, importlib.metadata as m; print(m.version("mcp"))' 2>/dev/null || true
}

if [ ! -x "$py" ] || [ "$(have)" != "$want" ]; then
  # Tests may call this in parallel: serialize the install with a lock file.
  mkdir -p "$(dirname "$venv")"
  if command -v flock >/dev/null; then exec 9>"$venv.lock"; flock 9; fi
fi
if [ ! -x "$py" ] || [ "$(have)" != "$want" ]; then
  if [ ! -x "$py" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
  fi
  "$py" -m pip install --quiet --disable-pip-version-check -r "$req" >&2
  got="$(have)"
  [ "$got" = "$want" ] || { echo "setup.sh: mcp is '$got' after install, want $want" >&2; exit 1; }
fi
echo "$py"
