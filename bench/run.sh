#!/bin/sh
# tproxy benchmark, one command: sudo ./bench/run.sh [--quick] [--runs N] [--duration S]
#                                                     [--download-mib N] [--names N]
# Installs nginx, h2load, mitmproxy and sslsplit from Debian if missing (root only), builds the workspace, then runs
# bench/bench.ts, which re-executes itself inside the trust-store sandbox and its own network
# namespaces (nothing touches the host's network namespace or trust store). Writes bench/RESULTS.md.
set -eu
cd "$(dirname "$0")/.."

need=""
dpkg -s nginx-light >/dev/null 2>&1 || dpkg -s nginx-core >/dev/null 2>&1 || dpkg -s nginx >/dev/null 2>&1 || need="$need nginx-light"
dpkg -s nghttp2-client >/dev/null 2>&1 || need="$need nghttp2-client"
# The peers (bench/peers.ts); skipped with a reason in RESULTS.md if they still cannot run.
case " $* " in *" --peers none "*) ;; *)
  dpkg -s mitmproxy >/dev/null 2>&1 || need="$need mitmproxy"
  dpkg -s sslsplit >/dev/null 2>&1 || need="$need sslsplit" ;;
esac
if [ -n "$need" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "bench: needs root, and these Debian packages:$need (apt-get install -y$need)" >&2
    exit 2
  fi
  echo "bench: installing$need" >&2
  # Note: on a systemd host the nginx package enables and starts its default site (port 80);
  # the benchmark runs its own nginx with its own config and never uses that one.
  apt-get install -y -q $need >&2 || { apt-get update -q >&2 && apt-get install -y -q $need >&2; }
fi
if [ "$(id -u)" != 0 ]; then
  echo "bench: needs root (network namespaces, nftables): sudo $0 $*" >&2
  exit 2
fi
command -v systemd-socket-activate >/dev/null || { echo "bench: needs systemd-socket-activate (package systemd)" >&2; exit 2; }

[ -f packages/helper/dist/main.js ] && [ -f packages/client/dist/index.js ] || npm run build >&2
exec node --import tsx bench/bench.ts "$@"
