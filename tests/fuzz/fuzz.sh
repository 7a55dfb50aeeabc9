#!/bin/bash
# Make a small seed corpus with qemu-img (when present) and cairn, then run
# the fuzzer for a bounded time: fuzz.sh FUZZER CAIRN SECONDS
set -u
FUZZER=$1 CAIRN=$2 SECS=${3:-60}
dir=$(mktemp -d /tmp/cairn-fuzz.XXXXXX) || exit 1
trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 1
# The corpus set-up must work: a seed that silently failed would leave the
# fuzzer starting from less than it claims.
trap 'echo "FAIL: fuzz corpus set-up: $BASH_COMMAND"' ERR
set -e
mkdir corpus
"$CAIRN" img create -o cluster_size=512 corpus/c512.qcow2 1M >/dev/null
"$CAIRN" img create -o cluster_size=65536 corpus/c64k.qcow2 64M >/dev/null
"$CAIRN" img io -c "write -P 1 0 3000" -c "write -z 64k 64k" corpus/c512.qcow2
if command -v qemu-img >/dev/null; then
  qemu-img create -q -f qcow2 -o cluster_size=4096 q.qcow2 1M
  qemu-io -c "write -P 2 0 20k" -c "write -z 64k 8k" q.qcow2 >/dev/null
  cp q.qcow2 corpus/
  qemu-img convert -c -O qcow2 -o cluster_size=4096 q.qcow2 corpus/comp.qcow2
  qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=16k corpus/ext.qcow2 1M
  qemu-img create -q -f qcow2 -o compat=0.10,cluster_size=4096 corpus/v2.qcow2 1M
fi
set +e
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
exec "$FUZZER" -max_total_time="$SECS" -max_len=262144 -timeout=10 -rss_limit_mb=2048 -error_exitcode=1 \
  -print_final_stats=1 corpus
