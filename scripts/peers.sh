#!/usr/bin/env bash
# Installs the npm packages that tests run as real peers on loopback (tests/peers: the OTLP mock
# receiver and the OpAMP mock server), exactly as pinned by tests/peers/package-lock.json, with
# `npm ci`. Install scripts are not run: the peers are plain JavaScript and need none.
# Idempotent: nothing is done when tests/peers/node_modules was installed from the same lock file.
set -euo pipefail
cd "$(dirname "$0")/.."

peers=tests/peers
stamp=$peers/node_modules/.cistern-lock.sha256

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "peers: node and npm are needed; scripts/bootstrap.sh installs them" >&2
  exit 1
fi

want=$(sha256sum "$peers/package-lock.json" | cut -d' ' -f1)
if [[ -f $stamp && $(<"$stamp") == "$want" ]]; then
  echo "peers: npm packages match $peers/package-lock.json"
  exit 0
fi

echo "peers: installing npm packages from $peers/package-lock.json"
npm ci --prefix "$peers" --no-audit --no-fund --ignore-scripts
echo "$want" >"$stamp"
