#!/usr/bin/env bash
# The project's test command: lint, unit tests of the pure core, both module
# builds, the real lua5.3/lua5.4 interpreters, the broker emulator and mock
# Canopsis/Mattermost/Logstash end-to-end suites (both outputs, the three
# webhook formats) for Lua 5.3 and Lua 5.4, then the packages
# (built for glibc 2.28, linted, installed into throwaway roots and run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh

echo "== import circles (the layers' imports run one way: README, Layout)"
circles=$(python3 ../shared/tools/import-circles.py src)
echo "$circles" | tail -n 1
if ! echo "$circles" | tail -n 1 | grep -q '^0 import circle(s)'; then
  echo "$circles"
  echo "import circle(s) in src: move what both sides need below them" >&2
  exit 1
fi

echo "== format and lint"
cargo fmt --all -- --check
(cd tests/harness && cargo fmt --all -- --check)
cargo clippy -q --all-targets -- -D warnings
cargo clippy -q --all-targets --features lua53 --target-dir target/build-lua53 -- -D warnings

echo "== unit tests (pure Rust core, no Lua)"
cargo test

echo "== module builds"
bash tests/build-modules.sh

echo "== real interpreters"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for v in 5.3 5.4; do
  "lua$v" tests/smoke.lua target/lua "$scratch"
done

echo "== end to end, Lua 5.3 (EL8, Debian, Ubuntu)"
(cd tests/harness && cargo clippy -q --all-targets --features lua53 -- -D warnings && cargo test --features lua53)
echo "== end to end, Lua 5.4 (EL9)"
(cd tests/harness && cargo test --features lua54 --target-dir target/lua54)

echo "== fuzzing the event-to-JSON path (30 s)"
bash tests/fuzz.sh 30

echo "== packages"
bash packaging/check.sh
