#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) and prints libFuzzer's final stats.
set -uo pipefail
cd "$(dirname "$0")"
SECONDS_PER_TARGET="${1:-60}"
for target in type_grammar validate_params outbox_record config_loader cluster_protocol inbound_request; do
  echo "== $target"
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 2>&1 \
    | grep -E "stat::number_of_executed_units|stat::average_exec_per_sec|ERROR|panicked|SUMMARY|Done" || true
done
