#!/usr/bin/env bash
# Create/reuse a venv with the pinned kubernetes-validate (offline strict
# validation against bundled Kubernetes schemas, tests/e2e/export.rs).
# Venv: ${LILY_K8S_VENV:-$HOME/.cache/lily-k8s-venv}. Idempotent.
# The last line of stdout is the kubernetes-validate executable.
set -euo pipefail
want="1.37.0"
venv="${LILY_K8S_VENV:-$HOME/.cache/lily-k8s-venv}"
tool="$venv/bin/kubernetes-validate"
have() { "$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("kubernetes-validate"))' 2>/dev/null || true; }
if [ ! -x "$tool" ] || [ "$(have)" != "$want" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$want" >&2
  [ "$(have)" = "$want" ] || { echo "tests/k8s/setup.sh: kubernetes-validate is '$(have)', want $want" >&2; exit 1; }
fi
echo "$tool"
