#!/usr/bin/env bash
# Builds the connector module for Lua 5.3 and 5.4 into target/lua/.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target/lua
for v in 53 54; do
  cargo build --release --features "lua$v" --target-dir "target/build-lua$v"
  cp "target/build-lua$v/release/libcanopsis_native.so" "target/lua/canopsis_native_$v.so"
done
