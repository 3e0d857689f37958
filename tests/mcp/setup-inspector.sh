#!/usr/bin/env bash
# Install (or reuse) the MCP Inspector CLI, pinned, for tests/e2e/mcp.rs.
# Dir: ${LILY_MCP_INSPECTOR_DIR:-$HOME/.cache/lily-mcp-inspector}. The last
# line of stdout is the path of its `mcp-inspector` binary.
set -euo pipefail
version="2.12.0"
dir="${LILY_MCP_INSPECTOR_DIR:-$HOME/.cache/lily-mcp-inspector}"
bin="$dir/node_modules/.bin/mcp-inspector"
mkdir -p "$dir"
have="$(node -p "require('$dir/node_modules/@modelcontextprotocol/inspector/package.json').version" 2>/dev/null || true)"
if [ ! -x "$bin" ] || [ "$have" != "$version" ]; then
  (cd "$dir" && [ -f package.json ] || echo '{"private": true}' > package.json)
  (cd "$dir" && npm install --silent --no-audit --no-fund "@modelcontextprotocol/inspector@$version" >&2)
fi
echo "$bin"
