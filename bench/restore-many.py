#!/usr/bin/env python3
"""Many VMs from one snapshot (issue 16 section 3): N concurrent restores of one
snapshot, cairn beside QEMU 7.2 in the same run.

The test guest runs "memfill FILL 7; shell" (FILL = 7/8 of RAM) under cairn and
under QEMU (-M microvm, KVM, a small qcow2 on virtio-mmio, serial on a pipe).
cairn snapshots it (`{"cmd":"snapshot","then":"quit"}`); QEMU migrates to a
file ("exec:cat > FILE", the way a QEMU user saves a running machine to
restore it elsewhere).  Then, for each N, with the page cache warm:
  cairn: N processes `cairn run -v --restore SNAP --control SOCKi` started at
         once; "running": each one's start time + its own "first KVM_RUN N us"
         (stderr), the latest of the N from the moment the first was started.
  QEMU:  N processes `-incoming "exec:cat FILE"` started at once; "running":
         QMP query-status "running" (polled every 5 ms), the latest of the N.
Then each guest is given its first job: "memfill TOUCH 9 0" typed into its
shell (TOUCH MiB, default 16, rewritten at the start of its region); "job
done": the latest of the N "memfill mb=TOUCH" lines.  Then the memory: the
sum over the N processes of Pss from /proc/PID/smaps_rollup (shared pages
counted once in all), Rss beside it; for cairn also the snapshot's
memory.img in the page cache (fincore: the pages all N map, counted once,
whether mapped yet or not): PSS + that is cairn's total, against N x RAM and
the goal's budget, RAM + N x (TOUCH + 16 MiB).  QEMU copies the migration
stream into each VM's anonymous RAM: its PSS is its total.  All N end (control quit / QMP quit)
before the next N.

usage: restore-many.py CAIRN TESTOS [--mem MB] [--n 1,10,50] [--qemu-n 1,10]
                       [--touch MB] [--out FILE] [--cairn-opts "OPTS"]
--cairn-opts: more options for each `cairn run --restore` (e.g. "--no-verify").
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in bench/ from the import below
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import snapshot as S  # noqa: E402
from snapshot import QMP, Console, conditions, finish, now, qemu_cmd  # noqa: E402


def spawn_in(cmd, name):
    """A process with its stdin a pipe (the guest's shell), stdout drained."""
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    S.procs.append(p)
    return p, now(), Console(p, name)


def type_line(p, text):
    p.stdin.write(text.encode() + b"\r")
    p.stdin.flush()


def pss_rss(pids):
    """Sum of Pss and of Rss (bytes) over PIDS, from smaps_rollup."""
    pss = rss = 0
    for pid in pids:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for ln in f:
                k, _, v = ln.partition(":")
                if k == "Pss":
                    pss += int(v.split()[0]) * 1024
                elif k == "Rss":
                    rss += int(v.split()[0]) * 1024
    return pss, rss


def cached_bytes(path):
    """Bytes of PATH in the page cache (fincore, util-linux)."""
    r = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", path],
                       capture_output=True, text=True, check=True)
    return int(r.stdout.split()[0])


def stderr_of(p):
    """Drain P's stderr in a thread: the list gets the whole text at exit."""
    out = []
    threading.Thread(target=lambda: out.append(p.stderr.read()), daemon=True).start()
    return out


