#!/usr/bin/env bash
# The README's first command: install what tproxy needs, build it, start tproxy-helper, start
# capture and tail decrypted exchanges until Ctrl-C; then stop capture (every rule, route and the
# CA leave the system) and stop the helper. Run as root on Debian/Ubuntu.
#   sudo ./scripts/run.sh [--port N]...     (extra flags go to `tproxyctl start`)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "run.sh needs root (it installs packages and steers traffic): sudo $0 $*" >&2
  exit 1
fi
./scripts/deps.sh
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run build --silent

SOCK=${TPROXY_SOCKET:-/run/tproxy/helper.sock}
LOG=/run/tproxy/helper.log
mkdir -p /run/tproxy
ALLOW=()
[ -n "${SUDO_UID:-}" ] && [ "${SUDO_UID}" != 0 ] && ALLOW=(--allow-uid "$SUDO_UID")
node_modules/.bin/tproxy-helper --socket "$SOCK" "${ALLOW[@]}" >>"$LOG" 2>&1 &
HELPER=$!
ctl() { node_modules/.bin/tproxyctl --socket "$SOCK" "$@"; }
finish() {
  trap - EXIT INT TERM
  ctl stop >/dev/null 2>&1 || true
  kill -TERM "$HELPER" 2>/dev/null && wait "$HELPER" 2>/dev/null || true
  echo "capture stopped, helper exited; log: $LOG"
}
trap finish EXIT INT TERM
for _ in $(seq 100); do [ -S "$SOCK" ] && break; kill -0 "$HELPER" 2>/dev/null || { cat "$LOG" >&2; exit 1; }; sleep 0.1; done
ctl start "$@"
echo
echo "Capturing. In another terminal: curl https://example.com/ (any program, unchanged)."
echo "Also: tproxyctl status | tproxyctl get ID | tproxyctl ca --pem   (socket: $SOCK)"
echo "Ctrl-C stops capture and reverts everything."
echo
ctl tail
