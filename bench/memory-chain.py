#!/usr/bin/env python3
"""Incremental-memory benchmark (issue 15 section 6): a chain of restore points
that each differ by 1 % of RAM, cairn beside QEMU 7.2 in the same run.

The test guest runs "memfill FILL 7; shell" (FILL = 7/8 of RAM, as in
bench/snapshot.py) under cairn, as a manager bundle (`cairn create`, `cairn run
--detach`; console through console.in / console.log), and under QEMU (-M
microvm, KVM, a qcow2 disk on virtio-mmio, serial on a pipe).  Both fill at
once.  Then N rounds; in round i:
  cairn: the shell runs "memscatter PAGES i" (writes in each of PAGES
         pseudo-random 4 KiB pages of the memfill region; PAGES = DIRTY_PCT % of
         RAM), then `cairn snapshot create BUNDLE s<i> --json`: the VM's own
         reply (total_ms, pause_ms, memory layer/full, memory_depth,
         memory_bytes), the command's wall time, du of the new memory.img.
         Round 1 is the first snapshot after boot: a full image.
  QEMU:  in QEMU_N rounds spread evenly over the N (i = N/QEMU_N, 2N/QEMU_N...),
         the same memscatter, then HMP "savevm q<i>" into the qcow2, every one
         kept (restore points): wall time (the guest is stopped throughout) and
         the qcow2's growth (du).  QEMU_N is cut to what the free space holds.
Then both VMs end (`cairn stop`, QMP quit), `sync`, and RUNS rounds of restores
in new processes, in turn:
  cairn run -v --restore DIR (map, verified; and --no-verify) of s1 (the full
         image), of the deepest layer (the last at the largest depth) and of sN:
         "first KVM_RUN N us" from its stderr, and the wall time from process
         start to the guest answering ("echo" typed into its shell once it runs);
  QEMU -loadvm q<first> / q<last>: start to QMP status running, and to the
         echo answer.
Where /proc/sys/vm/drop_caches is writable, each round then restores s1, sN,
and QEMU's first and last once more from a cold page cache.  Then the middle
half of the restore points is deleted: cairn `snapshot delete` of s<N/4+1> ..
s<3N/4>, newest first (--delete-order oldest: the other way), the reply's
freed_bytes, wall time, du of the bundle before and after; QEMU `delvm` of the
middle half of its savevms (wall time, du of the qcow2).  sN and the first
snapshot above the deleted range restore again (verified, then memverify in the
guest: every page against the fill and the memscatters up to that snapshot),
`cairn check` runs over the bundle, and `cairn destroy` removes it (timed).

usage: memory-chain.py CAIRN TESTOS [--mem MB] [--n N] [--qemu-n K] [--runs R]
                       [--dirty-pct P] [--delete-order newest|oldest]
                       [--verify 0|1] [--out FILE] [--raw FILE]
       memory-chain.py --render RAWFILE [--out FILE]
With --out, writes the tables, the date and the conditions to FILE, keeping
whatever follows a "## Notes" line of the old FILE.  --raw keeps every figure
as JSON; --render makes the report again from such a file.
"""
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in bench/ from the import below
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from snapshot import (QMP, Console, can_drop_caches, conditions, drop_caches, du,  # noqa: E402
                      finish, qemu_cmd)

QEMU = "qemu-system-x86_64"
PAGE = 4096
MiB = 1 << 20
procs = []  # every process we started, killed at the end if still alive
loads = []  # (phase, 1-minute load average)


def now():
    return time.monotonic()


def note_load(phase):
    loads.append((phase, os.getloadavg()[0]))


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def spawn(cmd, name, stderr_watch=None):
    """A process with its stdin a pipe (its serial console's input), stdout read
    by a Console, stderr collected (and, with STDERR_WATCH = (regex, event,
    box), the time and match of the first line matching regex)."""
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    procs.append(p)
    t0 = now()
    err = []

    def read_err():
        for ln in p.stderr:
            err.append(ln)
            if stderr_watch and not stderr_watch[1].is_set():
                m = re.search(stderr_watch[0], ln)
                if m:
                    stderr_watch[2].append((now(), m))
                    stderr_watch[1].set()
    threading.Thread(target=read_err, daemon=True).start()
    return p, t0, Console(p, name), err


def lines_after(con, k):
    with con.cv:
        return [ln for _, ln in con.lines[k:]]


def con_cmd(con, proc, cmd, pattern, timeout):
    """Types CMD into the guest's shell; returns (time, line) of the first line
    after it that matches the regex PATTERN."""
    with con.cv:
        k = len(con.lines)
    proc.stdin.write(cmd.encode() + b"\n")
    proc.stdin.flush()
    rx = re.compile(pattern.encode())
    found = []

    def pred():
        for t, ln in con.lines[k:]:
            if rx.search(ln):
                found.append((t, ln))
                return True
        return False
    con.wait(pred, timeout, repr(pattern))
    return found[0]


# ---- the cairn bundle --------------------------------------------------------

