"""kill -9 campaign over snapshot create / revert / delete / clone / create
of a stopped VM (kill_running.py does it with the VM running).

Each iteration starts one operation on a stopped VM bundle, kills it with
SIGKILL after a random delay, then `cairn check --repair` and `cairn check`
must succeed, every snapshot committed before the operation must still be
there (except the one a delete was asked to remove) with its disk content
unchanged (checksum through its layer chain), and every whole-machine
snapshot must restore (checked every RESTORE_EVERY kills and at the end).
An operation that finishes before its kill must succeed, or fail cleanly
(exit 1 with a "cairn: ..." message, no crash or sanitizer report); clean
failures are listed at the end, anything else fails the campaign.
"""
import hashlib, json, os, random, shutil, signal, subprocess, sys, time

CAIRN, TMP, SECS, TARGET = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
B = f"{TMP}/vm"
PROTECTED = {"m1", "m2", "d1"}  # d1: a disk-only snapshot always exists
RESTORE_EVERY = 40
seed = int(os.environ.get("SEED", time.time_ns() % 1000000))
rng = random.Random(seed)
print("seed", seed)


def run(*args, ok=(0,)):
    p = subprocess.run([CAIRN, *args], capture_output=True, text=True)
    if p.returncode not in ok:
        sys.exit(f"FAIL: cairn {' '.join(args)} exited {p.returncode}: {p.stdout}{p.stderr}")
    return p


def doc():
    with open(f"{B}/vm.json") as f:
        d = json.load(f)
    # vm.json names the files inside the bundle relative to it
    if d.get("active"):
        d["active"] = [os.path.join(B, p) for p in d["active"]]
    for s in d["snapshots"].values():
        s["layers"] = [os.path.join(B, p) for p in s["layers"]]
    return d


def layer_hash(path):
    raw = f"{TMP}/h.raw"
    subprocess.run(["qemu-img", "convert", "-U", "-O", "raw", path, raw], check=True)
    h = hashlib.md5()
    with open(raw, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    os.unlink(raw)
    return h.hexdigest()


hashes, sigs = {}, {}


def chain_sig(d, sid):
    """Identity of every file a snapshot's content is read from: content
    cannot change unless one of them does (then it is hashed again)."""
    sig = []
    while sid:
        s = d["snapshots"][sid]
        st = os.stat(s["layers"][0])
        sig.append((s["layers"][0], st.st_ino, st.st_mtime_ns, st.st_size))
        sid = s["parent"]
    return tuple(sig)


def verify(before, allowed_gone, what):
    d = doc()
    snaps = d["snapshots"]
    lost = set(before) - set(snaps) - allowed_gone
    if lost:
        sys.exit(f"FAIL: after killing {what}: committed snapshot(s) lost: {lost}")
    for i, s in snaps.items():
        sig = chain_sig(d, i)
        if sigs.get(i) == sig:
            continue
        sigs[i] = sig
        h = layer_hash(s["layers"][0])
        if hashes.setdefault(i, h) != h:
            sys.exit(f"FAIL: after killing {what}: snapshot {s['name']} changed content")


def restore_all():
    n = 0
    for i, s in doc()["snapshots"].items():
        if not s["memory"]:
            continue
        rd, sock = f"{TMP}/rd", f"{TMP}/rd.sock"
        os.makedirs(rd, exist_ok=True)
        if os.path.exists(sock):
            os.unlink(sock)
        p = subprocess.Popen([CAIRN, "run", "--restore", f"{B}/snapshots/{i}", "--control", sock,
                              "--disk-dir", rd], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(1500):  # 30 s: a verified restore on a loaded machine
            if os.path.exists(sock) or p.poll() is not None:
                break
            time.sleep(0.02)
        q = subprocess.run([CAIRN, "control", sock, '{"cmd":"quit"}'], capture_output=True)
        rc = p.wait(timeout=30) if q.returncode == 0 else None
        if q.returncode or rc:
            p.kill()
            sys.exit(f"FAIL: snapshot {s['name']} does not restore: exit {rc}, quit said "
                     f"{q.stdout}{q.stderr}, the VMM said {p.stderr.read()}")
        shutil.rmtree(rd)
        n += 1
    return n


OP_ERR = f"{TMP}/op.err"
clean_failures = {}


def start_op(args):
    with open(OP_ERR, "w") as err:
        return subprocess.Popen([CAIRN, *args], stdout=subprocess.DEVNULL, stderr=err)


def finished(p, op, args):
    """P ended by itself: it must have succeeded or failed cleanly."""
    with open(OP_ERR) as f:
        err = f.read()
    cmd = f"cairn {' '.join(args)}"
    if any(s in err for s in ("Sanitizer", "runtime error", "Assertion")):
        sys.exit(f"FAIL: {cmd} (finished before the kill): sanitizer report:\n{err[-3000:]}")
    if p.returncode == 0:
        return
    if p.returncode == 1 and any(l.startswith("cairn: ") for l in err.splitlines()):
        clean_failures.setdefault(op, []).append(err.strip().splitlines()[-1][:200])
        return
    sys.exit(f"FAIL: {cmd} (finished before the kill) exited {p.returncode}: {err[-3000:]}")


def new_name():
    return "s%06x" % rng.getrandbits(24)


def pick_op(d):
    names = [s["name"] for s in d["snapshots"].values()]
    deletable = [n for n in names if n not in PROTECTED]
    ops = ["snapshot"] * 3 + ["revert"] * 3 + ["clone"] * 2 + ["create"]
    ops += ["delete"] * (6 if len(names) > 7 else 3 if deletable else 0)
    op = rng.choice(ops)
    disk_only = [s["name"] for s in d["snapshots"].values() if not s["memory"]]
    if op == "snapshot" and len(names) > 9:
        op = "delete" if deletable else "revert"
    if op == "snapshot" and d.get("resume") and disk_only:
        op = "revert"  # a suspended VM's state is a snapshot already
    if op == "snapshot":
        return op, ["snapshot", "create", B, new_name()], None, None
    if op == "revert":
        n = rng.choice(disk_only if disk_only and rng.random() < 0.85 else names)
        return op, ["snapshot", "revert", B, n], None, None
    if op == "delete":
        n = rng.choice(deletable)
        sid = [i for i, s in d["snapshots"].items() if s["name"] == n][0]
        return op, ["snapshot", "delete", B, n], sid, None
    target = f"{TMP}/c{rng.getrandbits(24):06x}"
    if op == "clone":
        args = ["clone", B, rng.choice(names), target] + (["--full"] if rng.random() < 0.4 else [])
        return op, args, None, target
    return op, ["create", target, "--kernel", os.environ["TESTOS"], "--disk-size", "8M"], None, target


def write_some():
    """New data in the active layer, so that layers differ and merges move bytes."""
    d = doc()
    if not d.get("active"):
        return
    off = rng.randrange(0, 13) << 20
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -P {rng.randrange(1, 255)} {off} 3M",
                    d["active"][0]], check=True, capture_output=True)


