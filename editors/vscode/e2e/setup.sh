#!/usr/bin/env bash
# Installs what the real-VS-Code test needs, from the npm registry and Debian only:
# code-server (VS Code 1.100 with a remote extension host) and puppeteer-core,
# into editors/vscode/e2e/node_modules. Debian provides chromium, ripgrep and the
# headers code-server's native modules build against:
#
#   apt-get install chromium ripgrep libkrb5-dev build-essential python3
#
# Nothing is downloaded from elsewhere: puppeteer's browser download is skipped
# (we drive /usr/bin/chromium), and @vscode/ripgrep, which would fetch its binary
# from GitHub, finds Debian's `rg` in the cache it looks in first.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
for tool in node npm rg g++ make python3; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "e2e setup: missing ${missing[*]} (apt-get install ripgrep build-essential python3; Node.js 20)" >&2
  exit 1
fi
if [ "$(node -p 'process.versions.node.split(".")[0]')" != 20 ]; then
  echo "e2e setup: code-server 4.100 needs Node.js 20, this is $(node --version)" >&2
  exit 1
fi

if [ -f node_modules/.package-lock.json ] && [ node_modules/.package-lock.json -nt package-lock.json ] \
  && [ -x node_modules/code-server/out/node/entry.js ] && [ -e node_modules/code-server/lib/vscode/node_modules/@vscode/ripgrep/bin/rg ]; then
  exit 0  # installed and up to date
fi

# @vscode/ripgrep's postinstall uses a download it finds in $TMPDIR/vscode-ripgrep-cache-<version>/
# before going to GitHub: give it Debian's rg there, packed as its release would be.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rg_version=$(node -p 'require("./node_modules/code-server/lib/vscode/npm-shrinkwrap.json").packages["node_modules/@vscode/ripgrep"].version' 2>/dev/null \
  || echo 1.15.11)
case "$(uname -m)" in
  x86_64) target=x86_64-unknown-linux-musl ;;
  aarch64) target=aarch64-unknown-linux-musl ;;
  *) echo "e2e setup: unsupported machine $(uname -m)" >&2; exit 1 ;;
esac
mkdir -p "$work/vscode-ripgrep-cache-$rg_version" "$work/rg"
cp "$(command -v rg)" "$work/rg/rg"
for release in v13.0.0-10 v13.0.0-4; do
  tar -czf "$work/vscode-ripgrep-cache-$rg_version/ripgrep-$release-$target.tar.gz" -C "$work/rg" rg
done

# npm 11 runs only the install scripts a project allows. Ours are in package.json's
# allowScripts; code-server's postinstall runs `npm install` in its own folders, whose
# package.json allow none, so: install without scripts, give those folders an .npmrc
# with the same list, then run the scripts (`npm rebuild`).
export npm_config_unsafe_perm=true          # code-server's postinstall insists on it as root
export npm_config_nodedir=${npm_config_nodedir:-$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")}
export PUPPETEER_SKIP_DOWNLOAD=1 PUPPETEER_SKIP_CHROME_DOWNLOAD=1
export npm_config_yes=true                  # node-pty's install script runs `npx node-gyp` (from the registry)
export TMPDIR=$work
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund --ignore-scripts
else
  npm install --no-audit --no-fund --ignore-scripts
fi
allowed=$(node -p 'const a = require("./package.json").allowScripts; Object.keys(a).filter((k) => a[k]).join(",")')
for folder in node_modules/code-server/lib/vscode node_modules/code-server/lib/vscode/extensions; do
  echo "allow-scripts=$allowed" >"$folder/.npmrc"
done
npm rebuild --no-audit --no-fund argon2 code-server
test -e node_modules/code-server/lib/vscode/node_modules/@vscode/ripgrep/bin/rg
echo "e2e setup: code-server $(node -p 'require("code-server/package.json").version') and puppeteer-core $(node -p 'require("puppeteer-core/package.json").version') installed"
