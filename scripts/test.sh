#!/usr/bin/env bash
# The README's test command: system packages, a clean npm install (builds the native addon and the
# TypeScript), lint, then every unit and end-to-end test. Run as root so the end-to-end tests
# (network namespaces, nftables, TPROXY) run instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
npm ci --no-audit --no-fund
npm run lint
npm test
