#!/usr/bin/env bash
# The README's first command: install what tproxy needs, build it, then run the dashboard.
#   sudo ./scripts/run.sh --demo   no internet needed: throwaway network namespaces with a local
#                                  HTTPS site and traffic, shown decrypted in tproxy-ui; all removed on exit
#   sudo ./scripts/run.sh          the real thing: start tproxy-helper, open tproxy-ui against it
#                                  ('s' starts/stops capture); on exit capture stops and the helper exits
#   sudo ./scripts/run.sh --tail   like the above without the dashboard: start capture, tail with tproxyctl
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

if [ "${1:-}" = "--demo" ]; then
  exec node_modules/.bin/tproxy-ui --demo
fi

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

if [ "${1:-}" = "--tail" ]; then
  shift
  ctl start "$@"
  echo "Capturing. Make HTTPS requests from any program; Ctrl-C stops capture and reverts everything."
  ctl tail
else
  # The dashboard runs as the invoking user when there is one: the helper allows that uid.
  if [ -n "${SUDO_UID:-}" ] && [ "${SUDO_UID}" != 0 ]; then
    setpriv --reuid "$SUDO_UID" --regid "${SUDO_GID:-$SUDO_UID}" --init-groups node_modules/.bin/tproxy-ui --socket "$SOCK" || true
  else
    node_modules/.bin/tproxy-ui --socket "$SOCK" || true
  fi
fi
