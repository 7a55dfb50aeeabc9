#!/usr/bin/env python3
"""Sums Meson test logs (testlog.json, one JSON object per line) into the
closing line 'N passed, N failed, N skipped'.  Every result counts: a test
that ran twice (meson test --repeat, or a name in two suites), failed once
and passed once, is one failure and one pass, so the run has failed.

A skipped test (exit 77) is a failure on CI's machines, which have what the
tests need (KVM, root, QEMU, binutils), unless its name is in .ci/allowed-skips
(or the file $CAIRN_ALLOWED_SKIPS names) with the reason the skip is right."""
import json
import os
import sys


def allowed_skips():
    path = os.environ.get("CAIRN_ALLOWED_SKIPS") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", ".ci", "allowed-skips")
    allowed = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, _, reason = line.partition(" ")
            if not reason.strip():
                sys.exit(f"{path}:{n}: '{name}' has no reason")
            allowed[name] = reason.strip()
    return allowed


allowed = allowed_skips()
passed = failed = skipped = 0
for path in sys.argv[1:]:
    try:
        with open(path) as f:
            lines = [line.strip() for line in f]
    except FileNotFoundError:
        print(f"missing test log {path}", file=sys.stderr)
        failed += 1
        continue
    for line in lines:
        if not line:
            continue
        try:
            t = json.loads(line)
            name, result = t["name"], t["result"]
        except (ValueError, KeyError, TypeError):
            print(f"{path}: unreadable test log line: {line[:200]}", file=sys.stderr)
            failed += 1
            continue
        if result in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif result == "SKIP" and (name in allowed or name.split(" / ")[-1] in allowed):
            skipped += 1
        elif result == "SKIP":
            print(f"{path}: {name}: skipped, and not in .ci/allowed-skips: a failure here",
                  file=sys.stderr)
            failed += 1
        else:
            print(f"{path}: {name}: {result}", file=sys.stderr)
            failed += 1
print(f"{passed} passed, {failed} failed, {skipped} skipped")
