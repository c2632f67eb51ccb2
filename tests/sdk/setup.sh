#!/usr/bin/env bash
# Installs the official 1Password Connect SDKs the SDK tests drive, from PyPI and npm only.
# Idempotent: a venv or node_modules that already holds the pinned versions is left alone.
#
#   tests/sdk/.venv               Python venv with onepasswordconnectsdk==2.1.1
#   tests/sdk/node/node_modules   @1password/connect@1.4.2 (axios pinned by package-lock.json)
#
# Usage: bash tests/sdk/setup.sh
set -euo pipefail
cd "$(dirname "$0")"

PY_SDK=onepasswordconnectsdk
PY_SDK_VERSION=2.1.1

echo "== python: tests/sdk/.venv"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if .venv/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('$PY_SDK') != '$PY_SDK_VERSION')" 2>/dev/null; then
  echo "$PY_SDK $PY_SDK_VERSION already installed"
else
  # 2.1.1 pins certifi>=2026.10.19, newer than some package mirrors carry, so its dependencies
  # are installed first and the SDK itself without dependency resolution (connect-api.md §8).
  .venv/bin/pip install --quiet "httpx>=0.28.1,<0.29" "python-dateutil>=2.8.1,<3" certifi
  .venv/bin/pip install --quiet --no-deps "$PY_SDK==$PY_SDK_VERSION"
fi
.venv/bin/python -c "import onepasswordconnectsdk, httpx; print('python sdk ok, httpx', httpx.__version__)"

echo "== node: tests/sdk/node"
cd node
if [ -f node_modules/@1password/connect/package.json ] \
  && node -e 'process.exit(require("./node_modules/@1password/connect/package.json").version === "1.4.2" ? 0 : 1)' \
  && [ node_modules/.package-lock.json -nt package-lock.json ]; then
  echo "@1password/connect 1.4.2 already installed"
else
  npm ci --no-audit --no-fund --loglevel=error
fi
node -e 'const c = require("@1password/connect"); if (typeof c.OnePasswordConnect !== "function") process.exit(1); console.log("node sdk ok, axios", require("axios/package.json").version)'

echo "== browser: tests/browser"
# playwright-core only drives a browser; it downloads none. The viewer test uses Debian's
# /usr/bin/chromium (.ci/run installs it).
cd ../../browser
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
if [ -f node_modules/playwright-core/package.json ] \
  && node -e 'process.exit(require("./node_modules/playwright-core/package.json").version === require("./package.json").dependencies["playwright-core"] ? 0 : 1)' \
  && [ node_modules/.package-lock.json -nt package-lock.json ]; then
  echo "playwright-core $(node -p 'require("./package.json").dependencies["playwright-core"]') already installed"
else
  npm ci --no-audit --no-fund --loglevel=error
fi
node -e 'const p = require("./node_modules/playwright-core/package.json"); console.log("playwright-core ok", p.version)'
