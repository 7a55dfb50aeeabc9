#!/usr/bin/env python3
"""Checks scripts/test-summary.py (CI's closing 'N passed, N failed' line) on
made-up Meson test logs: test_summary.py SRCDIR."""
import json
import os
import subprocess
import sys
import tempfile

SRC = sys.argv[1]
SUMMARY = os.path.join(SRC, "scripts", "test-summary.py")
failures = 0


def summary(*logs, env=None):
    paths = []
    tmp = tempfile.mkdtemp(prefix="cairn-summary.")
    for i, entries in enumerate(logs):
        p = os.path.join(tmp, f"testlog{i}.json")
        with open(p, "w") as f:
            for name, result in entries:
                f.write(json.dumps({"name": name, "result": result, "suite": ["x"]}) + "\n")
        paths.append(p)
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([sys.executable, SUMMARY, *paths], capture_output=True, text=True, env=e)
    return p.stdout.strip().splitlines()[-1], p.stderr


def expect(what, got, want):
    global failures
    if got != want:
        print(f"FAIL: {what}: got '{got}', want '{want}'")
        failures += 1
    else:
        print(f"ok: {what}: {got}")


out, _ = summary([("a", "OK"), ("b", "OK")])
expect("two passes", out, "2 passed, 0 failed, 0 skipped")
out, _ = summary([("a", "FAIL"), ("a", "OK")])
expect("failed, then passed on a second run", out, "1 passed, 1 failed, 0 skipped")
out, _ = summary([("a", "OK"), ("a", "TIMEOUT")])
expect("passed, then timed out", out, "1 passed, 1 failed, 0 skipped")
out, _ = summary([("a", "OK")], [("a", "ERROR")])
expect("one name in two logs", out, "1 passed, 1 failed, 0 skipped")
# Skips: a failure unless allowed, with a reason, in the allow-list.
allow = os.path.join(tempfile.mkdtemp(prefix="cairn-summary."), "allowed-skips")
with open(allow, "w") as f:
    f.write("# comment\nhw-only needs hardware virtualization, which CI's kind lacks\n")
env = {"CAIRN_ALLOWED_SKIPS": allow}
out, err = summary([("a", "OK"), ("b", "SKIP")], env=env)
expect("a skip not in the allow-list", out, "1 passed, 1 failed, 0 skipped")
out, _ = summary([("a", "OK"), ("cairn:unit / hw-only", "SKIP")], env=env)
expect("an allowed skip", out, "1 passed, 0 failed, 1 skipped")
out, _ = summary([("a", "OK"), ("b", "SKIP")])
expect("a skip with the repository's allow-list", out, "1 passed, 1 failed, 0 skipped")
sys.exit(1 if failures else 0)
