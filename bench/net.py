#!/usr/bin/env python3
"""Network benchmark (issue 17 §7): the same test guest under cairn and QEMU
7.2, in the same run, rounds alternating between the set-ups.

Set-ups: cairn `--net user` and QEMU `-netdev user` (libslirp both); in a
network namespace made here, with one TAP device (host side 10.0.2.2/24, the
guest keeps its fixed 10.0.2.15): QEMU `-netdev tap` with vhost=off and
vhost=on, and cairn `--net tap=` when this build has it (`cairn run --help`
mentions `tap=`).  A set-up that cannot run here is reported as such.

Figures, one VM per figure and round (bench/netperf.py is the host side):
  guest->host  the guest's `netsend 10.0.2.2 PORT MB`, counted by a host
               receiver: MiB/s from its first to its last datagram, and loss
  host->guest  a host sender as fast as its socket takes datagrams, the
               guest's `netrecv` counts: MiB/s delivered, and loss
  rtt          round trips of 32-byte datagrams through the guest's `udpecho`
Each figure's median over the rounds.  UDP, not TCP: the test guest has no
TCP stack; 1400-byte payloads (1442-byte frames).
"""
import argparse
import atexit
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NETPERF = os.path.join(HERE, "netperf.py")
NS = f"cairn-nb{os.getpid()}"
TAP = "nbtap0"
GUEST_MAC = "52:54:00:12:34:56"  # cairn's and QEMU's default
GUEST_PORT = 9000
ECHO_PORT = 7


def sh(*cmd, check=True):
    return subprocess.run(cmd, check=check, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Netns:
    """A namespace with one TAP device, 10.0.2.2/24 on the host side."""

    def __init__(self):
        self.made = False

    def make(self):
        sh("ip", "netns", "add", NS)
        self.made = True
        for c in (["ip", "link", "set", "lo", "up"],
                  ["ip", "tuntap", "add", "dev", TAP, "mode", "tap"],
                  ["ip", "addr", "add", "10.0.2.2/24", "dev", TAP],
                  ["ip", "link", "set", TAP, "up"],
                  # no ARP wait (and loss) before the first datagram to the guest
                  ["ip", "neigh", "replace", "10.0.2.15", "lladdr", GUEST_MAC, "dev", TAP,
                   "nud", "permanent"]):
            sh("ip", "netns", "exec", NS, *c)

    def remove(self):
        if self.made:
            sh("ip", "netns", "exec", NS, "ip", "link", "del", TAP, check=False)
            sh("ip", "netns", "del", NS, check=False)
            self.made = False


class Setup:
    def __init__(self, name, vm_cmd, netns, why_not=None):
        self.name, self.vm_cmd, self.netns, self.why_not = name, vm_cmd, netns, why_not

    def wrap(self, cmd):
        return ["ip", "netns", "exec", NS] + cmd if self.netns else cmd

    def host_addr(self):
        return "10.0.2.2" if self.netns else "127.0.0.1"


def setups(cairn, testos):
    qemu = ["qemu-system-x86_64", "-enable-kvm", "-M", "q35", "-m", "256M", "-nodefaults",
            "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
            "-device", "isa-debug-exit,iobase=0x501,iosize=1", "-kernel", testos]
    nic = ["-device", "virtio-net-pci,netdev=n0,disable-legacy=on,romfile="]

    def cairn_user(cl, fwd):
        return [cairn, "run", "--kernel", testos, "--mem", "256M", "--cmdline", cl,
                "--net", f"user,hostfwd=udp::{fwd}-:{GUEST_PORT},hostfwd=udp::{fwd + 1}-:{ECHO_PORT}"]

    def qemu_user(cl, fwd):
        return qemu + ["-append", cl, "-netdev", f"user,id=n0,hostfwd=udp::{fwd}-:{GUEST_PORT},"
                       f"hostfwd=udp::{fwd + 1}-:{ECHO_PORT}"] + nic

    def qemu_tap(vhost):
        return lambda cl, fwd: qemu + ["-append", cl, "-netdev",
                                       f"tap,id=n0,ifname={TAP},script=no,downscript=no,"
                                       f"vhost={vhost}"] + nic

    def cairn_tap(cl, fwd):
        return [cairn, "run", "--kernel", testos, "--mem", "256M", "--cmdline", cl,
                "--net", f"tap={TAP}"]

    helptext = sh(cairn, "run", "--help", check=False)
    has_tap = "tap=" in helptext.stdout + helptext.stderr
    vhost = os.path.exists("/dev/vhost-net")
    return [
        Setup("cairn user", cairn_user, False),
        Setup("QEMU user", qemu_user, False),
        Setup("cairn tap", cairn_tap, True,
              None if has_tap else "not available in this build (`cairn run --help` has no tap=)"),
        Setup("QEMU tap vhost=off", qemu_tap("off"), True),
        Setup("QEMU tap vhost=on", qemu_tap("on"), True,
              None if vhost else "not available on this machine (no /dev/vhost-net: "
              "the kernel has no vhost_net)"),
    ]


class VM:
    def __init__(self, setup, cmdline, fwd, log):
        self.log = log
        self.out = open(log, "wb")
        self.p = subprocess.Popen(["timeout", "120"] + setup.wrap(setup.vm_cmd(cmdline, fwd)),
                                  stdin=subprocess.DEVNULL, stdout=self.out,
                                  stderr=subprocess.STDOUT)

    def text(self):
        with open(self.log, "rb") as f:
            return f.read().decode(errors="replace").replace("\r", "")

    def wait_for(self, pattern, secs):
        end = time.monotonic() + secs
        while time.monotonic() < end:
            m = re.search(pattern, self.text())
            if m:
                return m
            if self.p.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"no /{pattern}/ in {self.log}:\n{self.text()[-1500:]}")

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.out.close()


