#!/bin/bash
# Builds the real Linux guest from Debian packages (apt-get download only):
#
#   OUTDIR/bzImage         Debian's cloud kernel, as shipped (LZ4-compressed)
#   OUTDIR/vmlinux         the ELF inside it; it has a PVH entry note, so a PVH
#                          loader starts it without running the decompressor
#   OUTDIR/initramfs.cpio  uncompressed newc cpio: busybox-static, the virtio
#                          PCI, blk, net and rng modules of the same kernel,
#                          udhcpc's hook script, and /init
#   OUTDIR/kernel-version  e.g. 6.1.0-56-cloud-amd64
#
# Usage: scripts/build-linux-guest.sh [OUTDIR]      (default build/linux-guest)
#
# /init mounts proc, sys and devtmpfs, loads the modules, starts DHCP on eth0
# in the background when there is a NIC, prints "cairn-guest: ready", runs the kernel parameter cairn_run="..." (or
# cairn_run='...') with sh -c, prints "cairn-guest: exit N", and
# reboots (reboot -f).  Without cairn_run it starts a shell on the console.
#
# The kernel is the one Debian's linux-image-cloud-amd64 meta-package points
# to (the distribution's current cloud kernel, the one docs/pvm.md's
# measurements were made with); set CAIRN_LINUX_PKG to a package name to use another one.
#
# Cached: when the outputs exist and were made by this version of the script,
# re-running does nothing.  Nothing here is committed (.gitignore: /build*/).
set -euo pipefail

SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$SRCDIR/build/linux-guest}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

die() { echo "build-linux-guest: $*" >&2; exit 1; }
say() { echo "build-linux-guest: $*" >&2; }

STAMP="$OUT/.stamp"
want_stamp=$(sha256sum "$0" | cut -d' ' -f1)
if [ -f "$OUT/bzImage" ] && [ -f "$OUT/vmlinux" ] && [ -f "$OUT/initramfs.cpio" ] &&
   [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_stamp" ]; then
  say "up to date in $OUT ($(cat "$OUT/kernel-version"))"
  exit 0
fi

for tool in apt-get apt-cache dpkg-deb lz4 cpio modinfo find sort; do
  command -v "$tool" >/dev/null || die "$tool is missing (scripts/install-deps.sh installs it)"
done
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] && file -L "$BUSYBOX" 2>/dev/null | grep -q 'statically linked' ||
  BUSYBOX=$(dpkg -L busybox-static 2>/dev/null | grep -m1 '/busybox$' || true)
[ -n "$BUSYBOX" ] && [ -x "$BUSYBOX" ] || die "busybox-static is not installed"