class Bundle:
    """A cairn VM bundle run detached; its console is console.log / console.in."""

    def __init__(self, cairn, path):
        self.cairn, self.path = cairn, path
        self.log = os.path.join(path, "console.log")

    def run(self, *args, check=True, timeout=600):
        r = subprocess.run([self.cairn, *args], capture_output=True, text=True,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"cairn {' '.join(args)}: exit {r.returncode}: "
                               f"{r.stdout[-800:]} {r.stderr[-800:]}")
        return r

    def json(self, *args, timeout=600):
        t = now()
        r = self.run(*args, "--json", timeout=timeout)
        return json.loads(r.stdout), (now() - t) * 1000

    def log_size(self):
        try:
            return os.path.getsize(self.log)
        except OSError:
            return 0

    def wait_log(self, start, pattern, timeout):
        rx = re.compile(pattern.encode())
        end = now() + timeout
        while True:
            with open(self.log, "rb") as f:
                f.seek(start)
                text = f.read()
            for ln in text.split(b"\n"):
                if rx.search(ln):
                    return ln.rstrip(b"\r")
                if b"FAILED" in ln or b"EXCEPTION" in ln:
                    raise RuntimeError(f"{self.path}: guest: {ln!r}")
            if now() > end:
                raise RuntimeError(f"{self.path}: no /{pattern}/ within {timeout} s: "
                                   f"...{text[-600:]!r}")
            time.sleep(0.002)

    def con(self, cmd, pattern, timeout=60):
        start = self.log_size()
        with open(os.path.join(self.path, "console.in"), "wb") as f:
            f.write(cmd.encode() + b"\n")
        return self.wait_log(start, pattern, timeout)

    def snapshots(self):
        """name -> id, from vm.json."""
        with open(os.path.join(self.path, "vm.json")) as f:
            d = json.load(f)
        return {s["name"]: i for i, s in d["snapshots"].items()}

    def snap_dir(self, sid):
        return os.path.join(self.path, "snapshots", sid)


def du_tree(path):
    total = 0
    for root, _, files in os.walk(path):
        for fn in files:
            try:
                total += os.lstat(os.path.join(root, fn)).st_blocks * 512
            except OSError:
                pass
    return total


def du_memory(b):
    total = 0
    for sid in os.listdir(os.path.join(b.path, "snapshots")):
        p = os.path.join(b.snap_dir(sid), "memory.img")
        if os.path.exists(p):
            total += du(p)
    return total


# ---- restores in new processes -----------------------------------------------

def cairn_restore(cairn, snap, d, opts, tag, verify=None):
    """cairn run --restore SNAP: first KVM_RUN (its own figure) and the wall time
    to the guest's answer to an echo typed once it runs.  With VERIFY (a dict),
    the guest then runs memverify (every page of the memfill region against
    what memfill and every memscatter since wrote): VERIFY[TAG] = (ok, s)."""
    dd = os.path.join(d, f"rd-{tag}")
    os.makedirs(dd)
    sock = os.path.join(d, "r.sock")
    ev, box = threading.Event(), []
    p, t0, con, err = spawn([cairn, "run", "-v", "--restore", snap, *opts, "--disk-dir", dd,
                             "--control", sock], f"cairn restore {tag}",
                            (rb"first KVM_RUN (\d+) us", ev, box))
    try:
        if not ev.wait(300):
            raise RuntimeError(f"cairn restore {tag}: no 'first KVM_RUN' "
                               f"(exit {p.poll()}): {b''.join(err)[-800:]!r}")
        t1, _ = con_cmd(con, p, f"echo rp-{tag}", rf"^cpu0: rp-{tag}$", 120)
        if verify is not None:
            t = now()
            _, ln = con_cmd(con, p, "memverify", r"^cpu0: memverify ", 1800)
            verify[tag] = (b"memverify ok" in ln, now() - t, ln.decode(errors="replace"))
    finally:
        try:
            subprocess.run([cairn, "control", sock, '{"cmd":"quit"}'], capture_output=True,
                           timeout=20)
        except Exception:
            p.kill()
        finish(p)
    shutil.rmtree(dd)
    if con.failed() and verify is None:
        raise RuntimeError(f"cairn restore {tag}: {con.failed()}")
    return int(box[0][1].group(1)) / 1000, (t1 - t0) * 1000


def qemu_restore(testos, mem, qdisk, d, cmdline, snap, tag):
    """qemu -loadvm SNAP: start to running (QMP polled every 2 ms) and to the
    guest's answer to an echo."""
    qs = os.path.join(d, "qr.qmp")
    p, t0, con, err = spawn(qemu_cmd(testos, f"{mem}M", qdisk, qs, cmdline) +
                            ["-loadvm", snap], f"qemu -loadvm {tag}")
    try:
        q = QMP(qs, 120)
        end = now() + 300
        while q.cmd("query-status")["status"] != "running":
            if now() > end:
                raise RuntimeError(f"QEMU -loadvm {snap}: not running after 300 s")
            time.sleep(0.002)
        t1 = now()
        t2, _ = con_cmd(con, p, f"echo rp-{tag}", rf"^cpu0: rp-{tag}$", 120)
        q.cmd("quit")
        q.close()
    finally:
        finish(p)
    return (t1 - t0) * 1000, (t2 - t0) * 1000


# ---- the run -------------------------------------------------------------------

