#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages tproxy needs at run time and for its tests, if missing.
# Idempotent and quiet when everything is there. Needs root for apt-get; otherwise names what to install.
set -euo pipefail
PACKAGES=(nftables iptables ipset iproute2 curl openssl ca-certificates libnss3-tools tmux systemd g++ make python3 util-linux)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "tproxy needs these packages: ${missing[*]}" >&2
  echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
