#!/usr/bin/env python3
"""Injected-fault campaign (issue 14 section 2, after QEMU's iotest 026).

For each operation (a variant: the command, what it runs on, and which
process gets the fault) the campaign first counts its fault points (every
write/pwrite/splice/fsync/fdatasync/ftruncate/fallocate/rename* call on a
file under the work directory, through libfaultshim.so's counting mode),
then runs it again with one point failing, with EIO (that call only) and
with ENOSPC (that call and every later one: a full disk stays full), and
checks:
  - the operation exits 1 with a message that names a file, or succeeds
    (the fault hit something optional), never anything else;
  - every image passes `qemu-img check` (leaked clusters are allowed before
    the repair: docs/qcow2.md; they are counted and reported);
  - `cairn check --repair` exits 0 and `cairn check` is then clean, and the
    images are then leak-free;
  - no committed snapshot is lost or changed (disk content through its layer
    chain, by qemu-img convert -U, and its memory files), and the
    whole-machine snapshots restore;
  - operation-specific: the view through a chain's top is unchanged by a
    failed commit/stream/rebase, a failed create/convert leaves no image, a
    running VM is still running with its disk intact, the operation works
    again without the fault.
Each point starts from a saved copy of the same state (restored at the same
absolute path: bundles and qcow2 backing names hold absolute paths).

Outcomes per point: clean-fail, ok (the fault fired, the operation
succeeded), not-reached (the point was not reached in this run: counts vary
a little between runs, e.g. with the memory writer's threads), BUG, and
XFAIL (a BUG that is a known finding, listed in KNOWN with its id in
tests/faults/FINDINGS.md).  Exit status 1 when there is a BUG that is not
known.
"""
import argparse, hashlib, json, mmap, os, random, re, shutil, signal, struct, subprocess, sys, time

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--cairn", required=True)
ap.add_argument("--shim", required=True)
ap.add_argument("--testos", required=True)
ap.add_argument("--seed", type=int, default=14)
ap.add_argument("--sample", action="store_true",
                help="a bounded sample (CI): --points points per variant and errno")
ap.add_argument("--points", type=int, default=None,
                help="points per variant and errno (default: all; 1 with --sample)")
ap.add_argument("--only", default="", help="comma-separated variant names (prefix match)")
ap.add_argument("--errnos", default="EIO,ENOSPC")
ap.add_argument("--nth", default="", help="comma-separated points to run (with --only)")
ap.add_argument("--workdir", default=None, help="default: a new directory in /tmp")
ap.add_argument("--keep", action="store_true", help="keep the work directory")
ap.add_argument("--json", default=None, help="write the results here")
ap.add_argument("-v", "--verbose", action="store_true")
A = ap.parse_args()
if A.points is None and A.sample:
    A.points = int(os.environ.get("FAULT_POINTS", 1))
A.seed = int(os.environ.get("FAULT_SEED", A.seed))
# exit 77 = skipped (meson), said loudly
if not os.access("/dev/kvm", os.R_OK | os.W_OK):
    print("SKIP: /dev/kvm is missing or not accessible: the VM variants need KVM")
    sys.exit(77)
if not shutil.which("qemu-img") or not shutil.which("qemu-io"):
    print("SKIP: qemu-img and qemu-io (qemu-utils) are needed as the independent checker")
    sys.exit(77)
CAIRN, TESTOS = os.path.abspath(A.cairn), os.path.abspath(A.testos)
W = A.workdir or subprocess.run(["mktemp", "-d", "/tmp/cairn-faults.XXXXXX"], capture_output=True,
                                text=True, check=True).stdout.strip()
os.makedirs(W, exist_ok=True)
SAVE = f"{W}/.save"  # saved states (the fault filter excludes it)
rng = random.Random(A.seed)
T0 = time.time()

# Known failures: (variant, errno, point signature, nth) -> finding id in
# FINDINGS.md.  A point signature is the failing call as the shim logs it,
# with the work directory cut off and ids replaced by X (see sig()); nth
# narrows it to one point where the signature is not unique (None: any).
# "*" matches any variant or errno.  Such a point is still run and reported as XFAIL, never
# hidden; if it behaves it is reported as XPASS (the finding may be fixed).
KNOWN = {
}


def log(*a):
    print(f"[{time.time() - T0:6.1f}s]", *a, flush=True)


def die(msg):
    log("FAIL:", msg)
    sys.exit(1)


# ---------------------------------------------------------------- the shim
def preload():
    """LD_PRELOAD for the shim: a sanitizer runtime the binary links must
    come first (ASan insists on being the first object), then the shim."""
    out = subprocess.run(["ldd", CAIRN], capture_output=True, text=True).stdout
    rt = re.findall(r"=> (\S*lib(?:asan|ubsan|tsan|lsan)\.so[.\d]*) ", out)
    return ":".join(rt + [os.path.abspath(A.shim)]), bool(rt)


PRELOAD, SANITIZED = preload()

CTL_FMT = "<QQQQ"  # magic, gen, calls, fired; then the spec (struct fault_shared)
CTL_MAGIC = 0x544C554146524143


class Ctl:
    """A fault control file (CAIRN_FAULT=ctl:FILE): re-armable while the
    processes that mapped it run."""

    def __init__(self, path):
        self.path = path
        with open(path, "wb") as f:
            f.write(struct.pack(CTL_FMT, CTL_MAGIC, 1, 0, 0) + b"\0" * 2048)
        self.f = open(path, "r+b")
        self.m = mmap.mmap(self.f.fileno(), 32 + 2048)
        self.gen = 1

    def arm(self, spec):
        b = spec.encode()
        assert len(b) < 2048
        self.m[32:32 + 2048] = b + b"\0" * (2048 - len(b))
        self.m[16:32] = struct.pack("<QQ", 0, 0)
        self.gen += 1
        self.m[8:16] = struct.pack("<Q", self.gen)

    def disarm(self):
        self.arm("")

    def fired(self):
        return struct.unpack("<Q", self.m[24:32])[0]


def fault_env(spec, leaks=True):
    env = dict(os.environ, LD_PRELOAD=PRELOAD, CAIRN_FAULT=spec)
    if not leaks:  # a sanitizer runtime preloaded into python: not python's leaks
        env["ASAN_OPTIONS"] = "detect_leaks=0"
    return env


def filt():
    # console.log and the FIFO console.in: the guest's console (timing-
    # dependent, not a disk write; without its FIFO a detached VM runs on
    # with no console input)
    return f"path={W}/,not={SAVE},not=console."


def read_log(path):
    calls = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                p = line.split()
                # "!": a call that needs no space (never fails with ENOSPC)
                allocates = p[-1] != "!"
                if not allocates:
                    p = p[:-1]
                fail = "FAIL" in p
                paths = p[3:-2] if fail else p[3:]
                calls.append({"n": int(p[0]), "pid": int(p[1]), "op": p[2],
                              "desc": " ".join(p[2:]), "fail": fail, "allocates": allocates,
                              "paths": [x for x in paths if x != "->"]})
    return calls


