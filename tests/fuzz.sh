#!/usr/bin/env bash
# Fuzzes the event-to-JSON path (fuzz/fuzz_targets/event_json.rs) for N
# seconds (default 30) with cargo-fuzz / libFuzzer. The toolchain here is
# stable: RUSTC_BOOTSTRAP lets it take the sanitizer flags cargo-fuzz uses.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
command -v cargo-fuzz >/dev/null || cargo install -q --locked cargo-fuzz
(cd fuzz && cargo fmt --check)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! RUSTC_BOOTSTRAP=1 cargo fuzz run event_json -- -max_total_time="$seconds" >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  echo "fuzzing found a crash: the input is in fuzz/artifacts/event_json/" >&2
  exit 1
fi
grep -E '^Done' "$log"
echo "fuzz: event_json ok"