# --- which kernel package -------------------------------------------------
pick_kernel_pkg() {
  if [ -n "${CAIRN_LINUX_PKG:-}" ]; then
    echo "$CAIRN_LINUX_PKG"
    return
  fi
  local dep
  dep=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -n1)
  if [ -n "$dep" ] && apt-cache show "$dep-unsigned" >/dev/null 2>&1; then
    echo "$dep-unsigned"
    return
  fi
  # No meta-package: the newest unsigned cloud kernel by version.
  apt-cache search --names-only '^linux-image-.*-cloud-amd64-unsigned$' |
    cut -d' ' -f1 | sort -V | tail -n1
}
PKG=$(pick_kernel_pkg)
[ -n "$PKG" ] || die "no linux-image-*-cloud-amd64-unsigned package known to apt (run apt-get update)"
KVER=${PKG#linux-image-}
KVER=${KVER%-unsigned}

WORK=$(mktemp -d "$OUT/.work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# apt-get download writes to the current directory; the partial file is
# renamed into place only when complete, so a cache of the .deb is safe.
DEB=$(ls "$OUT"/"$PKG"_*.deb 2>/dev/null | sort -V | tail -n1 || true)
if [ -z "$DEB" ]; then
  say "downloading $PKG"
  (cd "$WORK" && apt-get download -q "$PKG" >/dev/null 2>"$WORK/apt.err") ||
    { cat "$WORK/apt.err" >&2; die "apt-get download $PKG failed"; }
  mv "$WORK"/"$PKG"_*.deb "$OUT"/
  DEB=$(ls "$OUT"/"$PKG"_*.deb | sort -V | tail -n1)
fi
say "kernel $KVER from $(basename "$DEB")"
dpkg-deb -x "$DEB" "$WORK/pkg"
VMLINUZ="$WORK/pkg/boot/vmlinuz-$KVER"
MODDIR="$WORK/pkg/lib/modules/$KVER"
[ -f "$VMLINUZ" ] || die "$DEB has no boot/vmlinuz-$KVER"

# --- vmlinux: the LZ4 stream inside the bzImage ----------------------------
# The same method as the kernel's scripts/extract-vmlinux: find each place the
# compressor's magic occurs (legacy LZ4 frame: 02 21 4c 18), decompress from
# there and keep the first result that is an ELF file.
extract_vmlinux() {
  local img=$1 out=$2 off
  for off in $(LC_ALL=C grep -obUaP '\x02\x21\x4c\x18' "$img" | cut -d: -f1); do
    tail -c +$((off + 1)) "$img" | lz4 -dc >"$out.tmp" 2>/dev/null || true
    if [ -s "$out.tmp" ] && [ "$(head -c4 "$out.tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then
      mv "$out.tmp" "$out"
      return 0
    fi
  done
  rm -f "$out.tmp"
  return 1
}
extract_vmlinux "$VMLINUZ" "$WORK/vmlinux" || die "no LZ4-compressed ELF found in $VMLINUZ"
if command -v readelf >/dev/null; then
  readelf -n "$WORK/vmlinux" | grep -q 'Xen.*0x00000012' ||
    say "warning: vmlinux has no PVH (XEN_ELFNOTE_PHYS32_ENTRY) note"
fi

# --- modules, dependencies first ------------------------------------------
WANT_MODULES=(virtio virtio_ring virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk
              virtio_net virtio_rng)
declare -A MODPATH=() DONE=()
while IFS= read -r ko; do
  name=$(basename "$ko" .ko)
  MODPATH[${name//-/_}]=$ko
done < <(find "$MODDIR/kernel" -name '*.ko')
ORDER=()
add_module() {  # depth-first: a module after everything it depends on
  local m=${1//-/_} d
  [ -n "${DONE[$m]:-}" ] && return 0
  if [ -z "${MODPATH[$m]:-}" ]; then
    grep -q "/$m.ko$" "$MODDIR/modules.builtin" 2>/dev/null && { DONE[$m]=builtin; return 0; }
    die "module $m is neither in $PKG nor built in"
  fi
  DONE[$m]=visiting
  for d in $(modinfo -F depends "${MODPATH[$m]}" | tr ',' ' '); do
    add_module "$d"
  done
  DONE[$m]=1
  ORDER+=("$m")
}
for m in "${WANT_MODULES[@]}"; do add_module "$m"; done

# --- the initramfs tree -----------------------------------------------------
R="$WORK/root"
mkdir -p "$R"/{bin,sbin,dev,proc,sys,mnt,tmp,root,etc,run,lib/modules,etc/udhcpc}
cp "$BUSYBOX" "$R/bin/busybox"
for applet in $("$BUSYBOX" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$R/bin/$applet"
done
# Debian signs its modules; the kernel then hashes each whole module (SHA-256)
# and checks an RSA signature at insmod.  In KVM's emulator (PVM hosts,
# docs/pvm.md) that took minutes of the boot (a 22 s soft lockup in
# sha256_update while loading virtio_net alone), so the signature is cut off:
# this kernel loads unsigned modules (no MODULE_SIG_FORCE, lockdown only under
# EFI secure boot) and marks itself tainted (E).  The appended signature is
# [PKCS#7 blob][struct module_signature, 12 bytes, sig_len big-endian at 8]
# ["~Module signature appended~\n"]: the ELF file is what precedes it.
MODSIG_MAGIC='~Module signature appended~'
strip_module_sig() {
  local f=$1 size siglen
  [ "$(tail -c 28 "$f" | head -c 27)" = "$MODSIG_MAGIC" ] || return 0
  size=$(stat -c %s "$f")
  siglen=$(tail -c 32 "$f" | head -c 4 | od -An -tu1 |
           awk '{ print $1 * 16777216 + $2 * 65536 + $3 * 256 + $4 }')
  [ "$siglen" -gt 0 ] && [ $((siglen + 40)) -lt "$size" ] || die "$f: bad module signature trailer"
  truncate -s $((size - 40 - siglen)) "$f"
  # What is left must be the ELF file whole: it ends with its section
  # headers (e_shoff at 0x28, e_shentsize at 0x3a, e_shnum at 0x3c).
  local shoff shent shnum
  shoff=$(od -An -tu8 -j $((0x28)) -N8 "$f" | tr -d ' ')
  read -r shent shnum < <(od -An -tu2 -j $((0x3a)) -N4 "$f")
  [ "$(head -c4 "$f" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] &&
    [ $((shoff + shent * shnum)) -eq $((size - 40 - siglen)) ] ||
    die "$f: not a whole ELF file after cutting its signature"
}
for m in "${ORDER[@]}"; do
  cp "${MODPATH[$m]}" "$R/lib/modules/$m.ko"
  strip_module_sig "$R/lib/modules/$m.ko"
  echo "$m" >>"$R/lib/modules/order"
done
# udhcpc's hook, at busybox's default path: called with deconfig, bound,
# renew, leasefail or nak, the lease in the environment ($ip, $mask as a
# prefix length, $router, $dns...).
cat >"$R/etc/udhcpc/default.script" <<'EOF'
#!/bin/sh
case "$1" in
deconfig)
  ip -4 addr flush dev "$interface"
  ip link set "$interface" up
  ;;
bound|renew)
  ip addr replace "$ip/${mask:-24}" ${broadcast:+broadcast "$broadcast"} dev "$interface"
  ip route del default dev "$interface" 2>/dev/null
  for r in $router; do ip route add default via "$r" dev "$interface" && break; done
  : >/etc/resolv.conf
  for d in $dns; do echo "nameserver $d" >>/etc/resolv.conf; done
  # for whoever waits for the network: /run/cairn-net-IFACE holds the address
  echo "$ip" >"/run/cairn-net-$interface"
  echo "cairn-guest: $interface $ip" >/dev/console
  ;;
esac
exit 0
EOF
chmod 755 "$R/etc/udhcpc/default.script"

cat >"$R/init" <<'EOF'
#!/bin/sh
# cairn's Linux test guest (made by scripts/build-linux-guest.sh).
export PATH=/bin:/sbin
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec 0</dev/console 1>/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
for m in $(cat /lib/modules/order); do
  insmod /lib/modules/$m.ko || echo "cairn-guest: insmod $m failed"
done
ip link set lo up
# With a NIC, DHCP runs in the background: nothing waits for it that does not
# need the network (on PVM hosts every step of a boot is minutes' worth).
# -q: exit once bound; until then it retries every few seconds, for ever.
if [ -e /sys/class/net/eth0 ]; then
  udhcpc -i eth0 -q -T 2 -A 3 >/dev/null 2>&1 &
fi
echo "cairn-guest: ready"

# cairn_run="cmd args" or cairn_run='cmd args' (the kernel does not strip
# single quotes, so parse /proc/cmdline ourselves); a bare word also works.
cl=$(cat /proc/cmdline)
run=
case "$cl" in
*cairn_run=\"*) run=${cl#*cairn_run=\"}; run=${run%%\"*} ;;
*cairn_run=\'*) run=${cl#*cairn_run=\'}; run=${run%%\'*} ;;
*cairn_run=*)   run=${cl#*cairn_run=};   run=${run%% *} ;;
esac
if [ -n "$run" ]; then
  sh -c "$run"
  echo "cairn-guest: exit $?"
else
  setsid cttyhack sh
fi
sync
reboot -f
EOF
chmod 755 "$R/init"

(cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc --owner 0:0 --quiet) >"$WORK/initramfs.cpio"

# --- publish -----------------------------------------------------------------
cp "$VMLINUZ" "$WORK/bzImage"
for f in bzImage vmlinux initramfs.cpio; do mv "$WORK/$f" "$OUT/$f"; done
echo "$KVER" >"$OUT/kernel-version"
echo "$want_stamp" >"$STAMP"
say "done: $OUT/{bzImage,vmlinux,initramfs.cpio} (modules: ${ORDER[*]})"
