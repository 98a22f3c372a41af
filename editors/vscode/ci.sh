#!/usr/bin/env bash
# The VS Code extension's checks: install, type-check and bundle, unit tests, .vsix.
# Skips (exit 0) with a message when Node.js 20+ or npm is not installed.
#
# With the repository's Python environment present (.venv, or $CODETAILOR_PYTHON),
# the tests also run the extension's wire format against the real server on a
# tiny model built in code (test/server.test.ts).
set -euo pipefail
start=$(pwd)
cd "$(dirname "$0")"
repo=$(cd ../.. && pwd)

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "editors/vscode: SKIPPED: node and npm are not installed (Node.js 20+ is needed)"
  exit 0
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "editors/vscode: SKIPPED: Node.js $(node --version) is too old (20+ is needed)"
  exit 0
fi

python=${CODETAILOR_PYTHON:-$repo/.venv/bin/python}
case "$python" in /*) ;; *) python="$start/$python" ;; esac  # relative to the caller's folder
if [ -z "${CODETAILOR_TEST_SERVER:-}" ] && [ -x "$python" ]; then
  tiny=$(mktemp -d)
  trap 'rm -rf "$tiny"' EXIT
  (cd "$repo" && "$python" -c 'import sys; from pathlib import Path; from tests.tiny import build_model; build_model(Path(sys.argv[1]))' "$tiny/model" >/dev/null 2>&1)
  export CODETAILOR_TEST_SERVER="[\"$python\", \"-m\", \"lsp_server.cli\", \"serve\", \"--model\", \"$tiny/model\"]"
  export CODETAILOR_TEST_CWD=$repo CODETAILOR_HOME=$tiny/home HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
else
  echo "editors/vscode: no Python environment at $python: the real-server test will be skipped"
fi

# A clean install, unless node_modules already matches package-lock.json.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run build
npm test
npm run package
echo "editors/vscode: OK ($(pwd)/codetailor.vsix)"
