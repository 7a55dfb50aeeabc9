"""kill -9 while a VM runs: the manager command or the VM's own process.

The bundle's VM runs the test guest, which fills and verifies its disk and
memory, one "epoch" K at a time: the shell line

    echo LK; diskfill NBLK K; memfill MB K; memverify; diskverify NBLK K; echo EK

is typed, and once the guest has read it (LK printed) one operation starts:
`snapshot create`, `snapshot revert` (in place to a whole-machine snapshot,
or a restart on a disk-only one), `snapshot delete`, `clone` (linked or
--full) or `stop --save`.  At a chosen delay (spread evenly over 0..1.2x the
operation's usual run time, learnt as the campaign goes; a golden-ratio
sequence per operation and target) SIGKILL goes either to the command
("cli") or to the process that runs the VM ("vmm").  The kill is confirmed:
the command's status, or the VM process's status reaped by this script (a
child subreaper, so the detached VM and its snapshot writer are its
children); an operation that ended first is counted apart and must have
succeeded.  Then, every time:
  - `cairn check --repair` succeeds and a second `cairn check` is clean;
  - every snapshot committed before the operation is there (but the one a
    delete removes), a snapshot the command reported, and every snapshot
    directory committed by the time the command ended, are there;
  - every new snapshot, and every one whose files changed, is verified:
    with memory it is restored (`cairn run --restore`, scratch overlays)
    and the restored guest, after finishing the line it was in, passes
    `memverify` with the sum of epoch K's memfill (the memory of its own
    time, not another's) and `diskverify NBLK K`; every snapshot's disk
    (and a clone's) holds only intact blocks of the epochs that can have
    reached it (`diskpat seeds` through its chain);
  - every image of the bundle passes `qemu-img check`;
  - the VM runs again (`cairn run`: resumed from a saved state, or booted on
    its disk) and is what the operation's outcome says: the same guest at
    epoch K, the reverted-to snapshot's guest, or a fresh boot (after a
    killed VM or a revert to a disk-only snapshot), verified in the guest.
Every FAILED line of the guest, any VM process that ends other than by our
SIGKILL or with status 0, and any orphaned snapshot writer is reported.

Usage: kill_running.py CAIRN TMP POINTS SECS (env: TESTOS, DISKPAT, SEED).
POINTS is the number of confirmed kills wanted; SECS the time budget.
"""
import ctypes, fcntl, json, os, random, re, shutil, signal, subprocess, sys, time

CAIRN, TMP, POINTS, SECS = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
TESTOS, DISKPAT = os.environ["TESTOS"], os.environ["DISKPAT"]
B = f"{TMP}/rv"
NBLK, MB = 2000, 16
MAX_SNAPS = 8
FULL_PASS_EVERY = 25  # every snapshot restored and checked again
OPS = ["snapshot", "revert", "delete", "clone", "save"]
TARGETS = ["cli", "vmm"]
seed = int(os.environ.get("SEED", time.time_ns() % 1000000))
rng = random.Random(seed)
print("kill_running: seed", seed, flush=True)
start = time.time()

# The detached VM leaves its launcher, and a snapshot writer its killed VM:
# both become this process's children, whose end we can see.
PR_SET_CHILD_SUBREAPER = 36
if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
    sys.exit("FAIL: prctl(PR_SET_CHILD_SUBREAPER)")


def log_tail():
    try:
        with open(f"{B}/console.log", "rb") as f:
            return f.read()[-1500:].decode(errors="replace")
    except OSError:
        return ""


trail = []  # the last points, for a failure's report


def trace(msg):
    trail.append(f"{time.time() - start:7.1f}s {msg}")
    del trail[:-12]


def fail(msg):
    sys.stdout.flush()
    sys.exit(f"FAIL (seed {seed}, point {npoints}): {msg}\n--- the last points:\n" +
             "\n".join(trail) + f"\n--- console.log ends:\n{log_tail()}")


