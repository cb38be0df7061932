#!/usr/bin/env bash
# Installs what building and testing need on Debian/Ubuntu: both Lua
# interpreters and their development files (the emulator links liblua),
# and python3 for the import-circle check.
set -euo pipefail
need=()
for cmd in lua5.3 lua5.4 pkg-config python3; do command -v "$cmd" >/dev/null || need+=("$cmd"); done
for pc in lua5.3 lua5.4; do pkg-config --exists "$pc" 2>/dev/null || need+=("lib$pc-dev"); done
[ ${#need[@]} -eq 0 ] && exit 0
pkgs=(lua5.3 lua5.4 liblua5.3-dev liblua5.4-dev pkg-config python3)
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
else
  echo "missing: ${need[*]}; install with: sudo apt-get install ${pkgs[*]}" >&2
  exit 1
fi