kills = done = iters = 0
stats, took, repairs = {}, {}, {}
start = time.time()
hashes_init = verify({}, set(), "nothing")
while kills < TARGET and time.time() - start < SECS:
    iters += 1
    write_some()
    d = doc()
    op, args, gone, target = pick_op(d)
    before = set(d["snapshots"])
    t0 = time.time()
    p = start_op(args)
    # kill somewhere within the operation's usual run time (learnt as we go)
    time.sleep(rng.uniform(0, 1.2 * took.get(op, 0.05)))
    if p.poll() is None:
        p.send_signal(signal.SIGKILL)
        p.wait()
        kills += 1
        stats[op] = stats.get(op, 0) + 1
    else:
        done += 1
        p.wait()
        finished(p, op, args)
        took[op] = 0.7 * took.get(op, 0.05) + 0.3 * (time.time() - t0)
    if target and os.path.isdir(target):
        # an interrupted clone or create: repaired or completed, then removed
        run("check", "--repair", target, ok=(0, 1))
        if os.path.exists(f"{target}/vm.json"):
            run("check", target)
            run("destroy", target)
        elif os.path.exists(target):
            run("destroy", target)
    out = run("check", "--repair", B).stdout
    for line in out.splitlines():
        if line.startswith("repaired: "):
            key = "finished a delete" if "interrupted delete" in line else \
                "removed a leftover" if "removed" in line else line.split()[1]
            repairs[key] = repairs.get(key, 0) + 1
    run("check", B)
    verify(before, {gone} if gone else set(), f"{op} ({' '.join(args[:2])})")
    if kills and kills % RESTORE_EVERY == 0 and p.returncode == -9:
        restore_all()

n = restore_all()
names = sorted(s["name"] for s in doc()["snapshots"].values())
print("usual run times (ms):", {k: round(v * 1000) for k, v in took.items()})
print("check --repair did:", repairs)
print(f"kill campaign: {kills} kill points ({stats}), {done} operations finished first, "
      f"{iters} iterations in {time.time() - start:.0f}s; {len(names)} snapshots at the end, "
      f"{n} whole-machine snapshots restore; zero committed snapshots lost")
print("operations that finished first and failed cleanly:",
      {op: len(m) for op, m in clean_failures.items()} or "none")
for op, msgs in clean_failures.items():
    for m in sorted(set(msgs))[:5]:
        print(f"  {op}: {m}")
if kills < min(TARGET, 50):
    sys.exit(f"FAIL: only {kills} kill points in the time budget")
