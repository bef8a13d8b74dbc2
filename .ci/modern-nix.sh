#!/usr/bin/env bash
# Modern Nix, the tests' second oracle (DESIGN.md §6): Debian sid's nix-bin
# (2.34.x; DRVMETA_MODERN_NIX_SUITE=trixie gives 2.26.x) in a `debootstrap --variant=minbase` chroot with its own store,
# at $DRVMETA_MODERN_NIX_ROOT (default /var/lib/drvmeta/modern-nix). Idempotent:
# an existing chroot with a working nix-instantiate is kept; /proc is mounted
# when it is not (Nix reads /proc/self/exe).
set -euo pipefail
root=${DRVMETA_MODERN_NIX_ROOT:-/var/lib/drvmeta/modern-nix}
suite=${DRVMETA_MODERN_NIX_SUITE:-sid}
mirror=${DRVMETA_DEBIAN_MIRROR:-http://deb.debian.org/debian}

mount_proc() {
  mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
}

if [ -x "$root/usr/bin/nix-instantiate" ]; then
  mount_proc
  chroot "$root" nix-instantiate --version
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
command -v debootstrap >/dev/null 2>&1 || {
  apt-get update -qq
  apt-get install -y -qq debootstrap >/dev/null
}
rm -rf "$root.partial"
mkdir -p "$(dirname "$root")"
debootstrap --variant=minbase "$suite" "$root.partial" "$mirror" >/dev/null
mv "$root.partial" "$root"
mount_proc
chroot "$root" apt-get -o Acquire::Check-Valid-Until=false update -qq
chroot "$root" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends nix-bin >/dev/null
mkdir -p "$root/nix/store" "$root/nix/var/nix"
chroot "$root" nix-instantiate --version