def fit_qemu_n(want, mem, d, cairn_need):
    """How many full savevms fit, keeping CAIRN_NEED and 8 GiB free besides."""
    st = os.statvfs(d)
    free = st.f_bavail * st.f_frsize
    per = mem * MiB * 7 // 8 + 64 * MiB
    fit = max(0, (free - cairn_need - (8 << 30)) // per)
    return min(want, fit), free


def bench(cairn, testos, mem, n, qemu_n, runs, dirty_pct, verify, del_order, tmp):
    fill = mem * 7 // 8
    pages = max(1, round(mem * MiB // PAGE * dirty_pct / 100))
    cmdline = f"memfill {fill} 7; shell"
    R = {"mem": mem, "n": n, "pages": pages, "fill": fill, "snaps": [], "qsave": [],
         "restore": {}, "dirty_pct": dirty_pct}
    b = Bundle(cairn, os.path.join(tmp, "vm"))
    # cairn: full image + N deltas + a consolidated layer per 16 (at most all of
    # the fill each): a generous bound
    cairn_need = fill * MiB * (2 + n // 16) + n * pages * PAGE * 2
    qemu_n, free = fit_qemu_n(qemu_n, mem, tmp, cairn_need) if qemu_n else (0, 0)
    R["qemu_n"], R["free_at_start"] = qemu_n, free
    qpoints = {round(n * (k + 1) / qemu_n) for k in range(qemu_n)} if qemu_n else set()
    R["qpoints"] = sorted(qpoints)

    b.run("create", b.path, "--kernel", testos, "--mem", f"{mem}M", "--disk-size", "64M",
          "--cmdline", cmdline)
    qdisk, qsock = os.path.join(tmp, "q.qcow2"), os.path.join(tmp, "q.qmp")
    qp = qcon = qmp = None
    note_load("start")
    log(f"[{mem} MiB] filling {fill} MiB in both guests; {n} restore points of {pages} "
        f"scattered pages ({pages * PAGE / MiB:.1f} MiB) each; QEMU savevm at rounds "
        f"{R['qpoints']}")
    if qemu_n:
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", qdisk, "64M"], check=True)
        qp, _, qcon, _ = spawn(qemu_cmd(testos, f"{mem}M", qdisk, qsock, cmdline), "qemu")
    t0 = now()
    b.run("run", b.path, "--detach")
    if qemu_n:
        qmp = QMP(qsock)
    b.wait_log(0, r"memfill mb=", 1800)
    R["fill_s"] = {"cairn": now() - t0}
    b.wait_log(0, r"cairn> ", 60)
    if qemu_n:
        qcon.wait(lambda: any(b"memfill mb=" in ln for _, ln in qcon.lines), 1800, "memfill")
        R["fill_s"]["qemu"] = [t for t, ln in qcon.lines if b"memfill mb=" in ln][0] - t0
    log(f"[{mem} MiB] filled: " + ", ".join(f"{k} {v:.1f} s" for k, v in R["fill_s"].items()))
    note_load("filled")

    scatter = f"memscatter {pages} " + "{seed}"
    spat = r"^cpu0: memscatter "
    for i in range(1, n + 1):
        t = now()
        b.con(scatter.format(seed=i), spat, 120)
        scat_ms = (now() - t) * 1000
        time.sleep(0.05)  # the shell is back at its prompt (hlt)
        rep, wall = b.json("snapshot", "create", b.path, f"s{i}")
        v = rep["vmm"]
        sid = rep["id"]
        R["snaps"].append({"i": i, "id": sid, "wall_ms": wall, "total_ms": v["total_ms"],
                           "pause_ms": v["pause_ms"], "memory": v["memory"],
                           "depth": v["memory_depth"], "memory_bytes": v["memory_bytes"],
                           "du": du(os.path.join(b.snap_dir(sid), "memory.img")),
                           "state_du": du(os.path.join(b.snap_dir(sid), "state.bin")),
                           "cow": v.get("cow_copies"), "scatter_ms": scat_ms})
        s = R["snaps"][-1]
        msg = (f"[{mem} MiB] s{i}: {s['memory']} depth {s['depth']}, "
               f"{s['du'] / MiB:.1f} MiB, total {s['total_ms']:.1f} ms, pause "
               f"{s['pause_ms']:.2f} ms, command {wall:.0f} ms")
        if i in qpoints:
            t = now()
            t1, _ = con_cmd(qcon, qp, scatter.format(seed=i), spat, 120)
            qscat_ms = (t1 - t) * 1000
            time.sleep(0.05)
            b0 = du(qdisk)
            t = now()
            qmp.hmp(f"savevm q{i}")
            ms = (now() - t) * 1000
            R["qsave"].append({"i": i, "ms": ms, "bytes": du(qdisk) - b0,
                               "scatter_ms": qscat_ms})
            msg += f"; QEMU savevm q{i} {ms:.0f} ms, +{(du(qdisk) - b0) / MiB:.0f} MiB"
        log(msg)
    note_load("chain made")

    b.run("stop", b.path)
    if qemu_n:
        qmp.cmd("quit")
        qmp.close()
        finish(qp)
        R["qcow2_du"] = du(qdisk)
    subprocess.run(["sync"])
    R["mem_du"] = du_memory(b)
    R["bundle_du"] = du_tree(b.path)

    # restores in new processes, in turn
    ids = b.snapshots()
    snaps = R["snaps"]
    dmax = max(s["depth"] for s in snaps)
    deep = [s for s in snaps if s["depth"] == dmax][-1]
    R["deep"] = deep["i"]
    kinds = [("c_first", b.snap_dir(ids["s1"]), []),
             ("c_deep", b.snap_dir(ids[f"s{deep['i']}"]), []),
             ("c_last", b.snap_dir(ids[f"s{n}"]), []),
             ("c_first_nov", b.snap_dir(ids["s1"]), ["--no-verify"]),
             ("c_last_nov", b.snap_dir(ids[f"s{n}"]), ["--no-verify"])]
    qkinds = []
    if qemu_n:
        qkinds = [("q_first", f"q{R['qpoints'][0]}"), ("q_last", f"q{R['qpoints'][-1]}")]
    rs = R["restore"]
    for k in [k for k, _, _ in kinds] + [k for k, _ in qkinds]:
        rs[k], rs[k + "_cold"] = [], []
    # one unrecorded pass first: each chain's images into the page cache (the
    # cold-cache rounds below measure the other case)
    for key, snap, opts in kinds:
        cairn_restore(cairn, snap, tmp, opts, f"{key}w")
    for key, snap in qkinds:
        qemu_restore(testos, mem, qdisk, tmp, cmdline, snap, f"{key}w")
    for r in range(runs):
        for key, snap, opts in kinds:
            rs[key].append(cairn_restore(cairn, snap, tmp, opts, f"{key}{r}"))
        for key, snap in qkinds:
            rs[key].append(qemu_restore(testos, mem, qdisk, tmp, cmdline, snap, f"{key}{r}"))
        log(f"[{mem} MiB] restore round {r + 1}/{runs}: " + ", ".join(
            f"{k} {rs[k][-1][0]:.0f}/{rs[k][-1][1]:.0f} ms"
            for k in [k for k, _, _ in kinds] + [k for k, _ in qkinds]))
    note_load("restores")
    if can_drop_caches():
        for r in range(runs):
            for key, snap, opts in kinds:
                if opts:
                    continue
                drop_caches()
                rs[key + "_cold"].append(cairn_restore(cairn, snap, tmp, opts, f"{key}c{r}"))
            for key, snap in qkinds:
                drop_caches()
                rs[key + "_cold"].append(qemu_restore(testos, mem, qdisk, tmp, cmdline, snap,
                                                      f"{key}c{r}"))
            log(f"[{mem} MiB] cold-cache restore round {r + 1}/{runs}: " + ", ".join(
                f"{k} {rs[k + '_cold'][-1][0]:.0f}/{rs[k + '_cold'][-1][1]:.0f} ms"
                for k in [k for k, _, o in kinds if not o] + [k for k, _ in qkinds]))

    # delete the middle half
    lo, hi = n // 4 + 1, n // 4 + n // 2
    R["del_range"] = (lo, hi)
    R["dels"] = []
    R["del_order"] = del_order
    before_mem, before = du_memory(b), du_tree(b.path)
    t = now()
    order = range(hi, lo - 1, -1) if del_order == "newest" else range(lo, hi + 1)
    for i in order:
        rep, wall = b.json("snapshot", "delete", b.path, f"s{i}", timeout=7200)
        R["dels"].append({"i": i, "ms": wall, "freed": rep.get("freed_bytes", 0),
                          "merges": len(rep.get("merges", []))})
        log(f"[{mem} MiB] delete s{i}: {wall / 1000:.1f} s, {rep.get('freed_bytes', 0)} "
            f"bytes freed ({len(R['dels'])}/{hi - lo + 1}, {now() - t:.0f} s so far)")
    R["del_ms"] = (now() - t) * 1000
    subprocess.run(["sync"])
    R["del_du"] = (before, du_tree(b.path))
    R["del_mem_du"] = (before_mem, du_memory(b))
    log(f"[{mem} MiB] deleted s{lo}..s{hi} in {R['del_ms']:.0f} ms: bundle "
        f"{before / MiB:.0f} -> {R['del_du'][1] / MiB:.0f} MiB")
    if qemu_n:
        qi = R["qpoints"]
        qlo, qhi = len(qi) // 4, len(qi) // 4 + len(qi) // 2 - 1
        R["qdel_names"] = [f"q{qi[k]}" for k in range(qlo, qhi + 1)]
        qp, _, qcon, _ = spawn(qemu_cmd(testos, f"{mem}M", qdisk, qsock, cmdline) + ["-S"],
                               "qemu delvm")
        qmp = QMP(qsock, 120)
        q0 = du(qdisk)
        R["qdel"] = []
        for name in R["qdel_names"]:
            t = now()
            qmp.hmp(f"delvm {name}")
            R["qdel"].append((now() - t) * 1000)
        qmp.cmd("quit")
        qmp.close()
        finish(qp)
        subprocess.run(["sync"])
        R["qdel_du"] = (q0, du(qdisk))
        log(f"[{mem} MiB] QEMU delvm x{len(R['qdel'])}: {sum(R['qdel']):.0f} ms, qcow2 "
            f"{q0 / MiB:.0f} -> {R['qdel_du'][1] / MiB:.0f} MiB")
    note_load("deletes")

    # after the deletes: the last and the first one above the range restore
    ids = b.snapshots()
    R["after_del"], R["verify"] = {}, {}
    for name in (f"s{n}", f"s{hi + 1}"):
        if name in ids:
            R["after_del"][name] = cairn_restore(cairn, b.snap_dir(ids[name]), tmp, [],
                                                 f"ad-{name}", R["verify"] if verify else None)
            log(f"[{mem} MiB] after the deletes, {name}: {R['after_del'][name]}, "
                f"memverify {R['verify'].get(f'ad-{name}')}")
    t = now()
    r = b.run("check", b.path, check=False, timeout=1800)
    R["check"] = (r.returncode, (now() - t) * 1000, (r.stdout + r.stderr).strip()[-400:])
    log(f"[{mem} MiB] cairn check: exit {R['check'][0]} in {R['check'][1] / 1000:.1f} s")
    # what a user's `cairn destroy` of the bundle costs (the file system frees every
    # extent of every image)
    t = now()
    b.run("destroy", b.path, timeout=7200)
    R["destroy_s"] = now() - t
    log(f"[{mem} MiB] cairn destroy: {R['destroy_s']:.1f} s")
    return R


# ---- the report ------------------------------------------------------------------

def pct(v, p):
    v = sorted(v)
    if not v:
        return float("nan")
    k = (len(v) - 1) * p / 100
    f = int(k)
    return v[f] + (v[min(f + 1, len(v) - 1)] - v[f]) * (k - f)


def fmt_ms(v):
    return f"{v:.2f} ms" if v < 10 else f"{v:.1f} ms" if v < 100 else f"{v:.0f} ms"


def fmt_mib(v):
    return f"{v / MiB:.1f} MiB" if v < 100 * MiB else f"{v / MiB:.0f} MiB"


def report(R):
    n, pages, mem = R["n"], R["pages"], R["mem"]
    snaps = R["snaps"]
    first = snaps[0]
    deltas = snaps[1:]
    cons = [s for s in deltas if s["memory"] == "layer" and s["depth"] == 1 and s["i"] > 2]
    plain = [s for s in deltas if s not in cons and s["memory"] == "layer"]
    fulls = [s for s in deltas if s["memory"] == "full"]
    dirtied = len(deltas) * pages * PAGE
    budget = 1.1 * dirtied + first["du"] + n * MiB
    mem_du = R["mem_du"]
    q = R["qsave"]
    med = statistics.median
    out = []
    out.append(f"### {mem} MiB RAM (`memfill {R['fill']}`), {n} restore points, "
               f"{pages} scattered pages ({pages * PAGE / MiB:.2f} MiB, "
               f"{R['dirty_pct']} % of RAM) dirtied before each")
    out.append("")
    out.append("| figure | cairn | QEMU savevm | cairn/QEMU |")
    out.append("|---|---|---|---|")

    def row(fig, c, qv, fmt, ratio=True):
        rt = f"{c / qv:.3f}" if ratio and qv else ""
        out.append(f"| {fig} | {fmt(c) if c is not None else ''} | "
                   f"{fmt(qv) if qv is not None else ''} | {rt} |")
    qn = len(q)
    q_bytes = med([x["bytes"] for x in q]) if q else None
    q_ms = med([x["ms"] for x in q]) if q else None
    row("bytes on disk, first restore point (cairn: full memory.img; QEMU: qcow2 growth)",
        first["du"], q[0]["bytes"] if q else None, fmt_mib)
    row("bytes on disk per later restore point, median (cairn: the layer's memory.img)",
        med([s["du"] for s in deltas]) if deltas else None, q_bytes, fmt_mib)
    row(f"bytes on disk, all {n} restore points (cairn: du of every memory.img; "
        f"QEMU: {qn} measured, **extrapolated** × {n}/{qn})" if q else
        f"bytes on disk, all {n} restore points (du of every memory.img)",
        mem_du, (R["qcow2_du"] * n / qn) if q else None, fmt_mib)
    row("time to create a restore point, median (cairn: the VM's `total_ms`, deltas; "
        "QEMU: savevm wall time)", med([s["total_ms"] for s in deltas]), q_ms, fmt_ms)
    row("time to create, p90 (cairn deltas / QEMU savevm)",
        pct([s["total_ms"] for s in deltas], 90), pct([x["ms"] for x in q], 90) if q else None,
        fmt_ms)
    row("time to create, max (cairn deltas / QEMU savevm)",
        max(s["total_ms"] for s in deltas), max(x["ms"] for x in q) if q else None, fmt_ms)
    row(f"time to create all {n} (cairn: sum of `total_ms`; QEMU: sum of its {qn} "
        f"**extrapolated** × {n}/{qn})" if q else f"time to create all {n}",
        sum(s["total_ms"] for s in snaps), sum(x["ms"] for x in q) * n / qn if q else None,
        fmt_ms)
    row("guest paused per restore point, median (cairn `pause_ms` / QEMU savevm)",
        med([s["pause_ms"] for s in deltas]), q_ms, fmt_ms)
    row("guest paused, max (cairn / QEMU)", max(s["pause_ms"] for s in deltas),
        max(x["ms"] for x in q) if q else None, fmt_ms)
    rs = R["restore"]

    def rmed(k, j):
        return med([x[j] for x in rs[k]]) if rs.get(k) else None
    for lab, ck, qk in (("first restore point", "c_first", "q_first"),
                        (f"s{R['deep']} (the deepest chain) / QEMU's last", "c_deep",
                         "q_last"),
                        (f"s{n} (the last) / QEMU's last", "c_last", "q_last")):
        row(f"restore {lab}, new process to running (cairn map, verified: first KVM_RUN; "
            "QEMU `-loadvm`: status running)", rmed(ck, 0), rmed(qk, 0), fmt_ms)
        row(f"restore {lab}, new process to the guest answering", rmed(ck, 1), rmed(qk, 1),
            fmt_ms)
    for lab, ck, qk in (("first", "c_first_cold", "q_first_cold"),
                        ("last", "c_last_cold", "q_last_cold")):
        if rs.get(ck):
            row(f"restore the {lab}, cold page cache, to running", rmed(ck, 0), rmed(qk, 0),
                fmt_ms)
    for lab, ck in (("first", "c_first_nov"), (f"s{n}", "c_last_nov")):
        row(f"restore {lab}, `--no-verify`, to running (QEMU: `-loadvm` of its first/last)",
            rmed(ck, 0), rmed("q_first" if lab == "first" else "q_last", 0), fmt_ms)
    lo, hi = R["del_range"]
    freed = R["del_du"][0] - R["del_du"][1]
    nd = len(R["dels"])
    if R.get("qdel"):
        qfreed = R["qdel_du"][0] - R["qdel_du"][1]
        qnd = len(R["qdel"])
        row(f"delete the middle half: bytes freed per restore point deleted (cairn: "
            f"{nd}, du of the bundle; QEMU: delvm of {qnd}, du of the qcow2)", freed / nd,
            qfreed / qnd, fmt_mib)
        row("delete: time per restore point deleted (cairn `snapshot delete`; QEMU delvm)",
            R["del_ms"] / nd, sum(R["qdel"]) / qnd, fmt_ms)
    else:
        row(f"delete s{lo}..s{hi}: bytes freed per snapshot", freed / nd, None, fmt_mib)
        row("delete: time per snapshot", R["del_ms"] / nd, None, fmt_ms)
    out.append("")

    # goals
    g = []
    g.append(f"- Bytes on disk: {fmt_mib(mem_du)} for the {n} memory images; goal ≤ 1.1 × "
             f"dirtied ({len(deltas)} × {pages} pages = {fmt_mib(dirtied)}) + the first full "
             f"image ({fmt_mib(first['du'])}) + 1 MiB × {n} = {fmt_mib(budget)}: "
             f"{'**met**' if mem_du <= budget else '**missed**'} "
             f"({mem_du / budget:.2f} × the budget). Of it: full image "
             f"{fmt_mib(first['du'])}, {len(plain)} layers {fmt_mib(sum(s['du'] for s in plain))}"
             f" (median {fmt_mib(med([s['du'] for s in plain])) if plain else '-'}, "
             f"{med([s['du'] for s in plain]) / (pages * PAGE) if plain else 0:.3f} × the "
             f"dirtied pages), {len(cons)} consolidated layers "
             f"{fmt_mib(sum(s['du'] for s in cons))}"
             + (f", {len(fulls)} full images after the first {fmt_mib(sum(s['du'] for s in fulls))}"
                if fulls else "") + ".")
    dt = [s["total_ms"] for s in deltas]
    pt = [s["total_ms"] for s in plain]
    g.append(f"- Time to create a delta (`total_ms`): median {fmt_ms(med(dt))}, p90 "
             f"{fmt_ms(pct(dt, 90))}, max {fmt_ms(max(dt))} over {len(deltas)}; goal ≤ 50 ms "
             f"for {pages * PAGE / MiB:.1f} MiB: median "
             f"{'**met**' if med(dt) <= 50 else '**missed**'}, p90 "
             f"{'**met**' if pct(dt, 90) <= 50 else '**missed**'}" +
             (f" (plain layers only: median {fmt_ms(med(pt))}, p90 {fmt_ms(pct(pt, 90))}; "
              f"consolidated: {', '.join(fmt_ms(s['total_ms']) for s in cons)})"
              if cons else "") + ".")
    if len(plain) >= 20:
        k = max(5, len(plain) // 5)
        g.append(f"- Drift over the run (plain layers): median `total_ms` of the first {k} "
                 f"{fmt_ms(med(pt[:k]))}, of the last {k} {fmt_ms(med(pt[-k:]))}; median "
                 f"`snapshot create` wall time {fmt_ms(med([s['wall_ms'] for s in plain[:k]]))}"
                 f" → {fmt_ms(med([s['wall_ms'] for s in plain[-k:]]))} (each snapshot also "
                 f"adds a disk layer: the VM's chain is {n} qcow2 files deep at the end).")
    pz = [s["pause_ms"] for s in deltas]
    g.append(f"- Pause: median {fmt_ms(med(pz))}, max {fmt_ms(max(pz))}; goal ≤ 1 ms: "
             f"{'**met**' if max(pz) <= 1 else 'median **met**, max **missed**' if med(pz) <= 1 else '**missed**'}.")
    if rs.get("c_deep") and rs.get("c_first"):
        r1, rd = rmed("c_first", 0), rmed("c_deep", 0)
        g.append(f"- Restore at the depth limit (s{R['deep']}, depth {dmax_of(R)}) vs the "
                 f"full image (s1), verified, to running: {fmt_ms(rd)} vs {fmt_ms(r1)} = "
                 f"{rd / r1:.2f} × (issue §3: ≤ 1.5 ×: "
                 f"{'**met**' if rd <= 1.5 * r1 else '**missed**'}); s{n}: "
                 f"{fmt_ms(rmed('c_last', 0))} = {rmed('c_last', 0) / r1:.2f} ×.")
    g.append(f"- Delete of s{lo}..s{hi} ({nd} snapshots, {R.get('del_order', 'oldest')} first, "
             f"VM stopped): "
             f"{R['del_ms'] / 1000:.1f} s in all (median {fmt_ms(med([d['ms'] for d in R['dels']]))}"
             f", max {fmt_ms(max(d['ms'] for d in R['dels']))} each); bundle "
             f"{fmt_mib(R['del_du'][0])} → {fmt_mib(R['del_du'][1])} ({fmt_mib(freed)} freed; "
             f"memory images {fmt_mib(R['del_mem_du'][0])} → {fmt_mib(R['del_mem_du'][1])}); "
             f"the replies' freed_bytes sum to {fmt_mib(sum(d['freed'] for d in R['dels']))}.")
    ad = ", ".join(f"{k} {fmt_ms(v[0])} to running / {fmt_ms(v[1])} to answering"
                   for k, v in R["after_del"].items())
    g.append(f"- After the deletes, verified restores: {ad}; `cairn check` exit "
             f"{R['check'][0]} in {R['check'][1] / 1000:.1f} s"
             + ("" if R["check"][0] == 0 else f" ({R['check'][2]})") + "."
             + (f" Then `cairn destroy` of the bundle: {R['destroy_s']:.1f} s."
                if "destroy_s" in R else ""))
    fs = R.get("fill_s", {})
    sc = [s["scatter_ms"] for s in snaps if "scatter_ms" in s]
    qsc = [x["scatter_ms"] for x in q if "scatter_ms" in x]
    if fs and sc:
        g.append(f"- The guest's side: `memfill {R['fill']}` after boot took {fs['cairn']:.1f} s "
                 f"under cairn (KVM's dirty log on from the start)"
                 + (f" and {fs['qemu']:.1f} s under QEMU (both at once)" if "qemu" in fs else "")
                 + f"; `memscatter {pages}` (typed into the console, to its line, the "
                 f"console's round trip included): median "
                 f"{fmt_ms(med(sc))} under cairn" + (f", {fmt_ms(med(qsc))} under QEMU" if qsc
                                                      else "") + ".")
    for tag, (ok, secs, ln) in R.get("verify", {}).items():
        g.append(f"- Correctness: in the restore of {tag[3:]} after the deletes, memverify "
                 f"(every page of the memfill region against the fill and the memscatters up to "
                 f"that snapshot): {'ok' if ok else '**FAILED**'} in {secs:.1f} s"
                 + ("" if ok else f" (`{ln}`)") + ".")
    if q:
        times = ", ".join(f"{x['ms'] / 1000:.1f} s" for x in q)
        growth = ", ".join(f"{x['bytes'] / MiB:.0f}" for x in q)
        g.append(f"- QEMU: {qn} savevms kept in one qcow2 (rounds {R['qpoints']}): "
                 f"{times}; growth {growth} MiB; qcow2 "
                 f"{fmt_mib(R['qcow2_du'])} in all. Extrapolated to {n}: "
                 f"{fmt_mib(R['qcow2_du'] * n / qn)} and "
                 f"{sum(x['ms'] for x in q) * n / qn / 1000:.0f} s (linear; not measured).")
    return "\n".join(out), g


def dmax_of(R):
    return max(s["depth"] for s in R["snaps"])


def full_table(R):
    rows = ["| # | memory | depth | memory.img (du) | memory_bytes | total_ms | pause_ms | "
            "`snapshot create` wall | cow copies |", "|---|---|---|---|---|---|---|---|---|"]
    for s in R["snaps"]:
        kind = s["memory"]
        if kind == "layer" and s["depth"] == 1 and s["i"] > 2:
            kind = "layer (consolidated)"
        rows.append(f"| s{s['i']} | {kind} | {s['depth']} | {s['du'] / MiB:.2f} MiB | "
                    f"{s['memory_bytes'] / MiB:.2f} MiB | {s['total_ms']:.1f} | "
                    f"{s['pause_ms']:.3f} | {s['wall_ms']:.0f} ms | {s['cow']} |")
    return "\n".join(rows)


def restore_table(R):
    rs = R["restore"]
    rows = ["| restore | runs: to running / to answering (ms) |", "|---|---|"]
    for k, v in rs.items():
        if v:
            rows.append(f"| {k} | " + ", ".join(f"{a:.0f} / {b:.0f}" for a, b in v) + " |")
    for k, v in R["after_del"].items():
        rows.append(f"| {k} after the deletes | {v[0]:.0f} / {v[1]:.0f} |")
    return "\n".join(rows)


def delete_table(R):
    rows = ["| deleted | wall ms | freed_bytes (reply) |", "|---|---|---|"]
    for d in R["dels"]:
        rows.append(f"| s{d['i']} | {d['ms']:.0f} | {d['freed'] / MiB:.1f} MiB |")
    if R.get("qdel"):
        for name, ms in zip(R["qdel_names"], R["qdel"]):
            rows.append(f"| QEMU delvm {name} | {ms:.0f} | |")
    return "\n".join(rows)


def write_out(path, when, cond, argv, R, text, goals):
    notes = ""
    if os.path.exists(path):
        old = open(path).read()
        i = old.find("\n## Notes")
        if i >= 0:
            notes = old[i + 1:]
    loadtxt = ", ".join(f"{p} {v:.2f}" for p, v in loads)
    body = f"""# Incremental memory benchmark (`bench/memory-chain.sh`, issue 15 §6) — {when}

Generated by `{argv}` (the tables and the goal check; the Notes at the end are kept from the
previous file).

Conditions: {cond}. Load average (1 min) by phase: {loadtxt}. The machine is shared: read the
ratios, not the absolute numbers. Free space at the start: {R['free_at_start'] / 2**30:.0f} GiB.

What runs: the same test guest file (`build/guest/testos.elf`) under cairn and under QEMU
(`-enable-kvm -M microvm,auto-kernel-cmdline=off -nodefaults`, a 64 MiB qcow2 on
virtio-blk-device), both `memfill {R['fill']} 7; shell`. cairn's VM is a manager bundle
(`cairn create`, `cairn run --detach`, `cairn snapshot create|delete`), so the restore points
are the ones a user keeps and deletes. Each of the {R['n']} rounds types `memscatter
{R['pages']} i` (a write in each of {R['pages']} pseudo-random pages of the memfill region) into
the guest's shell, waits for its line, then snapshots. QEMU does the same before its savevms
(rounds {R['qpoints']}), every savevm kept in its qcow2; its other rounds do nothing, and while
one program works the other's guest idles in its shell (hlt). Figures:
- cairn create: the VM's reply, passed through by `snapshot create --json` as `vmm`:
  `total_ms` (request to the committed snapshot directory), `pause_ms`, `memory`,
  `memory_depth`, `memory_bytes`; the command's wall time (process start, bundle lock,
  vm.json written twice, the request, settling the overlay's name) beside it; bytes: du of
  memory.img (state.bin is ~{statistics.median([s['state_du'] for s in R['snaps']]) / 1024:.0f}
  KiB more per snapshot, and each snapshot's disk overlay a few hundred KiB).
- QEMU create: wall time of HMP `savevm` (the guest is stopped throughout), bytes: growth of the
  qcow2 (du). QEMU keeps all its savevms in the one file, so only as many as fit were run;
  figures for {R['n']} are that many × the measured mean and are marked extrapolated.
- Restore: new processes after `sync`, both VMs ended. cairn `run -v --restore DIR` (map,
  verified by default: every chunk of every image in the chain is read and hashed before the
  guest runs): its own "first KVM_RUN" time; QEMU `-loadvm NAME`: QMP status running (polled
  every 2 ms). "Answering": wall time from process start to the guest's reply to an `echo`
  typed into its shell as soon as it runs. Cold: `sync; echo 3 > /proc/sys/vm/drop_caches`
  before each.
- Delete: `cairn snapshot delete` of s{R['del_range'][0]}..s{R['del_range'][1]},
  {R.get('del_order', 'oldest')} first, the VM stopped; bytes freed = du of the bundle before -
  after. (Newest first, a deleted layer has no children left in its run of layers except at
  the top of the range, so most deletes only remove files; oldest first, each moves its pages
  into the next, which grows.) QEMU: `delvm` of the middle
  half of its savevms (in a QEMU started with `-S`), du of the qcow2 before - after.

{text}

## Goals (issue 15 §6)

""" + "\n".join(goals) + f"""

## Every restore point

{full_table(R)}

## Restores (each run)

{restore_table(R)}

## Deletes

{delete_table(R)}
"""
    if notes:
        body += "\n" + notes
    with open(path, "w") as f:
        f.write(body)


def main():
    args = sys.argv[1:]
    opts = {"--mem": "2048", "--n": "100", "--qemu-n": "10", "--runs": "3",
            "--dirty-pct": "1", "--out": "", "--raw": "", "--render": "", "--verify": "1",
            "--delete-order": "newest"}
    pos = []
    while args:
        a = args.pop(0)
        if a in opts:
            opts[a] = args.pop(0)
        else:
            pos.append(a)
    if len(pos) != 2 and not opts["--render"]:
        sys.exit(__doc__)
    if opts["--render"]:  # the report again from a run's raw figures
        with open(opts["--render"]) as f:
            R = json.load(f)
        loads[:] = R["loads"]
        text, goals = report(R)
        print(text)
        print("\n".join(goals))
        if opts["--out"]:
            write_out(opts["--out"], R["when"], R["cond"], R["argv"], R, text, goals)
        return
    cairn, testos = os.path.abspath(pos[0]), os.path.abspath(pos[1])
    mem, n, qemu_n, runs = (int(opts[k]) for k in ("--mem", "--n", "--qemu-n", "--runs"))
    dirty_pct = float(opts["--dirty-pct"])
    if n < 4:
        sys.exit("--n must be at least 4")
    if opts["--delete-order"] not in ("newest", "oldest"):
        sys.exit("--delete-order is newest or oldest")
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    tmp = tempfile.mkdtemp(prefix="cairn-bench-memchain.", dir=os.environ.get("TMPDIR", "/tmp"))
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    cond = conditions()
    try:
        R = bench(cairn, testos, mem, n, qemu_n, runs, dirty_pct, opts["--verify"] != "0",
                  opts["--delete-order"], tmp)
        argv = (f"MEM_MB={mem} N={n} QEMU_N={qemu_n} RUNS={runs} "
                f"DIRTY_PCT={opts['--dirty-pct']} bench/memory-chain.sh")
        R.update(loads=loads, when=when, cond=cond, argv=argv)
        if opts["--raw"]:
            with open(opts["--raw"], "w") as f:
                json.dump(R, f)
        text, goals = report(R)
        print(text)
        print("\n".join(goals), flush=True)
        if opts["--out"]:
            write_out(opts["--out"], when, cond, argv, R, text, goals)
            log(f"written to {opts['--out']}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        # a detached bundle VM is not ours through procs: its run.lock names it
        try:
            with open(os.path.join(tmp, "vm", "run.lock")) as f:
                pid = int(f.readline())
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if tmp.encode() in f.read():
                    os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
