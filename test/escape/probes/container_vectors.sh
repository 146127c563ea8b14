#!/bin/bash
# Escape vectors against the container, run INSIDE `airlock run` as the untrusted command. Each prints
# `begin:NAME`, then `NAME=OUTCOME` on one line (denied attempts print `denied`). Usage: bash container_vectors.sh NAME...

denied_or() { if "$@" >/dev/null 2>&1; then echo allowed; else echo denied; fi; }

v_capabilities() {
  awk '/^Cap(Inh|Prm|Eff|Bnd|Amb)|^NoNewPrivs/ {sub(":", "", $1); printf "%s=%s,", $1, $2}' /proc/self/status
}
v_mount_tmpfs() { denied_or mount -t tmpfs none /mnt; }
v_remount_usr_rw() { denied_or mount -o remount,rw /usr; }
v_user_namespace() {
  # As root, mapping uid 0 needs CAP_SETFCAP (dropped); an unprivileged user maps itself, as `unshare -r` does.
  denied_or setpriv --reuid=1000 --regid=1000 --clear-groups unshare -Urm sh -c 'mount -t tmpfs none /mnt'
}
v_other_namespaces() { denied_or unshare -mn true; }
v_chroot() { denied_or chroot / true; }
v_net_admin() {
  echo "$(denied_or ip link add d0 type dummy),$(denied_or ip addr add 10.254.0.9/24 dev eth0),$(denied_or ip route add 10.254.1.0/24 dev eth0),$(denied_or ip link set eth0 down)"
}
v_mknod_block_device() {
  echo "$(denied_or mknod /tmp/disk b 8 0),blockdevs=$(find /dev -type b 2>/dev/null | wc -l)"
}
v_hostname() { denied_or hostname escaped; }
v_ptrace_host_process() {
  # The test's own pid on the host: in another pid namespace it does not exist here.
  echo "$(denied_or kill -0 "$HOST_TEST_PID"),$(denied_or timeout 3 strace -p "$HOST_TEST_PID" -o /dev/null)"
}
v_pid_namespace() {
  local foreign=0
  for p in /proc/[0-9]*; do
    case "$(cat "$p/comm" 2>/dev/null)" in
      node | conmon | podman | dockerd | containerd* | systemd | sshd | runc | crun | aardvark-dns | netavark) foreign=$((foreign + 1)) ;;
    esac
  done
  echo "foreign=$foreign,init=$(tr '\0' '\n' </proc/1/cmdline | head -1)"
}
v_host_namespaces() {
  # HOST_NAMESPACES holds the test process's own namespace ids on the host ("net:[4026531833] pid:[…] …").
  local shared=""
  for ns in cgroup ipc mnt net pid time user uts; do
    local mine
    mine=$(readlink "/proc/self/ns/$ns" 2>/dev/null) || continue
    case " $HOST_NAMESPACES " in *" $mine "*) shared="$shared$ns," ;; esac
  done
  echo "shared=${shared%,}"
}
v_engine_sockets() {
  local found
  found=$(find / -xdev \( -path /proc -o -path /sys -o -path /usr \) -prune -o -type s -print 2>/dev/null | tr '\n' ,)
  for s in /var/run/docker.sock /run/docker.sock /run/podman/podman.sock /run/user/0/podman/podman.sock \
    /run/containerd/containerd.sock /var/run/containerd/containerd.sock; do
    [ -e "$s" ] && found="$found$s,"
  done
  echo "${found:-none}"
}
v_sys_class_net() { ls /sys/class/net | tr '\n' ,; }
v_proc_sys_write() {
  echo "$(denied_or sh -c 'echo 0 > /proc/sys/net/ipv6/conf/all/disable_ipv6'),$(denied_or sysctl -w net.ipv4.ip_forward=1),$(denied_or sh -c 'echo /tmp/x > /proc/sys/kernel/core_pattern')"
}
v_sysfs_write() {
  # The cgroup hierarchies are mounted read-only (the tmpfs above them is the container's own scratch space).
  local agents="" limit
  for f in /sys/fs/cgroup/*/release_agent /sys/fs/cgroup/release_agent; do
    [ -e "$f" ] && agents="$agents$(denied_or sh -c "echo /tmp/x > $f")"
  done
  # No pids.max at all where the container has no pids cgroup (rootless on cgroup v1); writing one would only
  # create a file on that scratch tmpfs.
  limit=/sys/fs/cgroup/pids/pids.max
  [ -e "$limit" ] || limit=/sys/fs/cgroup/pids.max
  local pids_max=absent
  [ -e "$limit" ] && pids_max=$(denied_or sh -c "echo 100000 > $limit")
  echo "release_agent=${agents:-absent},cgroup_mount=$(denied_or mount -t cgroup -o rdma cgroup /mnt),pids_max=$pids_max,ksm=$(denied_or sh -c 'echo 1 > /sys/kernel/mm/ksm/run')"
}
v_proc_leaks() {
  # Engines mask /proc/kcore with /dev/null, which opens and reads as empty: only a byte read is a leak.
  local kcore_bytes
  kcore_bytes=$(head -c1 /proc/kcore 2>/dev/null | wc -c)
  echo "kcore=$([ "$kcore_bytes" -gt 0 ] && echo allowed || echo denied),keys=$(wc -c </proc/keys 2>/dev/null || echo 0),kallsyms_addrs=$(awk '$1 != "0000000000000000"' /proc/kallsyms 2>/dev/null | head -1 | wc -l)"
}
v_proxy_invisible() {
  local hits=0
  for p in /proc/[0-9]*; do
    tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q 'airlock-proxy' && hits=$((hits + 1))
    tr '\0' '\n' <"$p/environ" 2>/dev/null | grep -q 'PRIVATE KEY' && hits=$((hits + 1))
  done
  echo "processes=$hits"
}
v_ca_key_absent() {
  local keys
  keys=$(grep -rlI 'PRIVATE KEY' / --exclude-dir=proc --exclude-dir=sys --exclude-dir=usr --exclude-dir=dev --exclude-dir=probes 2>/dev/null | wc -l)
  echo "keys=$keys,ca_certs=$(grep -c 'BEGIN CERTIFICATE' /etc/airlock/ca.pem),ca_keys=$(grep -c 'PRIVATE' /etc/airlock/ca.pem)"
}
v_ca_overlay_write() {
  # The CA file is bind-mounted read-only: the sandbox cannot swap in a CA of its own for tools reading it.
  denied_or sh -c 'echo x >> /etc/airlock/ca.pem'
}
v_airlock_tamper() {
  # Rewrite the policy in the workspace to allow blocked.test and turn the sandbox off (for the next run), then try it.
  local written=denied body
  if printf 'domains:\n  - blocked.test\n  - "*"\n' 2>/dev/null >/workspace/.airlock/network-allowlist.yaml; then written=written; fi
  if printf 'network_sandbox: false\n' 2>/dev/null >>/workspace/.airlock/sandbox.yaml; then written=written; fi
  if mv /workspace/.airlock /workspace/.airlock-moved 2>/dev/null; then written=moved; fi
  body=$(curl -s -m 10 -D - -o /dev/null https://blocked.test/content | tr -d '\r' | awk 'NR==1 {s=$2} tolower($1)=="x-airlock-deny:" {c=$2} END {print s ":" c}')
  echo "$written:$body"
}
v_disk_fill() {
  # Bounded at 150 MiB so the host disk is never at risk even without a limit; the point is what stops it first.
  dd if=/dev/zero of=/var/tmp/escape-fill bs=1M count=150 2>/dev/null
  scratch=$(stat -c %s /var/tmp/escape-fill 2>/dev/null || echo 0)
  rm -f /var/tmp/escape-fill
  # Anywhere else outside the workspace: the image itself.
  if dd if=/dev/zero of=/escape-fill bs=1M count=1 2>/dev/null; then image=written; else image=denied; fi
  echo "var_tmp=$scratch,image=$image"
}
v_fork_bomb() {
  # Bounded (FORK_BOMB_BOUND, default 5000), so where no pids limit holds it stops by itself.
  timeout 60 python3 - <<'EOF'
import errno, os, time
kids, err = [], 'none'
for _ in range(int(os.environ.get('FORK_BOMB_BOUND', '5000'))):
    try:
        pid = os.fork()
    except OSError as e:
        err = errno.errorcode.get(e.errno, str(e.errno))
        break
    if pid == 0:
        time.sleep(120)
        os._exit(0)
    kids.append(pid)
for k in kids:
    os.kill(k, 9)
for k in kids:
    os.waitpid(k, 0)
print(f'forked={len(kids)},stopped_by={err}')
EOF
}
v_after_bomb() { echo "alive=$(sh -c 'echo yes')"; }

for name in "$@"; do
  echo "begin:$name"
  echo "$name=$("v_$name" 2>/dev/null | tr '\n' ' ' | sed 's/[ ,]*$//')"
done
