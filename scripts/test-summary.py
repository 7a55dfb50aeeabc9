#!/usr/bin/env python3
"""Sums Meson test logs (testlog.json, one JSON object per line) into the
closing line 'N passed, N failed, N skipped'.  Every result counts: a test
that ran twice (meson test --repeat, or a name in two suites), failed once
and passed once, is one failure and one pass, so the run has failed."""
import json
import sys

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
        elif result == "SKIP":
            skipped += 1
        else:
            print(f"{path}: {name}: {result}", file=sys.stderr)
            failed += 1
print(f"{passed} passed, {failed} failed, {skipped} skipped")