def sig(desc):
    s = desc.replace(W + "/", "").replace(W, "")
    s = re.sub(r"[0-9a-f]{8,}", "X", s)
    s = re.sub(r"(tmp-|\.tmp)[A-Za-z0-9]{6}\b", r"\1X", s)
    return re.sub(r"\bs\d+\b", "sN", s)


# ------------------------------------------------------------- helpers
def sh(args, env=None, ok=(0,), timeout=300, what=None):
    p = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)
    if ok is not None and p.returncode not in ok:
        die(f"{what or ' '.join(args)} exited {p.returncode}: {p.stdout}{p.stderr}")
    return p


def cairn(*args, env=None, ok=(0,), timeout=300):
    return sh([CAIRN, *args], env=env, ok=ok, timeout=timeout, what="cairn " + " ".join(args))


def md5_file(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_hash_cache = {}


def view_hash(path, chain=None):
    """md5 of what a qcow2 image reads as through its backing chain; cached
    by the identity (path, size, mtime) of every file of the chain."""
    chain = chain or backing_chain(path)
    key = tuple((p, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in chain)
    if key in _hash_cache:
        return _hash_cache[key]
    raw = f"{SAVE}/h.raw"
    sh(["qemu-img", "convert", "-U", "-O", "raw", path, raw])
    h = md5_file(raw)
    os.unlink(raw)
    _hash_cache[key] = h
    return h


def backing_chain(path):
    out = sh(["qemu-img", "info", "-U", "--backing-chain", "--output=json", path]).stdout
    return [i["filename"] for i in json.loads(out)]


def qcheck(path):
    """qemu-img check: 0 clean, 3 leaks, 2 corrupt, 1 could not check"""
    p = sh(["qemu-img", "check", "-U", "-q", path], ok=None)
    return p.returncode, (p.stdout + p.stderr).strip()


def save_state(name, dirs):
    dst = f"{SAVE}/{name}"
    shutil.rmtree(dst, ignore_errors=True)
    os.makedirs(dst)
    for d in dirs:
        sh(["cp", "-a", "--sparse=always", d, f"{dst}/{os.path.basename(d)}"])


def load_state(name, dirs):
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
        sh(["cp", "-a", "--sparse=always", f"{SAVE}/{name}/{os.path.basename(d)}", d])


def doc(b):
    """vm.json with the layer paths made absolute (version 2 names the
    bundle's own files relative to it)."""
    with open(f"{b}/vm.json") as f:
        d = json.load(f)
    absp = lambda p: p if p is None or os.path.isabs(p) else os.path.join(b, p)
    if d.get("active"):
        d["active"] = [absp(p) for p in d["active"]]
    for s in d.get("snapshots", {}).values():
        s["layers"] = [absp(p) for p in s["layers"]]
    return d


def snap_state(b):
    """id -> (name, disk content through the chain, memory files' md5s)"""
    d = doc(b)
    res = {}
    for i, s in d["snapshots"].items():
        mem = None
        sd = f"{b}/snapshots/{i}"
        if s.get("memory"):
            # memory.img itself may change: deleting the snapshot its memory
            # stands on moves that one's pages into it (same RAM, same id).
            # state.bin names the id, and cairn check (run after every
            # point) verifies the image and its chain against it.
            mem = (view_or_md5(f"{sd}/state.bin"),
                   "present" if os.path.exists(f"{sd}/memory.img") else "missing")
        res[i] = (s["name"], tuple(view_hash(l) for l in s["layers"]), mem)
    return res


def view_or_md5(path):
    if not os.path.exists(path):
        return "missing"
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _hash_cache:
        _hash_cache[key] = md5_file(path)
    return _hash_cache[key]


def restore_snap(b, sid):
    """a whole-machine snapshot restores in a throw-away process"""
    rd, sock = f"{SAVE}/rd", f"{SAVE}/rd.sock"
    shutil.rmtree(rd, ignore_errors=True)
    os.makedirs(rd)
    if os.path.exists(sock):
        os.unlink(sock)
    p = subprocess.Popen([CAIRN, "run", "--restore", f"{b}/snapshots/{sid}", "--control", sock,
                          "--disk-dir", rd], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t = time.time()
    while time.time() - t < 60 and not os.path.exists(sock) and p.poll() is None:
        time.sleep(0.02)  # verifying the memory image takes a while on a loaded host
    for _ in range(50):
        q = subprocess.run([CAIRN, "control", sock, '{"cmd":"quit"}'], capture_output=True,
                           text=True)
        if q.returncode == 0 or p.poll() is not None:
            break
        time.sleep(0.2)
    try:
        rc = p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = -9
    shutil.rmtree(rd, ignore_errors=True)
    if q.returncode or rc:
        return (f"snapshot {sid} does not restore: exit {rc}: {p.stderr.read().strip()} "
                f"(control: {q.stderr.strip()})")
    return None


def restore_all(b):
    errs = []
    for i, s in doc(b)["snapshots"].items():
        if s.get("memory"):
            e = restore_snap(b, i)
            if e:
                errs.append(e)
    return errs


# --------------------------------------------------------------- the VM
def vm_pid(b):
    try:
        with open(f"{b}/run.lock") as f:
            pid = int(f.readline().split()[0])
        os.kill(pid, 0)
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return pid if b"cairn" in f.read() else None
    except (OSError, ValueError, IndexError):
        return None


def vm_running(b):
    p = sh([CAIRN, "info", b, "--json"], ok=None)
    return p.returncode == 0 and '"running"' in p.stdout


def kill_vm(b):
    pid = vm_pid(b)
    if pid:
        os.kill(pid, signal.SIGKILL)
        for _ in range(200):
            if not os.path.exists(f"/proc/{pid}"):
                break
            time.sleep(0.02)


def console_write(b, cmd):
    """cmd into the guest's console FIFO; False when no VM reads it (a
    blocking open would wait for ever)"""
    try:
        fd = os.open(f"{b}/console.in", os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        os.write(fd, (cmd + "\n").encode())
    finally:
        os.close(fd)
    return True


def con(b, cmd, pattern, secs=20):
    """type cmd into the guest's shell, wait for pattern after it"""
    logp = f"{b}/console.log"
    with open(logp, "rb") as f:
        start = len(f.read())
    if not console_write(b, cmd):
        return False
    t = time.time()
    while time.time() - t < secs:
        with open(logp, "rb") as f:
            if re.search(pattern.encode(), f.read()[start:]):
                return True
        time.sleep(0.05)
    return False


def con_match(b, cmd, pattern, secs=20):
    """type cmd into the guest's shell; the first match of pattern after
    it (None: none within secs)"""
    logp = f"{b}/console.log"
    with open(logp, "rb") as f:
        start = len(f.read())
    if not console_write(b, cmd):
        return None
    t = time.time()
    while time.time() - t < secs:
        with open(logp, "rb") as f:
            m = re.search(pattern.encode(), f.read()[start:])
        if m:
            return m.group(0).decode()
        time.sleep(0.05)
    return None


def wait_console(b, pattern, secs=20):
    t = time.time()
    while time.time() - t < secs:
        with open(f"{b}/console.log", "rb") as f:
            if re.search(pattern.encode(), f.read()):
                return True
        time.sleep(0.05)
    return False


def run_vm(b, env=None):
    fresh = doc(b).get("resume") is None
    if fresh and os.path.exists(f"{b}/console.log"):
        open(f"{b}/console.log", "w").close()
    cairn("run", b, "--detach", env=env)
    if fresh and not wait_console(b, r"cairn> |ready", 20):
        die(f"{b}: the guest did not boot")


# ---------------------------------------------------------- the states
IMG = f"{W}/img"
VM = f"{W}/vm"      # stopped VM bundle: m1, m2 (whole machine), d1 (disk only)
RVM = f"{W}/rvm"    # running VM bundle: m1, m2; saved stopped, run per point
NEW = f"{W}/new"    # target of clone / create; a linked clone of VM in "vmclone"


def qio(path, cmd):
    sh(["qemu-io", "-f", "qcow2", "-c", cmd, path])


def build_img():
    os.makedirs(IMG)
    cairn("img", "create", "-f", "qcow2", f"{IMG}/base.qcow2", "16M")
    qio(f"{IMG}/base.qcow2", "write -P 1 0 6M")
    cairn("img", "create", "-f", "qcow2", "-b", f"{IMG}/base.qcow2", "-F", "qcow2",
          f"{IMG}/mid.qcow2")
    qio(f"{IMG}/mid.qcow2", "write -P 2 2M 4M")
    cairn("img", "create", "-f", "qcow2", "-b", f"{IMG}/mid.qcow2", "-F", "qcow2",
          f"{IMG}/top.qcow2")
    qio(f"{IMG}/top.qcow2", "write -P 3 5M 3M")
    qio(f"{IMG}/top.qcow2", "write -z 1M 512k")
    save_state("img", [IMG])
    REF["img-top"] = view_hash(f"{IMG}/top.qcow2")
    REF["img-mid"] = view_hash(f"{IMG}/mid.qcow2")
    REF["img-base-md5"] = md5_file(f"{IMG}/base.qcow2")


def build_bundle(b, mem_snaps=True, stopped_snap=True):
    cairn("create", b, "--kernel", TESTOS, "--mem", "64M", "--disk-size", "16M",
          "--cmdline", "echo up; shell")
    run_vm(b)
    for i, (n, seed) in enumerate(((1500, 1), (700, 2), (300, 3))):
        if not con(b, f"diskfill {n} {seed}", f"seed={seed} ok"):
            die(f"{b}: diskfill {n} {seed}")
        if i < 2 and mem_snaps:
            if not con(b, f"memfill 4 {seed}", f"memfill mb=4 seed={seed}"):
                die(f"{b}: memfill")
            cairn("snapshot", "create", b, f"m{i + 1}")
    cairn("stop", b)
    if stopped_snap:
        cairn("snapshot", "create", b, "d1")
        # data in the active layer, so that a delete of d1 streams or commits bytes
        qio(doc(b)["active"][0], "write -P 9 1M 2M")


def calls_of(args, env_extra=None):
    """the fault points of cairn ARGS as they are now (a counting run)"""
    logf = f"{SAVE}/mk.log"
    if os.path.exists(logf):
        os.unlink(logf)
    p = sh([CAIRN, *args], env=fault_env(f"{filt()},log={logf}"), ok=None)
    return p, read_log(logf)


# Each state: the directories it is, how it is built (from the states it
# needs), and the bundles in it.
def build_vm():
    build_bundle(VM)
    save_state("vm", [VM])
    errs = restore_all(VM)
    if errs:
        die(f"the starting state does not restore: {errs}")


def build_vmleaf():
    """vm, plus a snapshot "leaf" that nothing sits on (the VM reverted to d1)"""
    load_state("vm", [VM])
    cairn("snapshot", "create", VM, "leaf")
    cairn("snapshot", "revert", VM, "d1")
    save_state("vmleaf", [VM])


def build_vmclone():
    """vm and NEW, a linked clone of its snapshot m2"""
    load_state("vm", [VM])
    shutil.rmtree(NEW, ignore_errors=True)
    cairn("clone", VM, "m2", NEW)
    save_state("vmclone", [VM, NEW])


def build_vmpend():
    """vm with an interrupted delete of d1 pending: its stream into the
    active layer cut short by a full disk (ENOSPC from the 5th write into
    that layer on), which also kept vm.json from forgetting it"""
    load_state("vm", [VM])
    act = doc(VM)["active"][0]
    args = ["snapshot", "delete", VM, "d1"]
    p, calls = calls_of(args)
    if p.returncode:
        die(f"vmpend: the delete fails without a fault: {p.stdout}{p.stderr}")
    writes = [c["n"] for c in calls if c["op"] == "pwrite" and act in c["desc"]]
    if len(writes) < 6:
        die(f"vmpend: the delete writes {len(writes)} times into the active layer: {calls}")
    load_state("vm", [VM])
    spec = f"{filt()},nth={writes[4]},errno=ENOSPC,sticky=1"
    p = sh([CAIRN, *args], env=fault_env(spec), ok=(1,))
    if not doc(VM).get("pending"):
        die(f"vmpend: no pending delete after {p.stderr}")
    save_state("vmpend", [VM])


def build_rvm():
    build_bundle(RVM, stopped_snap=False)
    save_state("rvm", [RVM])


def build_rvmsusp():
    """rvm suspended by stop --save"""
    load_state("rvm", [RVM])
    run_vm(RVM)
    memfill(RVM)
    cairn("stop", RVM, "--save")
    save_state("rvmsusp", [RVM])


def pending_snapshot(args, nth_rename=2):
    """cairn ARGS (a snapshot of the running RVM) whose second vm.json
    update (the outcome, after the VM's part) fails: pending stays"""
    spec = f"path={RVM}/vm.json.tmp,op=rename,nth={nth_rename},errno=EIO"
    p = sh([CAIRN, *args], env=fault_env(spec), ok=(1,))
    if not doc(RVM).get("pending"):
        die(f"{' '.join(args)}: no pending record after {p.stderr}")


def build_rvmpend():
    """rvm after a stop --save whose last vm.json update failed: the VM
    saved itself and quit, the suspend snapshot is pending"""
    load_state("rvm", [RVM])
    run_vm(RVM)
    pending_snapshot(["stop", RVM, "--save"])
    for _ in range(100):
        if not vm_running(RVM):
            break
        time.sleep(0.1)
    save_state("rvmpend", [RVM])


STATES = {  # name: (build, needs, bundles)
    "img": (build_img, [], []),
    "vm": (build_vm, [], [VM]),
    "vmleaf": (build_vmleaf, ["vm"], [VM]),
    "vmclone": (build_vmclone, ["vm"], [VM, NEW]),
    "vmpend": (build_vmpend, ["vm"], [VM]),
    "rvm": (build_rvm, [], [RVM]),
    "rvmsusp": (build_rvmsusp, ["rvm"], [RVM]),
    "rvmpend": (build_rvmpend, ["rvm"], [RVM]),
}
BEFORE = {}  # state -> {bundle: snap_state}


def build_states(names):
    done = []

    def need(n):
        if n in done:
            return
        for d in STATES[n][1]:
            need(d)
        STATES[n][0]()
        done.append(n)
        BEFORE[n] = {b: snap_state(b) for b in STATES[n][2]}
    for n in names:
        need(n)


# ------------------------------------------------------------ variants
class Variant:
    """kind: img | stopped | running (the VM runs when the operation
    starts) | resume (the operation starts the VM).  inject: mgr (the
    command's process and what it forks), vmm (the running VM's process,
    through a ctl file; the command itself runs without the shim), cmdctl
    (the command through a ctl file, disarmed when it returns: `run
    --detach` forks the VM, which must not go on failing).  state: the
    saved state it starts from (STATES).  gone: the snapshot it removes;
    target: the bundle it makes; destroys: the bundle it removes; new_snap:
    the snapshot it makes (a failure must not leave it, unless pending);
    guest(v, rc): problems with the guest after the operation; after(v, rc,
    guest): problems after the repair (the VM still running); setup(v):
    after the VM started; sample: in the CI sample, the errnos to run."""

    def __init__(self, name, kind, args, state, inject="mgr", gone=None, target=None,
                 check=None, writer=None, new_snap=None, destroys=None, guest=None, after=None,
                 setup=None, sample=("EIO", "ENOSPC")):
        self.name, self.kind, self.args, self.inject = name, kind, args, inject
        self.state, self.gone, self.target, self.check = state, gone, target, check
        self.writer, self.new_snap, self.destroys = writer, new_snap, destroys
        self.guest, self.after, self.setup, self.sample = guest, after, setup, sample
        self.repair = args[:2] == ["check", "--repair"]


def img_view_same(v, rc):
    """a failed or successful commit/stream/rebase: the view through the top
    reads the same; the base below what was merged is untouched"""
    errs = []
    if view_hash(f"{IMG}/top.qcow2") != REF["img-top"]:
        errs.append("the content seen through top.qcow2 changed")
    if md5_file(f"{IMG}/base.qcow2") != REF["img-base-md5"] and "commit -b" not in " ".join(v.args):
        errs.append("base.qcow2 changed")
    return errs


def img_create_check(v, rc):
    errs = []
    new = f"{IMG}/new.qcow2"
    if rc == 0:
        if not os.path.exists(new) or view_hash(new) != REF["img-mid"]:
            errs.append("the created overlay does not read as its backing file")
    elif os.path.exists(new) and view_hash(new) != REF["img-mid"]:
        errs.append("a failed create left an incomplete new.qcow2 (creation is documented as "
                    "atomic)")
    return errs


def img_convert_check(v, rc):
    errs = []
    out = f"{IMG}/out.qcow2"
    if rc == 0 and (not os.path.exists(out) or view_hash(out) != REF["img-top"]):
        errs.append("the converted image differs from the source")
    if view_hash(f"{IMG}/top.qcow2") != REF["img-top"]:
        errs.append("the source changed")
    return errs


def snap_names(b):
    return [s["name"] for s in doc(b)["snapshots"].values()]


def revert_save_check(v, rc):
    """revert --save-current of the stopped VM: both or neither (F2)"""
    names = snap_names(VM)
    if rc == 1 and "s2" in names:
        return ["exit 1, yet the --save-current snapshot s2 is there (the save and the "
                "revert are one vm.json update: both or neither)"]
    if rc == 0 and ("s2" not in names or doc(VM)["resume"] is None):
        return ["exit 0, yet s2 is missing or the VM is not at m2"]
    return []


# The running VM's guest: after build_bundle, blocks 0-299 hold seed 3, and
# prepare fills its memory with seed 3; at m1, blocks 0-1499 hold seed 1
# and its memory seed 1.
def guest_state(b):
    """'now' (the state before the operation), 'm1', or an error"""
    m = con_match(b, "memverify", r"memverify (ok|FAILED)")
    if m != "memverify ok":
        return f"the guest's memory does not verify ({m})"
    m = con_match(b, "diskverify 300 3", r"diskverify (ok|FAILED)")
    if m == "diskverify ok":
        return "now"
    m = con_match(b, "diskverify 1500 1", r"diskverify (ok|FAILED)")
    return "m1" if m == "diskverify ok" else f"the guest's disk verifies neither way ({m})"


def guest_now(v, rc):
    g = guest_state(RVM)
    return [] if g == "now" else [f"the running guest after the operation: {g}"]


def guest_revert(v, rc):
    g = guest_state(RVM)
    v.seen = g
    if g not in ("now", "m1"):
        return [f"the running guest after the revert: {g}"]
    if rc == 0 and g != "m1":
        return ["exit 0, yet the guest is not at m1"]
    return []


def after_revert(v, rc):
    """after the repair, vm.json's current is the state the guest is in"""
    d = doc(RVM)
    cur = d["snapshots"].get(d["current"] or "", {}).get("name")
    want = {"m1": ("m1",), "now": ("m2", "s2")}.get(getattr(v, "seen", None), ())
    if want and cur not in want:
        return [f"the guest is at {v.seen}, yet vm.json's current is {cur}"]
    return []


def setup_pending_snapshot(v):
    """the running RVM with snapshot r0 taken but its outcome not recorded"""
    pending_snapshot(["snapshot", "create", RVM, "r0"])


def destroy_check(v, rc):
    b = v.destroys
    if rc == 0 and os.path.exists(b):
        return [f"exit 0, yet {os.path.relpath(b, W)} is still there"]
    return []


def origin_check(v, rc):
    """the origin of a destroyed linked clone names it no more (after its repair)"""
    errs = destroy_check(v, rc)
    if not os.path.exists(f"{NEW}/vm.json") and any(
            c["path"] == NEW for c in doc(VM).get("clones", [])):
        errs.append("the origin still names the destroyed clone after its repair")
    return errs


REF = {}


def variants():
    I = IMG
    # the CI sample: the first wave's variants with both errnos, the new
    # ones that are cheap (no running VM) or cover a process of their own
    # (the VM's revert, the resume) with one errno each, the others not
    R = ("EIO",)
    N = ("ENOSPC",)
    V = [
        Variant("img-create", "img", ["img", "create", "-f", "qcow2", "-b", f"{I}/mid.qcow2",
                                      "-F", "qcow2", f"{I}/new.qcow2"], "img",
                check=img_create_check),
        Variant("img-commit", "img", ["img", "commit", f"{I}/top.qcow2"], "img",
                check=img_view_same),
        Variant("img-commit-base", "img", ["img", "commit", "-b", f"{I}/base.qcow2",
                                           f"{I}/top.qcow2"], "img", check=img_view_same),
        Variant("img-stream", "img", ["img", "stream", "-b", f"{I}/base.qcow2", f"{I}/top.qcow2"],
                "img", check=img_view_same),
        Variant("img-rebase", "img", ["img", "rebase", "-b", f"{I}/base.qcow2", "-F", "qcow2",
                                      f"{I}/top.qcow2"], "img", check=img_view_same),
        Variant("img-convert", "img", ["img", "convert", "-O", "qcow2", f"{I}/top.qcow2",
                                       f"{I}/out.qcow2"], "img", check=img_convert_check),
        Variant("snap-create", "stopped", ["snapshot", "create", VM, "s1"], "vm", new_snap="s1"),
        Variant("revert-disk", "stopped", ["snapshot", "revert", VM, "d1"], "vm"),
        Variant("revert-mem", "stopped", ["snapshot", "revert", VM, "m1"], "vm"),
        Variant("revert-save", "stopped", ["snapshot", "revert", VM, "m2", "--save-current", "s2"],
                "vm", new_snap="s2", check=revert_save_check),
        Variant("delete-inner", "stopped", ["snapshot", "delete", VM, "m2"], "vm", gone="m2"),
        Variant("delete-current", "stopped", ["snapshot", "delete", VM, "d1"], "vm", gone="d1"),
        Variant("delete-root", "stopped", ["snapshot", "delete", VM, "m1"], "vm", gone="m1"),
        Variant("delete-leaf", "stopped", ["snapshot", "delete", VM, "leaf"], "vmleaf",
                gone="leaf", sample=N),
        Variant("clone-linked", "stopped", ["clone", VM, "m2", NEW], "vm", target=NEW),
        Variant("clone-full", "stopped", ["clone", VM, "m2", NEW, "--full"], "vm", target=NEW),
        Variant("create-empty", "stopped", ["create", NEW, "--kernel", TESTOS, "--disk-size", "8M"],
                "vm", target=NEW),
        Variant("create-import", "stopped", ["create", NEW, "--kernel", TESTOS, "--disk",
                                             f"{I}/top.qcow2"], "vm", target=NEW),
        Variant("destroy", "stopped", ["destroy", VM], "vm", destroys=VM, check=destroy_check,
                sample=R),
        Variant("destroy-clone", "stopped", ["destroy", NEW], "vmclone", destroys=NEW,
                check=origin_check, sample=N),
        Variant("repair-delete", "stopped", ["check", "--repair", VM], "vmpend", gone="d1",
                sample=N),
        Variant("repair-adopt", "stopped", ["check", "--repair", RVM], "rvmpend", sample=R),
        Variant("rsnap-mgr", "running", ["snapshot", "create", RVM, "r1"], "rvm", new_snap="r1"),
        Variant("rsnap-vmm", "running", ["snapshot", "create", RVM, "r1"], "rvm", inject="vmm",
                new_snap="r1"),
        Variant("rsnap-fork-vmm", "running", ["snapshot", "create", RVM, "r1"], "rvm",
                inject="vmm", writer="fork", new_snap="r1"),
        Variant("stop-save-mgr", "running", ["stop", RVM, "--save"], "rvm", new_snap="suspend-"),
        Variant("stop-save-vmm", "running", ["stop", RVM, "--save"], "rvm", inject="vmm",
                new_snap="suspend-"),
        Variant("rrevert-mgr", "running", ["snapshot", "revert", RVM, "m1"], "rvm",
                guest=guest_revert, after=after_revert, sample=()),
        Variant("rrevert-vmm", "running", ["snapshot", "revert", RVM, "m1"], "rvm", inject="vmm",
                guest=guest_revert, after=after_revert, sample=R),
        Variant("rrevert-save-mgr", "running",
                ["snapshot", "revert", RVM, "m1", "--save-current", "s2"], "rvm",
                guest=guest_revert, after=after_revert, new_snap="s2", sample=()),
        Variant("rdelete-mgr", "running", ["snapshot", "delete", RVM, "m1"], "rvm", gone="m1",
                sample=()),
        Variant("repair-run", "running", ["check", "--repair", RVM], "rvm",
                setup=setup_pending_snapshot, sample=()),
        Variant("resume", "resume", ["run", RVM, "--detach"], "rvmsusp", inject="cmdctl",
                sample=N),
    ]
    if A.only:
        pre = A.only.split(",")
        V = [v for v in V if any(v.name.startswith(p) for p in pre)]
    if A.sample:
        V = [v for v in V if v.sample]
    return V


# ------------------------------------------------------- running a point
def prepare(v):
    """the variant's starting state; for a running VM, the VM up (with the
    shim armed through ctl for inject=vmm); returns the ctl or None"""
    kill_vm(RVM)
    kill_vm(VM)
    shutil.rmtree(NEW, ignore_errors=True)
    for f in ("new.qcow2", "out.qcow2"):
        if os.path.exists(f"{IMG}/{f}"):
            os.unlink(f"{IMG}/{f}")
    dirs = {"img": [IMG]}.get(v.state) or STATES[v.state][2]
    load_state(v.state, dirs)
    if v.name == "create-import":
        load_state("img", [IMG])
    ctl = None
    if v.inject in ("vmm", "cmdctl"):
        ctl = Ctl(f"{SAVE}/ctl")
    if v.kind != "running":
        return ctl
    env = dict(os.environ)
    if v.writer:
        env["CAIRN_SNAPSHOT_WRITER"] = v.writer
    if v.inject == "vmm":
        env.update(LD_PRELOAD=PRELOAD, CAIRN_FAULT=f"ctl:{ctl.path}")
    run_vm(RVM, env)
    memfill(RVM)
    if v.setup:
        v.setup(v)
    return ctl


def memfill(b):
    """a pattern in the freshly booted guest's memory, which memverify checks
    (the VM of the "rvm" state boots afresh; at m1 its memory has seed 1)"""
    if not con(b, "memfill 4 3", "memfill mb=4 seed=3"):
        die(f"{b}: memfill")


def bundles_of(v):
    return [b for b in STATES.get(v.state, (0, 0, []))[2] if b != v.destroys]


def run_op(v, spec, ctl):
    """the operation with spec in force; (returncode, stdout, stderr)"""
    env = None
    if v.inject == "vmm":
        ctl.arm(spec)
    elif v.inject == "cmdctl":
        ctl.arm(spec)
        env = fault_env(f"ctl:{ctl.path}")
    else:
        env = fault_env(spec)
    try:
        p = subprocess.run([CAIRN, *v.args], capture_output=True, text=True, env=env, timeout=120)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = "timeout", str(e.stdout), str(e.stderr)
    if ctl:
        # a VM's memory writer may still be at work after the reply
        time.sleep(0.2 if v.inject == "vmm" else 0)
        ctl.disarm()
    return rc, out, err


def count_points(v):
    ctl = prepare(v)
    logf = f"{SAVE}/count.log"
    if os.path.exists(logf):
        os.unlink(logf)
    rc, out, err = run_op(v, f"{filt()},log={logf}", ctl)
    if rc != 0:
        die(f"{v.name}: the operation fails without a fault: {rc} {out}{err}")
    calls = sorted(read_log(logf), key=lambda c: c["n"])
    kill_vm(RVM)
    return calls


def name_forms(path):
    """the names by which a message may name PATH: itself, without a
    temporary suffix (.tmp, .tmp-XXXXXX: the file it was to become), and a
    snapshot's files by their committed directory"""
    forms = {path, re.sub(r"\.tmp(-[A-Za-z0-9]{6})?$", "", path)}
    forms |= {re.sub(r"\.tmp-[A-Za-z0-9]{6}(/|$)", r"\1", f) for f in list(forms)}
    return {f for f in forms if f}


def message_problems(v, text, e, failed):
    """exit 1: the message says the injected errno's text and names a file
    the fault hit (F5: the original errno kept, the problem said once)"""
    probs = []
    want = os.strerror(errno_of(e))
    if want not in text:
        probs.append(f"the message does not say {want!r}: {text.strip()[-300:]!r}")
    dup = re.search(r"(: [A-Z][a-z][^:;\n]*?)\1(\n|$)", text)
    if dup:
        probs.append(f"the message repeats {dup.group(1)!r}: {text.strip()[-300:]!r}")
    names = set()
    for c in failed:
        for path in c["paths"]:
            names |= name_forms(path)
    if failed and not any(n in text for n in names):
        probs.append(f"the message names none of the files the fault hit "
                     f"({', '.join(sorted({sig(c['desc']) for c in failed})[:3])}): "
                     f"{text.strip()[-300:]!r}")
    return probs


def errno_of(e):
    return {"EIO": 5, "ENOSPC": 28}[e]


def verify(v, rc, out, err, e, failed):
    """the checks after one point; returns (problems, notes)"""
    probs, notes = [], []
    vm_quit = False
    text = out + err if v.repair else err
    if rc not in (0, 1):
        probs.append(f"exit status {rc} (expected 0 or 1)")
    elif rc == 1:
        probs += message_problems(v, text, e, failed)
    bundles = bundles_of(v)
    before = BEFORE[v.state]
    # the VM: still running after a failed operation (running after a
    # successful resume), its guest intact
    running = False
    if v.kind in ("running", "resume"):
        stopping = v.args[0] == "stop"
        running = vm_running(RVM)
        if v.kind == "resume":
            if running != (rc == 0):
                probs.append(f"exit {rc}, and the VM is {'' if running else 'not '}running")
        elif running and (not stopping or rc == 1):
            pass
        elif not running and stopping and rc == 1:
            vm_quit = True  # acceptable if the repair makes its snapshot the resume state
        elif not running and not (stopping and rc == 0):
            probs.append("the VM is not running after the operation failed" if rc else
                         "the VM is not running after the operation")
        if running:
            probs += (v.guest or guest_now)(v, rc)
    # images as the fault left them
    for path in images(v):
        c, text_ = qcheck(path)
        if c == 3:
            notes.append(f"leaks before repair: {os.path.relpath(path, W)}")
        elif c != 0:
            probs.append(f"qemu-img check {os.path.relpath(path, W)}: exit {c}: {text_[-300:]}")
    # repair converges (with the VM still running, if it runs)
    probs += repair_all(v, rc, bundles, notes)
    if running and v.after:
        probs += v.after(v, rc)
    if running:
        # the repaired bundle stops, and checks clean stopped too
        p = cairn("stop", RVM, ok=None, timeout=90)
        if p.returncode:
            probs.append(f"stop after the repair: exit {p.returncode}: "
                         f"{(p.stdout + p.stderr).strip()[-300:]}")
            kill_vm(RVM)
        else:
            q = cairn("check", RVM, ok=None)
            if q.returncode:
                probs.append(f"check after the repair and a stop: exit {q.returncode}: "
                             f"{(q.stdout + q.stderr).strip()[-400:]}")
    else:
        kill_vm(RVM)
    for path in images(v):
        if v.kind == "img" and qcheck(path)[0] == 3:
            sh([CAIRN, "img", "check", "-r", "leaks", path], ok=None)
        c, text_ = qcheck(path)
        if c != 0:
            probs.append(f"after repair: qemu-img check {os.path.relpath(path, W)}: exit {c}: "
                         f"{text_[-200:]}")
    # committed snapshots are all there, unchanged
    for b in bundles:
        if not os.path.exists(f"{b}/vm.json"):
            probs.append(f"{b}/vm.json is gone")
            continue
        try:
            after = snap_state(b)
        except (subprocess.SubprocessError, OSError, SystemExit) as ex:
            probs.append(f"cannot read the snapshots of {b}: {ex}")
            continue
        for i, (name, disk, mem) in before[b].items():
            if i not in after:
                if name != v.gone:
                    probs.append(f"committed snapshot {name} lost")
                continue
            if after[i][1] != disk:
                probs.append(f"snapshot {name}: disk content changed")
            if after[i][2] != mem:
                probs.append(f"snapshot {name}: memory files changed ({after[i][2]})")
        if v.gone and rc == 0 and v.gone in [n for n, _, _ in after.values()]:
            probs.append(f"{v.gone} still there after its delete succeeded")
        # snapshots made by the operation (or adopted by the repair) must restore
        for i in set(after) - set(before[b]):
            name = after[i][0]
            if after[i][2]:
                ex = restore_snap(b, i)
                if ex:
                    probs.append(f"new snapshot {name}: {ex}")
                else:
                    notes.append(f"new whole-machine snapshot {name} restores")
            elif v.new_snap and name.startswith(v.new_snap) and v.kind == "running":
                notes.append(f"new snapshot {name} kept as disk-only")
    # exit 1 must mean "not done": a snapshot the operation was to make
    # must not be there after a failure (the repair settles an interrupted
    # one; an operation that reports failure should not commit)
    if rc == 1 and v.new_snap and bundles and os.path.exists(f"{bundles[0]}/vm.json"):
        made = [s["name"] for s in doc(bundles[0])["snapshots"].values()
                if s["name"].startswith(v.new_snap)]
        made = [n for n in made if n not in [x for x, _, _ in before[bundles[0]].values()]]
        settled = any("adopted" in n or "disk-only" in n for n in notes if n.startswith("repaired"))
        kept = made and v.name == "rrevert-save-mgr" and \
            f'saved as snapshot "{made[0]}"' in text and "stays" in text
        if made and settled:
            # recorded as pending before the VM was asked; docs/manager.md:
            # check --repair settles it from what exists (by design)
            notes.append(f"exit 1; the repair adopted {made[0]} (pending, by design)")
        elif kept:
            # a running VM's revert --save-current: the VM saved its state
            # and goes on from it when the revert fails (docs/manager.md)
            notes.append(f"exit 1; {made[0]} stays, as the message says")
        elif made:
            probs.append(f"exit 1, yet snapshot {made[0]} was committed (no repair needed)")
    if vm_quit:
        # stop --save failed after the VM saved itself and quit: the repair
        # must have made that snapshot the one the next run resumes
        d = doc(RVM)
        if d.get("resume") and d["resume"] not in before[RVM]:
            notes.append("the VM had saved itself and quit; after the repair the next run "
                         "resumes that snapshot")
        else:
            probs.append("stop --save failed, the VM is gone, and nothing is to be resumed")
    if v.check:
        probs += v.check(v, rc)
    return probs, notes


def repair_all(v, rc, bundles, notes):
    """check --repair of each bundle the point left, then check: clean"""
    probs = []
    extra = [d for d in (v.target, v.destroys) if d and os.path.isdir(d)]
    for b in bundles + extra:
        mine = b in bundles  # must repair; the others may be half-made or half-gone
        p = cairn("check", "--repair", b, ok=None)
        if p.returncode != 0 and mine:
            probs.append(f"check --repair {os.path.relpath(b, W)} exited {p.returncode}: "
                         f"{(p.stdout + p.stderr).strip()[-400:]}")
        if "repaired" in p.stdout:
            notes.append(f"repaired: {'; '.join(l for l in p.stdout.splitlines() if 'repaired' in l)[:300]}")
        if not mine:
            if os.path.exists(f"{b}/vm.json"):
                q = cairn("check", b, ok=None)
                if q.returncode:
                    probs.append(f"check of {os.path.relpath(b, W)} after --repair: "
                                 f"{(q.stdout + q.stderr).strip()[-300:]}")
                if rc != 0 and b == v.target:
                    probs.append("a failed clone/create left a bundle behind")
            elif os.path.exists(b):
                # an interrupted create or destroy: destroy removes the rest
                q = cairn("destroy", b, ok=None)
                if q.returncode or os.path.exists(b):
                    probs.append(f"{os.path.relpath(b, W)}: left without vm.json, and "
                                 f"destroy does not remove it: {(q.stdout + q.stderr).strip()}")
                else:
                    notes.append(f"{os.path.relpath(b, W)} was left without vm.json; "
                                 f"destroy removed it")
            continue
        q = cairn("check", b, ok=None)
        if q.returncode:
            probs.append(f"check after check --repair of {os.path.relpath(b, W)}: exit "
                         f"{q.returncode}: {(q.stdout + q.stderr).strip()[-400:]}")
    return probs


def images(v):
    if v.kind == "img":
        names = ["base.qcow2", "mid.qcow2", "top.qcow2", "new.qcow2", "out.qcow2"]
        return [f"{IMG}/{n}" for n in names if os.path.exists(f"{IMG}/{n}")]
    res = []
    for b in STATES[v.state][2] + ([NEW] if v.target else []):
        if b == v.destroys and not os.path.exists(f"{b}/vm.json"):
            continue  # destroyed (its remains are removed by destroy or check --repair)
        if os.path.isdir(f"{b}/disks"):
            res += sorted(f"{b}/disks/{f}" for f in os.listdir(f"{b}/disks")
                          if f.endswith(".qcow2"))
    return res


def retry(v):
    """the operation works again without a fault (after the repair)"""
    if v.kind == "running" or v.repair:
        return None
    if v.kind == "resume":
        if doc(RVM).get("resume") is None:
            return None  # resumed (exit 0, stopped by verify)
        p = cairn("run", RVM, "--detach", ok=None)
        if p.returncode:
            return f"without the fault the resume fails now: {(p.stdout + p.stderr).strip()[-300:]}"
        g = guest_state(RVM)
        kill_vm(RVM)
        return None if g == "now" else f"resumed without the fault, the guest: {g}"
    if v.destroys:
        if os.path.exists(v.destroys):
            p = cairn("destroy", v.destroys, ok=None)
            if p.returncode or os.path.exists(v.destroys):
                return f"without the fault destroy fails now: {(p.stdout + p.stderr).strip()}"
        return None
    b = VM
    if v.gone and v.gone not in snap_names(b):
        return None  # the repair finished the delete
    if v.target and os.path.exists(NEW):
        p = cairn("destroy", NEW, ok=None)
        if p.returncode:
            return f"destroy of the left-over {NEW} failed: {(p.stdout + p.stderr).strip()}"
    if v.kind == "stopped" and v.args[:2] == ["snapshot", "create"] and \
            v.args[-1] in snap_names(b):
        return None  # the snapshot was made
    if v.name == "revert-save" and "s2" in snap_names(b):
        return None
    for f in ("new.qcow2", "out.qcow2"):
        if os.path.exists(f"{IMG}/{f}") and v.kind == "img":
            os.unlink(f"{IMG}/{f}")
    p = subprocess.run([CAIRN, *v.args], capture_output=True, text=True)
    if p.returncode:
        return f"without the fault it fails now: {(p.stdout + p.stderr).strip()[-300:]}"
    if v.target:
        cairn("destroy", NEW, ok=None)
    return None


def known(v, e, k, desc):
    s = sig(desc)
    for (kv, ke, ks, kn), fid in KNOWN.items():
        if kv in (v.name, "*") and ke in (e, "*") and ks in ("*", s) and kn in (None, k):
            return fid
    return None


# ------------------------------------------------------------ self-test
SELFTEST = r"""
import os, sys, threading
path, nthreads, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
fails = []
def work(t):
    for i in range(per):
        try:
            os.pwrite(fd, b"x", t * per + i)
        except OSError as e:
            fails.append(e.errno)
ts = [threading.Thread(target=work, args=(t,)) for t in range(nthreads)]
for t in ts: t.start()
for t in ts: t.join()
if os.fork() == 0:  # a forked child shares the count
    try:
        os.fsync(fd)
    except OSError as e:
        os._exit(e.errno)
    os._exit(0)
print(len(fails), fails[:1], os.waitstatus_to_exitcode(os.wait()[1]))
"""


def selftest():
    """the shim counts every call of 8 threads once and fails exactly the
    Nth; a forked child goes on with the same count; a ctl file re-arms"""
    f, logf = f"{W}/selftest.bin", f"{SAVE}/selftest.log"
    spec = f"op=pwrite+fsync,path={f},nth=777,errno=ENOSPC,log={logf}"
    p = sh([sys.executable, "-c", SELFTEST, f, "8", "200"], env=fault_env(spec, leaks=False))
    calls = read_log(logf)
    nfail, first, child = p.stdout.split(" ", 1)[0], p.stdout.split(" ", 1)[1], p.stdout.split()[-1]
    if nfail != "1" or "28" not in first or len(calls) != 1601 or child != "0" or \
            sorted(c["n"] for c in calls) != list(range(1, 1602)) or \
            [c["n"] for c in calls if c["fail"]] != [777]:
        die(f"shim self-test: {p.stdout.strip()} with {len(calls)} calls logged")
    spec = f"op=pwrite+fsync,path={f},nth=1601,errno=EIO"
    p = sh([sys.executable, "-c", SELFTEST, f, "8", "200"], env=fault_env(spec, leaks=False))
    if p.stdout.split()[-1] != "5":
        die(f"shim self-test: the forked child's fsync (call 1601) did not fail: {p.stdout}")
    ctl = Ctl(f"{SAVE}/selftest.ctl")
    env = fault_env(f"ctl:{ctl.path}", leaks=False)
    q = subprocess.Popen([sys.executable, "-c", "import os,sys,time\n"
                          f"fd=os.open('{f}',os.O_RDWR)\n"
                          "for l in sys.stdin:\n"
                          "  try: os.pwrite(fd,b'y',0); print('ok',flush=True)\n"
                          "  except OSError as e: print(e.errno,flush=True)\n"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    res = []
    for spec in ("", f"op=pwrite,path={f},nth=2,errno=EIO", None, ""):
        if spec is not None:
            ctl.arm(spec)
        for _ in range(2):
            q.stdin.write("\n")
            q.stdin.flush()
            res.append(q.stdout.readline().strip())
    q.stdin.close()
    q.wait()
    if res != ["ok", "ok", "ok", "5", "ok", "ok", "ok", "ok"]:
        die(f"shim self-test: ctl re-arming: {res}")
    log("shim self-test: 8 threads x 200 pwrites counted once each, exactly the 777th failed, "
        "a forked child counts on, a ctl file arms and disarms a running process")


# ------------------------------------------------------------ main
def main():
    log(f"seed {A.seed}; work directory {W}; LD_PRELOAD={PRELOAD}"
        + (" (sanitized binary: its runtime is preloaded first)" if SANITIZED else ""))
    os.makedirs(SAVE, exist_ok=True)
    selftest()
    V = variants()
    states = {v.state for v in V} | ({"img"} if any(v.name == "create-import" for v in V) else set())
    build_states(sorted(states, key=list(STATES).index))
    log("starting states built")
    errnos = A.errnos.split(",")
    results = []
    per_variant = {}
    last_of_state = {v.state: v.name for v in V if v.kind != "img" and bundles_of(v)}
    for v in V:
        calls = count_points(v)
        if not calls:
            die(f"{v.name}: no fault points counted: the shim intercepted nothing")
        n = len(calls)
        byn = {c["n"]: c for c in calls}
        per_variant[v.name] = {"points": n, "ops": {}}
        for c in calls:
            per_variant[v.name]["ops"][c["op"]] = per_variant[v.name]["ops"].get(c["op"], 0) + 1
        log(f"{v.name}: {n} fault points {per_variant[v.name]['ops']}")
        if A.verbose:
            for c in calls:
                log(f"    {c['n']:4d} {c['desc']}")
        for e in errnos:
            if A.sample and e not in v.sample:
                continue
            # ENOSPC only where a full disk can say it (not for unlink,
            # rmdir, chmod, removexattr, an open that creates nothing)
            pts = [c["n"] for c in calls if e != "ENOSPC" or c["allocates"]]
            per_variant[v.name].setdefault("skipped", {})[e] = n - len(pts)
            if A.points is not None and A.points < len(pts):
                pts = sorted(rng.sample(pts, A.points))
            if A.nth:
                pts = [int(x) for x in A.nth.split(",")]
            for k in pts:
                results.append(point(v, e, k, byn[k]["desc"] if k in byn else "?"))
        # the whole-machine snapshots restore after the series (in the
        # sample once per starting state, after its last variant)
        if v.kind != "img" and bundles_of(v) and (not A.sample or last_of_state[v.state] == v.name):
            b = bundles_of(v)[0]
            errs = restore_all(b)
            if errs:
                results.append({"variant": v.name, "errno": "-", "nth": 0, "call": "restore_all",
                                "outcome": "BUG", "problems": errs, "notes": []})
                log(f"BUG {v.name}: at the end the whole-machine snapshots do not restore: {errs}")
    report(results, per_variant)


def point(v, e, k, counted):
    ctl = prepare(v)
    logf = f"{SAVE}/point.log"
    if os.path.exists(logf):
        os.unlink(logf)
    spec = f"{filt()},nth={k},errno={e},log={logf}" + (",sticky=1" if e == "ENOSPC" else "")
    t = time.time()
    rc, out, err = run_op(v, spec, ctl)
    calls = read_log(logf)
    failed = [c for c in calls if c["fail"]]
    desc = failed[0]["desc"].replace(" FAIL " + e, "") if failed else counted
    probs, notes = verify(v, rc, out, err, e, failed)
    fid = known(v, e, k, desc)
    if not failed:
        outcome = "not-reached"
    elif probs:
        outcome = "XFAIL" if fid else "BUG"
    elif fid:
        outcome = "XPASS"
    else:
        outcome = "clean-fail" if rc == 1 else "ok"
    if not probs:
        r = retry(v)
        if r:
            probs.append(r)
            outcome = "XFAIL" if fid else "BUG"
    res = {"variant": v.name, "errno": e, "nth": k, "call": sig(desc), "rc": rc,
           "message": (out + err).strip()[-500:], "outcome": outcome, "problems": probs,
           "notes": notes, "finding": fid, "secs": round(time.time() - t, 2)}
    line = f"{outcome:11s} {v.name} {e} #{k} [{sig(desc)}] exit {rc}"
    if outcome in ("BUG", "XFAIL", "XPASS") or A.verbose:
        line += f": {err.strip()[-200:]!r}" + "".join(f"\n      PROBLEM: {p}" for p in probs)
        line += "".join(f"\n      note: {n}" for n in notes)
        if fid:
            line += f"\n      known finding {fid}"
        line += (f"\n      reproduce: CAIRN_FAULT='{spec}' LD_PRELOAD={PRELOAD} "
                 f"cairn {' '.join(v.args)}")
    log(line)
    return res


def report(results, per_variant):
    tally = {}
    for r in results:
        tally[r["outcome"]] = tally.get(r["outcome"], 0) + 1
    leaks = sorted({(r["variant"], n.split(": ")[1]) for r in results for n in r["notes"]
                    if n.startswith("leaks before repair")})
    print("\n== fault points per operation (one counting run each)")
    for name, pv in per_variant.items():
        na = pv.get("skipped", {}).get("ENOSPC", 0)
        print(f"  {name:16s} {pv['points']:4d}  {pv['ops']}" +
              (f"  ({na} need no space: EIO only)" if na else ""))
    print("\n== outcomes per operation")
    for name in per_variant:
        rs = [r for r in results if r["variant"] == name]
        t = {}
        for r in rs:
            t[r["outcome"]] = t.get(r["outcome"], 0) + 1
        print(f"  {name:16s} {len(rs):4d} runs  {t}")
    injected = sum(1 for r in results if r["outcome"] != "not-reached" and r["nth"])
    print(f"\n== {len(results)} runs, {injected} faults injected, "
          f"{sum(pv['points'] for pv in per_variant.values())} points counted; outcomes: {tally}")
    if leaks:
        print("leaks before the repair (allowed: docs/qcow2.md, 'qemu-img check finds at most "
              "leaked clusters'):")
        for v, f in leaks:
            print(f"  {v}: {f}")
    bugs = [r for r in results if r["outcome"] == "BUG"]
    xf = [r for r in results if r["outcome"] in ("XFAIL", "XPASS")]
    if xf:
        print(f"\n{len(xf)} known failures (see tests/faults/FINDINGS.md):")
        for r in xf:
            print(f"  {r['outcome']} {r['finding']}: {r['variant']} {r['errno']} #{r['nth']} [{r['call']}]")
    if A.json:
        with open(A.json, "w") as f:
            json.dump({"seed": A.seed, "points": per_variant, "results": results}, f, indent=1)
    print(f"\ntook {time.time() - T0:.0f}s")
    if bugs:
        print(f"\nFAIL: {len(bugs)} BUG outcome(s) not in the known list:")
        for r in bugs:
            print(f"  {r['variant']} {r['errno']} #{r['nth']} [{r['call']}]: {r['problems']}")
        sys.exit(1)
    print("PASS: every injected fault was handled" +
          (f" (apart from {len(xf)} known failures, listed above)" if xf else ""))


try:
    main()
finally:
    kill_vm(RVM)
    kill_vm(VM)
    kill_vm(NEW)
    if not A.keep:
        shutil.rmtree(W, ignore_errors=True)
