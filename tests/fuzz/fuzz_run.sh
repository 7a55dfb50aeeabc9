#!/bin/bash
# Run a libFuzzer harness for a bounded time from an empty corpus (the
# harness builds its own valid inputs): fuzz_run.sh FUZZER SECONDS
set -u
dir=$(mktemp -d /tmp/cairn-fuzz.XXXXXX)
trap 'rm -rf "$dir"' EXIT
mkdir "$dir/corpus"
cd "$dir"
exec "$1" -max_total_time="${2:-30}" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 corpus
