#!/usr/bin/env bash
# The VS Code extension in a real VS Code: code-server 4.100 (VS Code 1.100 with a
# remote extension host) driven by Debian's Chromium through puppeteer-core, with
# the .vsix built from this tree and our server on a tiny model built in code.
# See README.md here. Needs: Node.js 20, the repository's .venv (or
# $CODETAILOR_PYTHON), and from Debian: chromium ripgrep libkrb5-dev build-essential.
#
#   editors/vscode/e2e/run.sh                    # install once (setup.sh), build the .vsix, run
#   CODETAILOR_E2E_SERVER_COMMAND=/nonexistent editors/vscode/e2e/run.sh   # must fail
#
# With CODETAILOR_E2E_OPTIONAL=1 (as `make test` sets it) a missing prerequisite
# skips the test with a message instead of failing.
set -euo pipefail
start=$(pwd)
here=$(cd "$(dirname "$0")" && pwd)
ext=$(dirname "$here")
repo=$(cd "$ext/../.." && pwd)

python=${CODETAILOR_PYTHON:-$repo/.venv/bin/python}
case "$python" in /*) ;; *) python="$start/$python" ;; esac
chromium=${CHROMIUM:-/usr/bin/chromium}

missing=()
[ -x "$python" ] || missing+=("the repository's Python environment ($python; run make install)")
[ -x "$chromium" ] || missing+=("Chromium ($chromium; apt-get install chromium)")
command -v rg >/dev/null 2>&1 || missing+=("ripgrep (apt-get install ripgrep)")
command -v node >/dev/null 2>&1 && [ "$(node -p 'process.versions.node.split(".")[0]')" = 20 ] \
  || missing+=("Node.js 20 (code-server 4.100 runs on Node 20 only)")
if [ ${#missing[@]} -gt 0 ]; then
  for m in "${missing[@]}"; do echo "editors/vscode/e2e: missing $m" >&2; done
  if [ -n "${CODETAILOR_E2E_OPTIONAL:-}" ]; then
    echo "editors/vscode/e2e: SKIPPED"
    exit 0
  fi
  exit 1
fi

t0=$(date +%s)
"$here/setup.sh"
t1=$(date +%s)

# The .vsix from the tree (what a user installs).
cd "$ext"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run --silent package >/dev/null
t2=$(date +%s)

# The tiny test model is never confident enough for the show-or-stay-quiet rule: show all.
CODETAILOR_QUIETNESS=0 \
CODETAILOR_PYTHON=$python CODETAILOR_REPO=$repo CODETAILOR_VSIX=$ext/codetailor.vsix CHROMIUM=$chromium \
  CODETAILOR_E2E_ARTIFACTS=${CODETAILOR_E2E_ARTIFACTS:-$here/artifacts} \
  node "$here/test.mjs"
t3=$(date +%s)
echo "editors/vscode/e2e: OK (setup $((t1 - t0)) s, .vsix $((t2 - t1)) s, test $((t3 - t2)) s)"
