#!/usr/bin/env bash
# The VS Code extension's checks: install, type-check and bundle, unit tests, .vsix.
# Skips (exit 0) with a message when Node.js 20+ or npm is not installed.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "editors/vscode: SKIPPED: node and npm are not installed (Node.js 20+ is needed)"
  exit 0
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "editors/vscode: SKIPPED: Node.js $(node --version) is too old (20+ is needed)"
  exit 0
fi

npm ci --no-audit --no-fund
npm run build
npm test
npm run package
echo "editors/vscode: OK ($(pwd)/codetailor.vsix)"
