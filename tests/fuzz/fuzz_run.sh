#!/bin/bash
# Run a libFuzzer harness for a bounded time:
#   fuzz_run.sh FUZZER SECONDS [SEEDS_PY KIND | --self-seeds]
# The corpus starts empty, or with the seeds `SEEDS_PY KIND DIR` writes, or
# (--self-seeds) those the harness writes itself when run with
# CAIRN_FUZZ_SEEDS=DIR; a failed seed set-up fails the test.  UBSan reports
# are fatal like ASan's.
set -u
dir=$(mktemp -d /tmp/cairn-fuzz.XXXXXX) || exit 1
trap 'rm -rf "$dir"' EXIT
mkdir "$dir/corpus" || exit 1
cd "$dir" || exit 1
if [ "${3:-}" = --self-seeds ]; then
  CAIRN_FUZZ_SEEDS=corpus "$1" || { echo "FAIL: seed corpus set-up ($1)"; exit 1; }
  [ -n "$(ls corpus)" ] || { echo "FAIL: $1 wrote no seeds"; exit 1; }
  echo "seed corpus: $(ls corpus | wc -l) files"
elif [ $# -ge 4 ]; then
  python3 "$3" "$4" corpus || { echo "FAIL: seed corpus set-up ($3 $4)"; exit 1; }
  echo "seed corpus: $(ls corpus | wc -l) files"
fi
# A crash fails the test: libFuzzer's own exit code for it, 77, is what
# meson reads as a skip.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
exec "$1" -max_total_time="${2:-30}" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -error_exitcode=1 \
  -print_final_stats=1 corpus
