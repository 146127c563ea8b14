#!/usr/bin/env bash
# Enters the trixie root for a lane, in namespaces of its own, and runs CMD there as root:
#   unshare --mount --net --pid --fork --propagation private trixie-enter.sh ROOT CGROUPS REPO STATE CMD...
# - its own network namespace: the lane's engines (rootful Podman 5, dockerd 26) own their bridges and firewall
#   rules without touching the host's engines, and no packet can leave the machine. A veth pair stands in for the
#   host's uplink (an address and a default route that lead nowhere), as pasta needs a routable interface to copy.
# - its own pid namespace: when the lane ends, every daemon it started (dockerd, containerd, conmon) ends with it.
# - the host's kernel, /dev and cgroups. CGROUPS is `host` (the machine's hierarchies as they are: cgroup v1 plus a
#   cgroup2 hierarchy holding controllers — "hybrid") or `v1` (the v1 hierarchies only, as on a host booted with
#   the legacy layout, where crun works).
# - the root becomes the namespace's / (pivot_root), the host's tree is detached from it.
# - REPO is bind-mounted read-only at the same path (with node_modules when that is a link elsewhere).
# - the engines' storage (rootful Podman, Docker, the runner's rootless Podman) lives in STATE, outside the root,
#   which stays as built (the VM lane makes its disk from it).
set -euo pipefail
root=$1 cgroups=$2 repo=$3 state=$4
shift 4

mount --bind "$root" "$root" # containers/storage remounts / when unpacking layers: / must be a mount point
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
case $cgroups in
  host) mount --rbind /sys/fs/cgroup "$root/sys/fs/cgroup" ;;
  v1)
    mount -t tmpfs -o mode=755 cgroup "$root/sys/fs/cgroup"
    for hierarchy in /sys/fs/cgroup/*; do
      name=${hierarchy##*/}
      [[ $name == unified ]] && continue
      mountpoint -q "$hierarchy" || continue
      mkdir -p "$root/sys/fs/cgroup/$name"
      mount --bind "$hierarchy" "$root/sys/fs/cgroup/$name"
    done
    ;;
  *) echo "trixie-enter.sh: CGROUPS must be host or v1, not $cgroups" >&2; exit 2 ;;
esac
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=755 tmpfs "$root/run"
mkdir -p "$root$repo"
mount --bind "$repo" "$root$repo"
mount -o remount,bind,ro "$root$repo"
if [[ -L $repo/node_modules ]]; then
  modules=$(readlink -f "$repo/node_modules")
  mkdir -p "$root$modules"
  mount --bind "$modules" "$root$modules"
  mount -o remount,bind,ro "$root$modules"
fi

mkdir -p "$state/containers" "$state/docker" "$state/runner"
chown 1001:1001 "$state/runner"
# Podman creates /var/lib/containers on first use, so a root no Podman has run in yet lacks it.
mkdir -p "$root/var/lib/containers"
mount --bind "$state/containers" "$root/var/lib/containers"
mkdir -p "$root/var/lib/docker"
mount --bind "$state/docker" "$root/var/lib/docker"
install -d -o 1001 -g 1001 "$root/home/runner/.local" "$root/home/runner/.local/share" "$root/home/runner/.local/share/containers"
mount --bind "$state/runner" "$root/home/runner/.local/share/containers"

ip link set lo up
ip link add uplink0 type veth peer name uplink0-peer
ip addr add 198.18.0.1/24 dev uplink0
ip link set uplink0 up
ip link set uplink0-peer up
ip route add default via 198.18.0.254 dev uplink0

# pivot_root, not chroot: the kernel refuses user namespaces (rootless Podman) to a chrooted process.
mkdir -p "$root/.host"
cd "$root"
pivot_root . .host
umount -l /.host
mount --make-rshared / # rootless Podman wants shared propagation at /
cd /
exec /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
  TERM=dumb PODMAN_IGNORE_CGROUPSV1_WARNING=1 "$@"
