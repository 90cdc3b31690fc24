#!/usr/bin/env bash
# Installs what Vigil needs on Debian 12 (Swift 6 itself is expected on PATH).
set -euo pipefail
packages=(pkg-config librdkafka-dev libhiredis-dev libxgboost-dev redis-server kcat curl python3)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "swift 6 is required on PATH (https://www.swift.org/install/linux/)" >&2; exit 1; }