def netperf(setup, *args, timeout=120):
    cmd = setup.wrap([sys.executable, NETPERF] + [str(a) for a in args])
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout)
    if not r.stdout.strip():
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr[-800:]}")
    return json.loads(r.stdout)


def guest_to_host(setup, tmp, mb):
    port, ready = free_port(), os.path.join(tmp, "rx.ready")
    if os.path.exists(ready):
        os.unlink(ready)
    rx = subprocess.Popen(setup.wrap([sys.executable, NETPERF, "recv", str(port), "--idle", "15",
                                      "--addr", setup.host_addr(), "--ready", ready]),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(200):
        if os.path.exists(ready):
            break
        time.sleep(0.02)
    vm = VM(setup, f"netsend 10.0.2.2 {port} {mb}; "
            "exit 0", free_port(), os.path.join(tmp, "vm.log"))
    try:
        g = vm.wait_for(r"netsend to=\S+ bytes=(\d+) datagrams=(\d+) ms=(\d+) MiBps=([\d.]+)",
                        90)
        out, err = rx.communicate(timeout=30)
        r = json.loads(out)
        return {"MiBps": r["MiBps"], "lost": r["lost"], "sent": int(g.group(2)),
                "guest_MiBps": float(g.group(4))}
    finally:
        vm.stop()
        if rx.poll() is None:
            rx.kill()
            rx.wait()


def host_to_guest(setup, tmp, mb):
    fwd = free_port()
    vm = VM(setup, f"netrecv {GUEST_PORT} 5; exit 0", fwd, os.path.join(tmp, "vm.log"))
    try:
        vm.wait_for(f"netrecv port={GUEST_PORT} ready", 60)
        if setup.netns:
            s = netperf(setup, "send", GUEST_PORT, mb, "--addr", "10.0.2.15")
        else:
            s = netperf(setup, "send", fwd, mb)
        g = vm.wait_for(r"netrecv port=\d+ bytes=(\d+) datagrams=(\d+) lost=(\d+) ms=(\d+) "
                        r"MiBps=([\d.]+)", 60)
        return {"MiBps": float(g.group(5)), "lost": int(g.group(3)),
                "sent": s["datagrams"], "sender_MiBps": s["MiBps"]}
    finally:
        vm.stop()


def rtt(setup, tmp, n):
    fwd = free_port()
    vm = VM(setup, f"udpecho {ECHO_PORT}", fwd, os.path.join(tmp, "vm.log"))
    try:
        vm.wait_for(f"udpecho port={ECHO_PORT} ready", 60)
        if setup.netns:
            r = netperf(setup, "rtt", ECHO_PORT, n, "--addr", "10.0.2.15")
        else:
            r = netperf(setup, "rtt", fwd + 1, n)
        return {"median_us": r["median_us"], "p99_us": r["p99_us"], "lost": r["lost"]}
    finally:
        vm.stop()


FIGS = [("guest->host", guest_to_host, "MiBps", "MiB/s"),
        ("host->guest", host_to_guest, "MiBps", "MiB/s"),
        ("rtt", rtt, "median_us", "us")]


def table(res, runs, setups_):
    med = lambda xs: statistics.median(xs) if xs else None
    lines = [f"| figure (median of {runs}) | " + " | ".join(s.name for s in setups_) +
             " | cairn/QEMU user | cairn/QEMU tap vhost=off |",
             "|---" * (len(setups_) + 3) + "|"]
    for fig, _, key, unit in FIGS:
        row, vals = [], {}
        for s in setups_:
            if s.why_not:
                row.append("n/a")
                continue
            rs = res[s.name][fig]
            v = med([r[key] for r in rs])
            vals[s.name] = v
            loss = med([r["lost"] for r in rs])
            extra = f", {loss:.0f} lost" if loss else ""
            row.append(f"{v:.1f} {unit}{extra}")

        def ratio(a, b):
            if a not in vals or b not in vals or not vals[b]:
                return "n/a"
            return f"{vals[a] / vals[b]:.2f}"
        lines.append(f"| {fig} | " + " | ".join(row) + f" | {ratio('cairn user', 'QEMU user')} | "
                     f"{ratio('cairn tap', 'QEMU tap vhost=off')} |")
    notes = [f"- {s.name}: {s.why_not}" for s in setups_ if s.why_not]
    return "\n".join(lines + [""] + notes)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cairn")
    ap.add_argument("testos")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mb", type=int, default=64)
    ap.add_argument("--rtt-n", type=int, default=1000)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="cairn-netbench.")
    ns = Netns()
    atexit.register(lambda: (ns.remove(), shutil.rmtree(tmp, ignore_errors=True)))
    # killed (timeout): unwind, so the VMs stop and the namespace goes
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    ss = setups(a.cairn, a.testos)
    if any(s.netns and not s.why_not for s in ss):
        ns.make()
    res = {s.name: {f[0]: [] for f in FIGS} for s in ss}
    load0 = os.getloadavg()
    rounds = []
    for rnd in range(a.runs):
        for fig, fn, _, _ in FIGS:
            for s in ss:
                if s.why_not:
                    continue
                arg = a.rtt_n if fig == "rtt" else a.mb
                r = fn(s, tmp, arg)
                res[s.name][fig].append(r)
                line = f"round {rnd + 1} {s.name:20} {fig:12} {json.dumps(r)}"
                rounds.append(line)
                print(line, flush=True)
    load1 = os.getloadavg()
    head = (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {a.mb} MiB per throughput "
            f"run, {a.rtt_n} round trips, load average {load0[0]:.1f} at the start and "
            f"{load1[0]:.1f} at the end (2 CPUs).")
    text = (head + "\n\n" + table(res, a.runs, ss) + "\n\nEvery run:\n\n```\n" +
            "\n".join(rounds) + "\n```\n")
    print("\n" + text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