def make_images(cairn, testos, mem, d):
    fill = mem * 7 // 8
    cmdline = f"memfill {fill} 7; shell"
    snap, mig = os.path.join(d, "snap"), os.path.join(d, "mig")
    qdisk = os.path.join(d, "q.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", qdisk, "16M"], check=True)
    csock, qsock = os.path.join(d, "c.sock"), os.path.join(d, "q.qmp")
    cp, _, ccon = spawn_in([cairn, "run", "--kernel", testos, "--mem", f"{mem}M",
                            "--control", csock, "--cmdline", cmdline], "cairn")
    qp, _, qcon = spawn_in(qemu_cmd(testos, f"{mem}M", qdisk, qsock, cmdline), "qemu")
    ccon.wait_line(b"memfill mb=", 600)
    qcon.wait_line(b"memfill mb=", 600)
    rep = S.cairn_ctl(cairn, csock, {"cmd": "snapshot", "path": snap, "then": "quit"})
    if not rep.get("ok", True) and "error" in rep:
        raise RuntimeError(f"cairn snapshot: {rep}")
    finish(cp, 60)
    q = QMP(qsock)
    q.cmd("migrate-set-parameters", **{"max-bandwidth": S.MIGRATE_MAX_BANDWIDTH})
    q.cmd("migrate", uri=f"exec:cat > {mig}")
    end = now() + 300
    while q.cmd("query-migrate").get("status") != "completed":
        if now() > end:
            raise RuntimeError("QEMU migrate did not complete")
        time.sleep(0.05)
    q.cmd("quit")
    q.close()
    finish(qp, 30)
    return snap, mig, qdisk, cmdline


def run_cairn(cairn, snap, n, touch, d, extra):
    socks = [os.path.join(d, f"r{i}.sock") for i in range(n)]
    t0 = now()
    vms = []
    for i in range(n):
        p, ts, con = spawn_in([cairn, "run", "-v", "--restore", snap, *extra, "--control", socks[i]],
                              f"cairn restore {i}")
        vms.append((p, ts, con, stderr_of(p)))
    # every control socket up: each VM is restored and its shell can be typed into
    for (p, ts, con, err), sock in zip(vms, socks):
        end = now() + 300
        while not os.path.exists(sock):
            if now() > end or p.poll() is not None:
                raise RuntimeError(f"{con.name}: no control socket (exit {p.poll()})")
            time.sleep(0.005)
    t_sockets = now() - t0
    for p, ts, con, err in vms:
        type_line(p, f"memfill {touch} 9 0")
    for p, ts, con, err in vms:
        con.wait_line(f"memfill mb={touch} ".encode(), 300)
    t_job = max(max(t for t, ln in con.lines if f"memfill mb={touch} ".encode() in ln)
                for p, ts, con, err in vms) - t0
    pss, rss = pss_rss([p.pid for p, *_ in vms])
    cache = cached_bytes(os.path.join(snap, "memory.img"))
    for (p, ts, con, err), s in zip(vms, socks):
        try:
            S.cairn_ctl(cairn, s, {"cmd": "quit"}, 10)
        except Exception:
            p.kill()
    for p, ts, con, err in vms:
        finish(p, 30)
    running = []
    for p, ts, con, err in vms:
        m = re.search(rb"first KVM_RUN (\d+) us", err[0] if err else b"")
        if not m:
            raise RuntimeError(f"{con.name}: no 'first KVM_RUN' in its stderr")
        running.append(ts - t0 + int(m.group(1)) / 1e6)
    for s in socks:
        if os.path.exists(s):
            os.unlink(s)
    return {"running": max(running), "sockets": t_sockets, "job": t_job, "pss": pss, "rss": rss,
            "cache": cache, "total": pss + cache}


def run_qemu(testos, mem, qdisk, mig, cmdline, n, touch, d):
    t0 = now()
    vms = []
    for i in range(n):
        qs = os.path.join(d, f"qi{i}.qmp")
        p, ts, con = spawn_in(qemu_cmd(testos, f"{mem}M", qdisk, qs, cmdline) +
                              ["-incoming", f"exec:cat {mig}", "-snapshot"], f"qemu {i}")
        vms.append((p, con, qs))
    qmps, running = [], []
    for p, con, qs in vms:
        q = QMP(qs, 120)
        end = now() + 300
        while q.cmd("query-status")["status"] != "running":
            if now() > end:
                raise RuntimeError("QEMU -incoming: not running after 300 s")
            time.sleep(0.005)
        running.append(now() - t0)
        qmps.append(q)
    for p, con, qs in vms:
        type_line(p, f"memfill {touch} 9 0")
    for p, con, qs in vms:
        con.wait_line(f"memfill mb={touch} ".encode(), 300)
    t_job = max(max(t for t, ln in con.lines if f"memfill mb={touch} ".encode() in ln)
                for p, con, qs in vms) - t0
    pss, rss = pss_rss([p.pid for p, *_ in vms])
    for q in qmps:
        try:
            q.cmd("quit")
        except Exception:
            pass
        q.close()
    for p, con, qs in vms:
        finish(p, 30)
    return {"running": max(running), "job": t_job, "pss": pss, "rss": rss}