spent = {}  # phase -> seconds


class phase:
    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.t = time.time()

    def __exit__(self, *a):
        spent[self.name] = spent.get(self.name, 0) + time.time() - self.t


def cairn(*args, ok=(0,), timeout=300):
    try:
        p = subprocess.run([CAIRN, *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        fail(f"cairn {' '.join(args)} did not end within {timeout} s")
    if p.returncode not in ok:
        fail(f"cairn {' '.join(args)} exited {p.returncode}: {p.stdout}{p.stderr}")
    return p


def info():
    return json.loads(cairn("info", B, "--json").stdout)


# ---- processes ----------------------------------------------------------
op_proc = None  # the operation's Popen (never reaped here)
reaped = {}  # pid -> wait status of orphans reaped
killed_vmms = set()
orphans = set()
vmm_pids = set()
stats = {"writers_orphaned": 0}


def children():
    me, out = os.getpid(), []
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            with open(f"/proc/{e}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        if int(fields[1]) == me:
            out.append((int(e), fields[0]))
    return out


def check_status(pid, status, what):
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGKILL and pid in killed_vmms:
            return
        fail(f"{what} (pid {pid}) died of signal {sig}")
    if os.WEXITSTATUS(status) != 0:
        fail(f"{what} (pid {pid}) exited {os.WEXITSTATUS(status)}")


def reap_orphans():
    """Reap the ended VM processes and snapshot writers handed to us."""
    for pid, state in children():
        if op_proc is not None and pid == op_proc.pid and op_proc.returncode is None:
            continue
        if state != "Z":
            continue
        _, status = os.waitpid(pid, 0)
        reaped[pid] = status
        trace(f"reaped {pid}: status {status:#x}")
        if pid in vmm_pids:
            check_status(pid, status, "a VM process")
        elif pid not in orphans:  # a snapshot writer whose VM was killed
            orphans.add(pid)
            stats["writers_orphaned"] += 1


def running():
    try:
        fd = os.open(f"{B}/run.lock", os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def descends_from_us(pid):
    me = os.getpid()
    for _ in range(10):
        try:
            with open(f"/proc/{pid}/stat") as f:
                st = f.read()
        except OSError:
            return False
        pid = int(st[st.rindex(")") + 2:].split()[1])
        if pid == me:
            return True
        if pid <= 1:
            return False
    return False


def vmm_pid():
    """The process that runs the VM now (run.lock), if it is ours."""
    for _ in range(200):
        if not running():
            return None
        try:
            with open(f"{B}/run.lock") as f:
                pid = int(f.readline().strip() or 0)
        except (OSError, ValueError):
            pid = 0
        # a detaching launcher holds the lock until its child names itself
        if pid and (op_proc is None or pid != op_proc.pid) and descends_from_us(pid):
            vmm_pids.add(pid)
            return pid
        time.sleep(0.002)
    return None


# ---- the guest's console ------------------------------------------------
def con_send(text):
    fd = os.open(f"{B}/console.in", os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(fd, (text + "\n").encode())
    finally:
        os.close(fd)


def con_text():
    with open(f"{B}/console.log", "rb") as f:
        return f.read()


def con_wait(pat, since, secs=60, text_of=con_text, what="the VM"):
    rx = re.compile(pat.encode(), re.M)
    t = time.time() + secs
    while True:
        txt = text_of()
        m = rx.search(txt, since)
        if m:
            return m, txt
        if time.time() > t:
            fail(f"{what}: /{pat}/ did not appear within {secs} s; it printed:\n"
                 f"{txt[since:][-1500:].decode(errors='replace')}")
        time.sleep(0.01)


sums = {}


def memsum(k):
    if k not in sums:
        sums[k] = subprocess.run([DISKPAT, "memsum", str(MB), str(k)], capture_output=True,
                                 text=True, check=True).stdout.strip()
    return sums[k]


def check_guest_output(txt, since, what):
    bad = [l for l in txt[since:].decode(errors="replace").splitlines() if "FAILED" in l
           or "EXCEPTION" in l]
    if bad:
        fail(f"{what}: the guest says: {bad[:3]}")


def verify_lines(txt, since, e, what):
    """After SINCE: the verify line's memverify has epoch E's sum, its diskverify passed."""
    part = txt[since:].decode(errors="replace")
    if f"memverify ok sum={memsum(e)}" not in part or f"diskverify ok n={NBLK}" not in part:
        fail(f"{what}: expected memory and disk of epoch {e} (sum {memsum(e)}); the guest "
             f"printed:\n{part[-1200:]}")


# ---- disks --------------------------------------------------------------
def disk_seeds(layer):
    """The seeds of the blocks the layer (through its chain) reads as."""
    raw = f"{TMP}/seeds.raw"
    subprocess.run(["qemu-img", "convert", "-U", "-O", "raw", layer, raw], check=True,
                   capture_output=True)
    p = subprocess.run([DISKPAT, "seeds", raw, str(NBLK)], capture_output=True, text=True)
    os.unlink(raw)
    if p.returncode:
        return None, p.stdout.strip() + p.stderr.strip()
    return {int(r.split(":")[1]) for r in p.stdout.split()[2:]}, p.stdout.strip()


def check_disk(layer, allowed, what):
    with phase("disk checks"):
        got, out = disk_seeds(layer)
    if got is None or not got <= allowed:
        fail(f"{what}: {layer}: {out}; blocks may hold epochs {sorted(allowed)}")
    stats["disk_checks"] = stats.get("disk_checks", 0) + 1


qchecked = {}


def qemu_img_check_all():
    for f in sorted(os.listdir(f"{B}/disks")):
        path = f"{B}/disks/{f}"
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        sig = (st.st_ino, st.st_mtime_ns, st.st_size)
        if qchecked.get(path) == sig:
            continue
        with phase("qemu-img check"):
            p = subprocess.run(["qemu-img", "check", "-U", path], capture_output=True, text=True)
        if p.returncode:
            fail(f"qemu-img check {path} exited {p.returncode}: {p.stdout}{p.stderr}")
        qchecked[path] = sig
        stats["qemu_img_checks"] = stats.get("qemu_img_checks", 0) + 1


# ---- snapshots ----------------------------------------------------------
snapinfo = {}  # id -> {"epoch": K, "allowed": seeds its disk may hold}
verified = {}  # id -> the signature of its files when verified


def snap_sig(d, sid):
    sig, s = [], d["snapshots"][sid]
    files = list(s["layers"])
    if s["memory"]:
        files += [f"{B}/snapshots/{sid}/state.bin", f"{B}/snapshots/{sid}/memory.img"]
    p = s["parent"]
    while p:
        files += d["snapshots"][p]["layers"]
        p = d["snapshots"][p]["parent"]
    for f in files:
        st = os.stat(f)
        sig.append((f, st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(sig)


def restore_verify(sid, e):
    with phase("restores"):
        restore_verify1(sid, e)


def restore_verify1(sid, e):
    rd, sock, outp = f"{TMP}/rd", f"{TMP}/rd.sock", f"{TMP}/rd.out"
    os.makedirs(rd, exist_ok=True)
    if os.path.exists(sock):
        os.unlink(sock)
    with open(outp, "wb") as out:
        p = subprocess.Popen([CAIRN, "run", "--restore", f"{B}/snapshots/{sid}", "--control",
                              sock, "--disk-dir", rd], stdin=subprocess.PIPE, stdout=out,
                             stderr=subprocess.STDOUT)
    read = lambda: open(outp, "rb").read()
    try:
        for _ in range(3000):
            if os.path.exists(sock) or p.poll() is not None:
                break
            time.sleep(0.01)
        if p.poll() is not None:
            fail(f"snapshot {sid} does not restore: exit {p.returncode}: {read()[-1500:]}")
        p.stdin.write(f"echo V; memverify; diskverify {NBLK} {e}; echo W\n".encode())
        p.stdin.flush()
        m, txt = con_wait(r"^cpu0: W\r?$", 0, 90, read, f"snapshot {sid} restored")
        v = txt.rfind(b"cpu0: V")
        check_guest_output(txt, 0, f"snapshot {sid} restored")
        verify_lines(txt, v, e, f"snapshot {sid} restored")
        q = subprocess.run([CAIRN, "control", sock, '{"cmd":"quit"}'], capture_output=True)
        rc = p.wait(timeout=60)
        if q.returncode or rc:
            fail(f"snapshot {sid} restored: quit said {q.stdout}{q.stderr}, exit {rc}")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    shutil.rmtree(rd)
    stats["restores_verified"] = stats.get("restores_verified", 0) + 1


def verify_snapshots(d, everything=False):
    for sid, s in d["snapshots"].items():
        if sid not in snapinfo:
            fail(f"snapshot {s['name']} ({sid}) appeared from nowhere")
        sig = snap_sig(d, sid)
        if not everything and verified.get(sid) == sig:
            continue
        check_disk(s["layers"][0], snapinfo[sid]["allowed"], f"snapshot {s['name']}")
        if s["memory"]:
            restore_verify(sid, snapinfo[sid]["epoch"])
        verified[sid] = sig


# ---- the live VM --------------------------------------------------------
live_allowed = set()  # the epochs whose blocks the VM's disk may hold
epoch = 100
mark = 0  # console.log offset: what the checks have seen


def start_line():
    """Epoch K's line, once the guest has read it (it prints LK)."""
    global epoch, mark, live_allowed
    epoch += 1
    con_send(f"echo L{epoch}; diskfill {NBLK} {epoch}; memfill {MB} {epoch}; memverify; "
             f"diskverify {NBLK} {epoch}; echo E{epoch}")
    live_allowed = live_allowed | {epoch}
    con_wait(rf"^cpu0: L{epoch}\r?$", mark)


def live_verify(expect, what):
    """The VM runs and is at EXPECT: an epoch (its memory and disk), or "boot"."""
    global mark, live_allowed
    n = rng.getrandbits(32)
    if expect == "boot":
        m, txt = con_wait(r"^cairn-guest: ready\r?$", mark, 60, what=what)
        con_send(f"echo S{n:x}")
        m, txt = con_wait(rf"^cpu0: S{n:x}\r?$", mark, 60, what=what)
    else:
        con_send(f"echo S{n:x}; memverify; diskverify {NBLK} {expect}; echo T{n:x}")
        m, txt = con_wait(rf"^cpu0: T{n:x}\r?$", mark, 90, what=what)
        if re.search(rb"^cairn-guest: ready", txt[mark:], re.M):
            fail(f"{what}: the guest booted afresh, expected it at epoch {expect}")
        verify_lines(txt, txt.rfind(f"cpu0: S{n:x}".encode()), expect, what)
        live_allowed = {expect}
    check_guest_output(txt, mark, what)
    mark = m.end()


def run_vm():
    cairn("run", B, "--detach", timeout=120)
    if not vmm_pid():
        fail("cairn run --detach: no VM process of ours holds run.lock")


# ---- operations ---------------------------------------------------------
def new_name():
    return "s%06x" % rng.getrandbits(24)


def plan(op, d):
    snaps, cur = d["snapshots"], d["current"]
    if op == "snapshot":
        return ["snapshot", "create", B, new_name()], {}
    if op == "save":
        return ["stop", B, "--save"], {}
    if op == "revert":
        c = [i for i in snaps if i != cur]
        mem = [i for i in c if snaps[i]["memory"]]
        if not c:
            return None
        sid = rng.choice(mem if mem and (rng.random() < 0.75 or len(mem) == len(c)) else
                         [i for i in c if i not in mem])
        return ["snapshot", "revert", B, snaps[sid]["name"]], {"sid": sid}
    if op == "delete":
        c = [i for i in snaps if i != cur and i != d["resume"]]
        if not c:
            return None
        sid = rng.choice(c)
        return ["snapshot", "delete", B, snaps[sid]["name"]], {"sid": sid}
    sid = rng.choice(list(snaps))
    target = f"{TMP}/c{rng.getrandbits(24):06x}"
    full = rng.random() < 0.35
    return (["clone", B, snaps[sid]["name"], target] + (["--full"] if full else []),
            {"sid": sid, "target": target})


took = {}  # op -> its usual run time (s)
counts = {}  # (op, target) -> {"killed": n, "ended first": n}
clean_failures = {}
repairs = {}
live_states = {}
OP_ERR = f"{TMP}/op.err"


def housekeeping():
    """Keep the tree small: delete (whole, not killed) down to MAX_SNAPS - 2."""
    d = info()
    trim = len(d["snapshots"]) > MAX_SNAPS
    while trim and len(d["snapshots"]) > MAX_SNAPS - 2:
        c = [i for i in d["snapshots"] if i != d["current"] and i != d["resume"]]
        sid = rng.choice(c)
        cairn("snapshot", "delete", B, d["snapshots"][sid]["name"])
        snapinfo.pop(sid)
        d = info()
    return d


def committed_dirs():
    return {e for e in os.listdir(f"{B}/snapshots") if ".tmp-" not in e}


def point(op, target, frac, kill=True):
    """One operation, one kill (or none when KILL is false), then every check."""
    global op_proc, mark, live_allowed
    d = housekeeping()
    pl = plan(op, d)
    if pl is None:  # nothing to revert to or delete: take a snapshot first
        point("snapshot", target, 0, kill=False)
        d = info()
        pl = plan(op, d)
    args, x = pl
    before = set(d["snapshots"])
    with phase("line start"):
        start_line()
    k = epoch
    delay = frac * 1.2 * took.get(op, 0.1)
    t0 = time.time()
    with open(OP_ERR, "w") as err:
        op_proc = subprocess.Popen([CAIRN, *args], stdout=subprocess.PIPE, stderr=err,
                                   text=True)
    outcome = "ended first"
    if kill:
        time.sleep(delay)
        if op_proc.poll() is None and target == "cli":
            op_proc.send_signal(signal.SIGKILL)
            op_proc.wait()
            if op_proc.returncode == -signal.SIGKILL:
                outcome = "killed"
        elif op_proc.poll() is None:
            pid = vmm_pid()
            if pid:
                killed_vmms.add(pid)
                os.kill(pid, signal.SIGKILL)
                outcome = "vmm killed?"
            else:
                outcome = "no vm"
    try:
        out, _ = op_proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        op_proc.kill()
        fail(f"cairn {' '.join(args)} did not end within 180 s after the kill")
    rc = op_proc.returncode
    if outcome == "vmm killed?":
        # the VM's process is ours now (its launcher ended long ago), unless
        # the command that started it (a revert's restart) reaped it itself:
        # it waits for the VM it launches to come up
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            status = None
            outcome = "killed"
        else:
            reaped[pid] = status
        if status is None:
            pass
        elif os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            outcome = "killed"
        else:
            killed_vmms.discard(pid)
            check_status(pid, status, "the VM process (ended before the kill)")
            outcome = "ended first"
    op_proc = None
    with open(OP_ERR) as f:
        err = f.read()
    cmd = f"cairn {' '.join(args)}"
    if any(s in err for s in ("Sanitizer", "runtime error", "Assertion")):
        fail(f"{cmd}: sanitizer report:\n{err[-3000:]}")
    if outcome == "killed" and target == "cli":
        pass
    elif rc == 0:
        if outcome != "killed":
            took[op] = 0.7 * took.get(op, time.time() - t0) + 0.3 * (time.time() - t0)
    elif outcome == "killed" and rc == 1 and any(l.startswith("cairn: ") for l in err.splitlines()):
        # the VM was killed under the command: a clean failure
        clean_failures.setdefault(op, []).append(err.strip().splitlines()[-1][:200])
    else:
        fail(f"{cmd} ({outcome}, target {target}) exited {rc}: {err[-3000:]}")
    if kill:
        c = counts.setdefault((op, target), {})
        c[outcome] = c.get(outcome, 0) + 1
    what = f"{op} ({cmd}), {target} {outcome} after {delay * 1000:.0f} ms"
    trace(f"{what}: exit {rc}{(', ' + err.strip().splitlines()[-1][:160]) if err.strip() else ''}")
    dirs_now = committed_dirs()
    reap_orphans()
    vm = vmm_pid()
    for pid, st in children():
        if pid not in reaped and pid != vm and pid not in orphans:
            trace(f"pid {pid} outlived its VM")
            orphans.add(pid)  # a snapshot writer that outlived its VM
            stats["writers_orphaned"] += 1

    # a clone: repaired or finished, checked, then destroyed
    tgt = x.get("target")
    if tgt and os.path.isdir(tgt):
        cairn("check", "--repair", tgt, ok=(0, 1))
        if os.path.exists(f"{tgt}/vm.json"):
            cairn("check", tgt)
            cl = json.loads(cairn("info", tgt, "--json").stdout)
            # a clone that resumes has its own snapshot's layer until its first run
            layer = cl["active"][0] if cl.get("active") else cl["snapshots"][cl["resume"]]["layers"][0]
            check_disk(layer, snapinfo[x["sid"]]["allowed"], f"clone {tgt}")
            cairn("destroy", tgt)
        elif os.path.exists(tgt):
            cairn("destroy", tgt)
    elif tgt and op == "clone" and rc == 0:
        fail(f"{what}: the clone reported made is not there")

    # the bundle
    with phase("check --repair, check"):
        rep = cairn("check", "--repair", B, timeout=600).stdout
        cairn("check", B)
    for line in rep.splitlines():
        if line.startswith("repaired: "):
            key = re.sub(r"[0-9a-f]{8}|/\S+", "X", line[10:])[:60]
            repairs[key] = repairs.get(key, 0) + 1
    d = info()
    snaps = d["snapshots"]
    gone = before - set(snaps)
    if gone - ({x["sid"]} if op == "delete" else set()):
        fail(f"{what}: committed snapshot(s) lost: {gone}")
    if op == "delete" and rc == 0 and x["sid"] in snaps:
        fail(f"{what}: the delete succeeded, the snapshot is still there")
    for sid in dirs_now - set(snaps) - gone:
        fail(f"{what}: snapshot directory {sid} was committed, the bundle lost it")
    for sid in set(snaps) & dirs_now:
        if not snaps[sid]["memory"]:
            fail(f"{what}: snapshot {sid} was committed with memory, recorded without")
    new = set(snaps) - before
    if op == "snapshot" and rc == 0 and args[-1] not in {snaps[i]["name"] for i in new}:
        fail(f"{what}: the snapshot reported taken is not there")
    if op == "save" and rc == 0 and not (d["resume"] in new and snaps[d["resume"]]["memory"]):
        fail(f"{what}: stop --save succeeded, nothing to resume")
    if len(new) > 1 or (new and op not in ("snapshot", "save")):
        fail(f"{what}: new snapshots {new}")
    for sid in new:
        snapinfo[sid] = {"epoch": k, "allowed": set(live_allowed)}
        s = snaps[sid]
        if s["memory"] and s["suspend"] and not running() and d["resume"] != sid:
            fail(f"{what}: the VM ended saved in {sid}, but it is not to be resumed")

    # what the VM is now
    reverted = op == "revert" and d["current"] == x["sid"]
    if reverted:
        live_allowed = set(snapinfo[x["sid"]]["allowed"])
    if not running():
        qemu_img_check_all()
        if d["resume"]:
            expect = snapinfo[d["resume"]]["epoch"]
            state = "resumed"
        else:
            expect, state = "boot", "booted"
            check_disk(d["active"][0], live_allowed, f"{what}: the disk to boot")
        run_vm()
    elif reverted:
        s = snaps[x["sid"]]
        expect = snapinfo[x["sid"]]["epoch"] if s["memory"] else "boot"
        state = "reverted" if s["memory"] else "restarted"
    else:
        expect, state = k, "went on"
    live_states[state] = live_states.get(state, 0) + 1
    with phase("the VM verified"):
        live_verify(expect, f"{what}: the VM ({state})")
    qemu_img_check_all()
    verify_snapshots(info())


# ---- the campaign -------------------------------------------------------
npoints = 0
cairn("create", B, "--kernel", TESTOS, "--mem", "64M", "--disk-size", "16M", "--cmdline",
      "echo up; shell")
run_vm()
mark = con_wait(r"^cairn> ", 0, 30)[0].end()
start_line()
live_verify(epoch, "the first line")
# the first snapshot, then each operation once unkilled (their run times)
for op in ["snapshot", "snapshot", "revert", "delete", "clone", "save", "clone", "snapshot"]:
    point(op, "cli", 0, kill=False)
n_combo = {}
offset = rng.random()
while npoints < POINTS and time.time() - start < SECS:
    i = sum(n_combo.values())
    op, target = OPS[(i // 2) % len(OPS)], TARGETS[i % 2]
    n = n_combo.get((op, target), 0)
    n_combo[(op, target)] = n + 1
    frac = (offset + n * 0.6180339887498949) % 1.0
    point(op, target, frac)
    npoints = sum(c.get("killed", 0) for c in counts.values())
    if sum(n_combo.values()) % 50 == 0:
        print(f"kill_running: {npoints} kill points in {time.time() - start:.0f}s", flush=True)
    if sum(n_combo.values()) % FULL_PASS_EVERY == 0:
        verify_snapshots(info(), everything=True)
verify_snapshots(info(), everything=True)
cairn("stop", B)
cairn("check", B)
qemu_img_check_all()
reap_orphans()

el = time.time() - start
print("usual run times (ms):", {k: round(v * 1000) for k, v in took.items()})
print("time spent (s):", {k: round(v) for k, v in spent.items()})
print("check --repair did:", repairs)
print("the VM afterwards:", live_states)
print("points (confirmed SIGKILL during the operation / operation ended first):")
for op in OPS:
    print(f"  {op:9s}" + "".join(
        f"  {t}: {counts.get((op, t), {}).get('killed', 0):4d} killed"
        f" / {counts.get((op, t), {}).get('ended first', 0) + counts.get((op, t), {}).get('no vm', 0):3d} ended first"
        for t in TARGETS))
by_t = {t: sum(counts.get((o, t), {}).get("killed", 0) for o in OPS) for t in TARGETS}
print(f"kill_running: {npoints} kill points ({by_t}) in {el:.0f}s, "
      f"{len(info()['snapshots'])} snapshots at the end; snapshots lost: 0; "
      f"restores verified: {stats.get('restores_verified', 0)}, disk checks: "
      f"{stats.get('disk_checks', 0)}, qemu-img checks: {stats.get('qemu_img_checks', 0)}, "
      f"snapshot writers that outlived their VM: {stats['writers_orphaned']}")
print("commands that failed cleanly after their VM was killed:",
      {op: len(m) for op, m in clean_failures.items()} or "none")
for op, msgs in clean_failures.items():
    for m in sorted(set(msgs))[:4]:
        print(f"  {op}: {m}")
if npoints < POINTS and npoints < 10:
    sys.exit(f"FAIL: only {npoints} kill points in the time budget")
