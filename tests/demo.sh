#!/usr/bin/env bash
# Runs the connector end to end on an embedded default: the emulated broker
# feeds sample BBDO 3 events into a mock Canopsis on 127.0.0.1.
#   bash tests/demo.sh webhook [mattermost|json|ndjson]: the webhook output
#   into a mock Mattermost (messages printed as the channel shows them) or
#   Logstash input.
#   bash tests/demo.sh mattermost-actions: a problem message with its
#   Acknowledge buttons, clicked through the action service into a mock
#   Centreon API.
#   bash tests/demo.sh mattermost-threads: one alert's thread through a
#   bot account (REST API): problem, click, acknowledgement, change,
#   recovery, the root edited to Resolved.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
bash tests/build-modules.sh
cd tests/harness
if [ "${1:-}" = mattermost-actions ]; then
  exec cargo run -q --release --features lua53 --bin actions-demo
fi
if [ "${1:-}" = mattermost-threads ]; then
  exec cargo run -q --release --features lua53 --bin threads-demo
fi
cargo run -q --release --features lua53 --bin broker-emulator -- "$@"
