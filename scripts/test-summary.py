#!/usr/bin/env python3
"""Sums Meson test logs (testlog.json, one JSON object per line) into the
closing line 'N passed, N failed, N skipped'.  With several runs of one
suite in a log (the normal and --long runs share build/), the last wins."""
import json
import sys

passed = failed = skipped = 0
for path in sys.argv[1:]:
    last = {}
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    t = json.loads(line)
                    last[t["name"]] = t["result"]
    except FileNotFoundError:
        print(f"missing test log {path}", file=sys.stderr)
        failed += 1
        continue
    for result in last.values():
        if result in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif result == "SKIP":
            skipped += 1
        else:
            failed += 1
print(f"{passed} passed, {failed} failed, {skipped} skipped")