def main():
    a = sys.argv[1:]
    if len(a) < 2:
        sys.exit(__doc__)
    cairn, testos = os.path.abspath(a[0]), os.path.abspath(a[1])
    opts = {"--mem": "512", "--n": "1,10,50", "--qemu-n": "1,10", "--touch": "16", "--out": "",
            "--cairn-opts": ""}
    rest = a[2:]
    while rest:
        k = rest.pop(0)
        if k not in opts or not rest:
            sys.exit(f"bad option {k}\n{__doc__}")
        opts[k] = rest.pop(0)
    mem, touch = int(opts["--mem"]), int(opts["--touch"])
    extra = opts["--cairn-opts"].split()
    ns = [int(x) for x in opts["--n"].split(",") if x]
    qns = [int(x) for x in opts["--qemu-n"].split(",") if x]
    tmp = tempfile.mkdtemp(prefix="cairn-restore-many.")
    cond = conditions()
    rows = []
    try:
        print(f"[{mem} MiB] filling, snapshot and QEMU migrate ...", file=sys.stderr, flush=True)
        snap, mig, qdisk, cmdline = make_images(cairn, testos, mem, tmp)
        budget = lambda n: (mem + n * (touch + 16)) << 20  # noqa: E731
        for n in ns:
            c = run_cairn(cairn, snap, n, touch, tmp, extra)
            q = run_qemu(testos, mem, qdisk, mig, cmdline, n, touch, tmp) if n in qns else None
            print(f"[{mem} MiB] N={n}: cairn all running {c['running']*1e3:.0f} ms, job done "
                  f"{c['job']*1e3:.0f} ms, PSS {c['pss']>>20} MiB + cache {c['cache']>>20} MiB"
                  + (f"; QEMU all running {q['running']*1e3:.0f} ms, job done "
                     f"{q['job']*1e3:.0f} ms, PSS {q['pss']>>20} MiB" if q else ""),
                  file=sys.stderr, flush=True)
            rows.append((n, c, q, budget(n)))
    finally:
        for p in S.procs:
            if p.poll() is None:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    mib = lambda b: f"{b / (1 << 20):.0f} MiB"  # noqa: E731
    ms = lambda s: f"{s * 1e3:.0f} ms"  # noqa: E731
    out = [f"# Many VMs from one snapshot (`bench/restore-many.sh`, issue 16 §3) — "
           f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
           f"Conditions: {cond}", "",
           f"{mem} MiB test guest, `memfill {mem * 7 // 8} 7` before the snapshot; after "
           f"each restore `memfill {touch} 9 0` typed into its shell. Page cache warm. "
           f"cairn's restores: `cairn run --restore SNAP {' '.join(extra)}`.", "",
           "| N | cairn: all running | cairn: all jobs done | cairn: memory = PSS sum + page cache | "
           "N × RAM | goal budget | QEMU: all running | QEMU: all jobs done | QEMU: PSS sum | "
           "cairn/QEMU (jobs done, memory) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for n, c, q, b in rows:
        qcells = (f"{ms(q['running'])} | {ms(q['job'])} | {mib(q['pss'])} | "
                  f"{c['job'] / q['job']:.3f}, {c['total'] / q['pss']:.3f}") if q else "— | — | — | —"
        out.append(f"| {n} | {ms(c['running'])} | {ms(c['job'])} | {mib(c['total'])} = "
                   f"{mib(c['pss'])} + {mib(c['cache'])} | {mib(n * mem << 20)} | {mib(b)} "
                   f"({'met' if c['total'] <= b else 'missed'}) | {qcells} |")
    text = "\n".join(out) + "\n"
    print(text)
    if opts["--out"]:
        with open(opts["--out"], "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
