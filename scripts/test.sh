#!/bin/bash
# Runs cairn's test suite (the README's test command).
#   scripts/test.sh            build in build/ and run every suite but the long ones
#   scripts/test.sh --asan     the same in build-asan/ with AddressSanitizer + UBSan
#   scripts/test.sh --long     only the long suite (Linux guest on this host)
#   scripts/test.sh --fuzz     the libFuzzer harnesses for a bounded time (clang, build-fuzz/,
#                              with AddressSanitizer + UBSan)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build; setup_args=(); test_args=(--no-suite long)
for a in "$@"; do
  case "$a" in
    --asan) dir=build-asan; setup_args+=(-Db_sanitize=address,undefined -Db_lundef=false) ;;
    --long) test_args=(--suite long --logbase testlog-long) ;;
    --fuzz) dir=build-fuzz; export CC=clang; test_args=(--suite fuzz)
            setup_args+=(-Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false) ;;
    *) test_args+=("$a") ;;
  esac
done
if [ -f "$dir/build.ninja" ]; then
  # An existing build dir gets the options too (one made before they changed).
  [ ${#setup_args[@]} -eq 0 ] || meson configure "$dir" "${setup_args[@]}"
else
  meson setup "$dir" "${setup_args[@]}"
fi
meson compile -C "$dir"
meson test -C "$dir" --print-errorlogs "${test_args[@]}"
