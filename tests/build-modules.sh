#!/usr/bin/env bash
# Builds the connector module for Lua 5.3 and 5.4 into target/lua/.
# Also a test-only twin of each into target/lua/faults/, built with the
# `fault-injection` feature (a chosen call panics on request, see
# src/lua/fault.rs) for tests/harness/tests/panics.rs; never packaged.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target/lua/faults
for v in 53 54; do
  cargo build --release --features "lua$v" --target-dir "target/build-lua$v"
  cp "target/build-lua$v/release/libcanopsis_native.so" "target/lua/canopsis_native_$v.so"
  # A directory of its own: a cdylib's name carries no feature hash, so
  # sharing one would rebuild both at every run.
  cargo build --release --features "lua$v fault-injection" --target-dir "target/build-lua$v-faults"
  cp "target/build-lua$v-faults/release/libcanopsis_native.so" "target/lua/faults/canopsis_native_$v.so"
done
