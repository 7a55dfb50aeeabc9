#!/usr/bin/env python3
"""Boot benchmark: time from process start to 'cairn-guest: ready' and to VM
exit, for cairn and for QEMU (-M microvm, KVM) booting the same test guest,
in the same run, alternating.  Also cairn's own start-up (process start to
the first KVM_RUN, from its -v log).  Prints a Markdown table with medians
and ratios."""
import re
import statistics
import subprocess
import sys
import time

def run(cmd, ready=b"cairn-guest: ready"):
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    t_ready = None
    buf = b""
    while True:
        chunk = p.stdout.read1(4096)
        if not chunk:
            break
        buf += chunk
        if t_ready is None and ready in buf:
            t_ready = time.monotonic() - t0
    err = p.stderr.read()
    p.wait()
    t_exit = time.monotonic() - t0
    if t_ready is None:
        sys.exit(f"no ready line from {cmd}: {buf[-500:]!r} {err[-500:]!r}")
    m = re.search(rb"first KVM_RUN (\d+) us", err)
    return t_ready, t_exit, (int(m.group(1)) / 1e6 if m else None)

def main():
    cairn, testos, runs, mem = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    guest_cmd = "exit 0"
    cmds = {
        "cairn": [cairn, "run", "-v", "--kernel", testos, "--mem", mem, "--cmdline", guest_cmd],
        "qemu": ["qemu-system-x86_64", "-enable-kvm", "-M", "microvm", "-m", mem,
                 "-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio",
                 "-kernel", testos, "-append", guest_cmd,
                 "-device", "isa-debug-exit,iobase=0x501,iosize=1"],
    }
    res = {k: [] for k in cmds}
    for i in range(runs + 1):
        for name, cmd in cmds.items():
            r = run(cmd)
            if i:  # the first round warms the page cache
                res[name].append(r)
    med = lambda xs: statistics.median(xs) * 1000
    c_ready, q_ready = med([r[0] for r in res["cairn"]]), med([r[0] for r in res["qemu"]])
    c_exit, q_exit = med([r[1] for r in res["cairn"]]), med([r[1] for r in res["qemu"]])
    c_start = med([r[2] for r in res["cairn"]])
    print(f"| figure ({runs} runs, {mem} RAM, medians) | cairn | QEMU microvm | cairn/QEMU |")
    print("|---|---|---|---|")
    print(f"| start to `cairn-guest: ready` | {c_ready:.1f} ms | {q_ready:.1f} ms | {c_ready / q_ready:.2f} |")
    print(f"| start to VM exit | {c_exit:.1f} ms | {q_exit:.1f} ms | {c_exit / q_exit:.2f} |")
    print(f"| cairn start-up (process start to first KVM_RUN) | {c_start:.1f} ms | | |")
    lo, hi = min(r[2] for r in res["cairn"]) * 1000, max(r[2] for r in res["cairn"]) * 1000
    print(f"| (start-up min / max) | {lo:.1f} / {hi:.1f} ms | | |")

if __name__ == "__main__":
    main()
