#!/bin/bash
# PID 1 of the cgroup v2 VM (see vm-cgroupv2.sh): a script, not systemd, so the VM boots in seconds under
# emulation. It does what systemd would do for this lane — cgroup2 with every controller, and a delegated subtree
# for the runner user (systemd's Delegate=yes: the user owns its cgroup and may enable controllers below it) —
# then runs the lane's checks, writes its outputs as a tar archive onto the second disk and powers the VM off.
# The kernel command line carries the repository path: airlock.repo=PATH.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
mount --make-rshared /
hostname airlock-vm
ip link set lo up
# An uplink that leads nowhere: pasta needs an interface with a route to copy; the VM has no network device.
ip link add uplink0 type veth peer name uplink0-peer
ip addr add 198.18.0.1/24 dev uplink0
ip link set uplink0 up
ip link set uplink0-peer up
ip route add default via 198.18.0.254 dev uplink0
# GitHub's runners give users /dev/net/tun (0666); devtmpfs makes it 0600.
modprobe tun
chmod 666 /dev/net/tun

repo=$(sed -nE 's/.*airlock\.repo=([^ ]+).*/\1/p' /proc/cmdline)
out=/run/lane-out
mkdir -p "$out"
finish() {
  sync
  tar -C "$out" -cf /dev/vdb . 2>/dev/null
  sync
  echo 1 >/proc/sys/kernel/sysrq
  echo o >/proc/sysrq-trigger
  sleep 60
}
trap finish EXIT

# Every controller for the whole tree, as systemd enables them.
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control; done
# PID 1 and this script leave the root cgroup for a leaf, like systemd's init.scope.
mkdir -p /sys/fs/cgroup/init.scope
echo $$ >/sys/fs/cgroup/init.scope/cgroup.procs
# The runner's delegated subtree: user.slice/user-1001.slice/user@1001.service, owned by the user.
user=/sys/fs/cgroup/user.slice/user-1001.slice/user@1001.service
mkdir -p "$user"
for dir in /sys/fs/cgroup/user.slice /sys/fs/cgroup/user.slice/user-1001.slice; do
  for c in $(cat "$dir/cgroup.controllers"); do echo "+$c" >"$dir/cgroup.subtree_control"; done
done
# …and inside it, what the user's own systemd would enable for its services: every controller it was given.
for c in $(cat "$user/cgroup.controllers"); do echo "+$c" >"$user/cgroup.subtree_control"; done
chown -R 1001:1001 "$user"
mkdir -p /run/user/1001 && chown 1001:1001 /run/user/1001 && chmod 700 /run/user/1001

exec >/dev/ttyS0 2>&1
echo "lane vm: guest up after $(cut -d' ' -f1 /proc/uptime)s; cgroup controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
bash "$repo/scripts/lanes/vm-guest-checks.sh" "$repo" "$out" "$user"
