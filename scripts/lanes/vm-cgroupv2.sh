#!/usr/bin/env bash
# The cgroup v2 lane: a Debian 13 VM under qemu's software emulation (TCG: this machine's /dev/kvm opens, but
# nested guests hang), booted from the trixie root (trixie-root.sh) with a script init (vm-guest-init.sh) that
# mounts cgroup2 with every controller and delegates a subtree to a runner-like user, as systemd does on GitHub's
# runners. Inside: Podman 5 with crun, rootful and rootless (pasta), doctor, a smoke test of the network sandbox
# and the escape suite (vm-guest-checks.sh). The VM has no network device at all: it needs nothing beyond what
# is copied onto its disk.
#   usage: vm-cgroupv2.sh [REPO]   (as root; REPO's dist/ must be built)
# Environment: AIRLOCK_LANE_WORK (default /var/tmp/airlock-lanes); AIRLOCK_VM_BUDGET seconds for the VM (default
# 2700); AIRLOCK_VM_SUITES=smoke|all (default all: smoke plus the escape suite); AIRLOCK_LANE_FIXTURES=DIR copies
# the recorded engine-info files there.
set -euo pipefail
repo=$(cd "${1:-.}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
work=${AIRLOCK_LANE_WORK:-/var/tmp/airlock-lanes}
root=$work/trixie
vm=$work/vm
budget=${AIRLOCK_VM_BUDGET:-2700}
# shellcheck source=lane-lib.sh
source "$here/lane-lib.sh"

fail_early() {
  echo "lane vm-cgroupv2: cannot run: $*" >&2
  echo "lane vm-cgroupv2: 1 tests, 0 pass, 1 fail"
  exit 1
}
[[ $(id -u) == 0 ]] || fail_early "it needs root (debootstrap, mkfs of a root file system)"
command -v qemu-system-x86_64 >/dev/null || fail_early "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
[[ -f $repo/dist/cli/bin.js ]] || fail_early "$repo/dist is not built (npm run build)"

step() { echo "[vm-cgroupv2] $*" >&2; }
t0=$SECONDS
lane_stage_repo "$repo" "$work/vm-repo"
repo=$work/vm-repo
"$here/trixie-root.sh" "$root"
step "trixie root ready after $((SECONDS - t0))s"
(cd "$repo" && node --import tsx -e 'await (await import("./test/helpers/images.ts")).ensureTestRootfs()')

# The disk: the trixie root, plus (in an overlay, so the root itself stays as built) the repository at /airlock
# with its node_modules, and the suites' Debian rootfs tarball.
t1=$SECONDS
guest_repo=/airlock
rm -rf "$vm" && mkdir -p "$vm/upper$guest_repo/node_modules" "$vm/upper/var/cache/airlock-test" "$vm/work" "$vm/merged" "$vm/out"
tar -C "$repo" --exclude=./node_modules -cf - . | tar -C "$vm/upper$guest_repo" -xf -
tar -C "$(readlink -f "$repo/node_modules")" -cf - . | tar -C "$vm/upper$guest_repo/node_modules" -xf -
tarball=/var/cache/airlock-test/debian-bookworm-rootfs.tar
ln "$tarball" "$vm/upper$tarball" 2>/dev/null || cp "$tarball" "$vm/upper$tarball"
unshare --mount --propagation private bash -c '
  set -e
  mount -t overlay overlay -o "lowerdir=$1,upperdir=$2/upper,workdir=$2/work" "$2/merged"
  mkfs.ext4 -q -F -L airlock-vm -d "$2/merged" "$2/disk.img" 8G' _ "$root" "$vm"
truncate -s 64M "$vm/out.img"
step "VM disk made in $((SECONDS - t1))s ($(du -sh --apparent-size "$vm/disk.img" | cut -f1) apparent, $(du -sh "$vm/disk.img" | cut -f1) used)"

kernel=$(ls "$root"/boot/vmlinuz-* | tail -n1)
initrd=$(ls "$root"/boot/initrd.img-* | tail -n1)
t2=$SECONDS
step "booting the VM (TCG, budget ${budget}s)"
# -accel tcg,thread=single: QEMU defaults to multi-threaded TCG for an x86_64 guest on an x86_64 host, and under it the
# guest kernel oopsed at boot (int3 in text patching) and Node segfaulted in the escape suite. -nic none: no network
# device at all.
set +e
timeout --kill-after=10 "$budget" qemu-system-x86_64 -accel tcg,thread=single -cpu max -smp "${AIRLOCK_VM_CPUS:-2}" -m 4096 \
  -kernel "$kernel" -initrd "$initrd" \
  -drive "file=$vm/disk.img,if=virtio,format=raw" -drive "file=$vm/out.img,if=virtio,format=raw" \
  -nic none -display none -serial stdio -monitor none -no-reboot \
  -append "root=/dev/vda rw console=ttyS0 quiet panic=-1 init=$guest_repo/scripts/lanes/vm-guest-init.sh airlock.repo=$guest_repo airlock.suites=${AIRLOCK_VM_SUITES:-all}" \
  </dev/null | tee "$vm/console.log"
qemu_rc=${PIPESTATUS[0]}
set -e
step "VM ran $((SECONDS - t2))s (qemu exit $qemu_rc)"
if ((qemu_rc == 124 || qemu_rc == 137)); then
  echo "not ok - the VM did not finish within ${budget}s"
fi
tar -C "$vm/out" -xf "$vm/out.img" 2>/dev/null || echo "not ok - the VM left no outputs"
lane_add_part "$vm/console.log"
if [[ -n ${AIRLOCK_LANE_FIXTURES:-} && -d $vm/out/engine-info ]]; then
  mkdir -p "$AIRLOCK_LANE_FIXTURES" && cp "$vm/out"/engine-info/*.json "$AIRLOCK_LANE_FIXTURES/"
fi
step "total $((SECONDS - t0))s"
lane_summary vm-cgroupv2
