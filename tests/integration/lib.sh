# Shared helpers for integration tests (source it: . "$SRCDIR/tests/integration/lib.sh").
set -uo pipefail

TMP=$(mktemp -d /tmp/cairn-it.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

fail() { echo "FAIL: $*"; exit 1; }
pass() { echo "PASS: $*"; }

# A test that needs /dev/kvm skips loudly where it is missing.
need_kvm() {
  if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
    echo "################################################################"
    echo "SKIP: /dev/kvm is missing or not accessible: this test needs KVM"
    echo "################################################################"
    exit 77
  fi
}

need_testos() {
  [ -f "$TESTOS" ] || fail "test guest $TESTOS was not built"
}

# wait_for FILE PATTERN SECONDS: wait until FILE contains PATTERN (grep -E).
wait_for() {
  local file=$1 pat=$2 secs=$3 i
  for ((i = 0; i < secs * 10; i++)); do
    grep -qE -- "$pat" "$file" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "timed out after ${secs}s waiting for /$pat/ in $file; it holds:"
  tail -n 30 "$file"
  return 1
}
