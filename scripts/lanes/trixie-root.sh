#!/usr/bin/env bash
# Builds (once per ROOT) a Debian 13 "trixie" userland for the Podman 5 and cgroup v2 lanes: Podman 5 with crun,
# runc, netavark, aardvark-dns and pasta, Docker 26 with containerd, the Debian kernel (the VM lane boots it), this
# machine's node, and a runner-like non-root user with subordinate ids. Everything comes from the Debian mirror the
# host's apt already uses; nothing else is downloaded.
#   usage: trixie-root.sh ROOT
set -euo pipefail
root=${1:?usage: trixie-root.sh ROOT}
ready="$root/.airlock-lane-root"
recipe="trixie-root/3"
mkdir -p "$(dirname "$root")"
# Lanes started side by side build the root once: the second waits for the first.
exec 9>"$root.lock"
flock 9
if [[ -f $ready && $(cat "$ready") == "$recipe" ]]; then exit 0; fi

mirror=http://deb.debian.org/debian
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*; do
  [[ -f $f ]] || continue
  m=$(sed -nE 's#^URIs:[[:space:]]*(\S+/debian)/?[[:space:]]*$#\1#p; s#^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?(\S+/debian)/?[[:space:]].*#\2#p' "$f" | head -n1)
  if [[ -n $m ]]; then mirror=$m; break; fi
done

packages=(
  podman crun runc passt netavark aardvark-dns nftables catatonit uidmap # Podman 5, both runtimes, networking
  docker.io docker-cli containerd tini iptables                  # Docker 26 (docker-init is tini)
  git curl python3 python3-pip openssl ca-certificates iproute2 procps bsdutils kmod # what the suites' probes and clients use
  linux-image-amd64                                                      # the VM lane's kernel and initrd
)
if [[ $root != /*/* ]] || grep -q " ${root%/}[/ ]" /proc/self/mountinfo; then
  echo "trixie-root.sh: refusing to rebuild $root (not an absolute path below /, or something is mounted in it)" >&2
  exit 1
fi
rm -rf "$root"
start=$SECONDS
debootstrap --variant=minbase --include="$(IFS=,; echo "${packages[*]}")" trixie "$root" "$mirror" >"$root.debootstrap.log" 2>&1 ||
  { tail -n 30 "$root.debootstrap.log" >&2; exit 1; }
chroot "$root" apt-get clean # the .deb files: not needed again, and they would bloat the VM disk
echo "trixie root: debootstrap took $((SECONDS - start))s" >&2

# The node that runs airlock here runs it there (the suites need Node 20; trixie's glibc is newer than ours).
install -m 0755 "$(command -v node)" "$root/usr/local/bin/node"
# …with its npm, which the suites' probes use as a real client.
npm_root=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
mkdir -p "$root/usr/local/lib/node_modules"
cp -a "$npm_root" "$root/usr/local/lib/node_modules/npm"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
# A GitHub-runner-like user: uid 1001, subordinate ids for rootless Podman, a home and a runtime directory.
chroot "$root" useradd --uid 1001 --create-home --shell /bin/bash runner
echo "runner:100000:65536" >"$root/etc/subuid"
echo "runner:100000:65536" >"$root/etc/subgid"
# Podman 5 warns on every call that cgroup v1 is deprecated; the lanes record that once, not on every line.
echo 'PODMAN_IGNORE_CGROUPSV1_WARNING=1' >>"$root/etc/environment"
echo "$recipe" >"$ready"
