#!/bin/bash
# Installs the Debian 12 packages cairn needs to build, test and benchmark.
set -euo pipefail
PKGS=(
  build-essential meson ninja-build pkg-config clang libclang-rt-14-dev
  libjansson-dev zlib1g-dev libzstd-dev libxxhash-dev
  libslirp-dev libglib2.0-dev  # user-mode networking; slirp.pc requires glib-2.0's .pc
  qemu-system-x86 qemu-utils
  busybox-static cpio kmod xz-utils lz4 zstd file
  jq python3 util-linux e2fsprogs
  acpica-tools  # iasl: the ACPI tables' disassembly test
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
