#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) and prints libFuzzer's final stats.
set -uo pipefail
cd "$(dirname "$0")"
failed=0
SECONDS_PER_TARGET="${1:-60}"
for target in type_grammar validate_params outbox_record config_loader cluster_protocol inbound_request; do
  echo "== $target"
  # The working corpus (corpus/, not committed) starts from the committed seeds.
  mkdir -p "corpus/$target" "corpus_seed/$target"
  # A fixed seed (FUZZ_SEED, default 1) so a finding can be reproduced.
  if ! RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "corpus/$target" "corpus_seed/$target" -- \
      -max_total_time="$SECONDS_PER_TARGET" -seed="${FUZZ_SEED:-1}" -print_final_stats=1 \
      > "/tmp/fuzz-$target.log" 2>&1; then
    failed=1
    echo "!! $target failed (build error or finding); the end of its log:"
    tail -n 40 "/tmp/fuzz-$target.log"
  fi
  grep -E "stat::number_of_executed_units|stat::average_exec_per_sec|ERROR|panicked|SUMMARY|Done" "/tmp/fuzz-$target.log" || true
done
[ "$failed" = 0 ] || { echo "a fuzz target found a failure (logs in /tmp/fuzz-*.log)"; exit 1; }
