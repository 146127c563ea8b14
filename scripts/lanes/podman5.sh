#!/usr/bin/env bash
# The Podman 5 lane: Podman 5 (crun, netavark, pasta) and Docker 26 from Debian 13 "trixie", on this machine's
# kernel, in a debootstrapped trixie root entered in namespaces of its own (trixie-enter.sh). Runs airlock doctor,
# the network sandbox, masked-secret and AWS container suites and the escape suite on rootful Podman 5 and Docker
# 26, doctor rootless, and records each engine's `info --format json` under OUT/engine-info.
#   usage: podman5.sh [REPO]     (as root; REPO defaults to the current directory, its dist/ must be built)
# Environment: AIRLOCK_LANE_WORK (default /var/tmp/airlock-lanes) holds the trixie root between runs;
# AIRLOCK_LANE_FIXTURES=DIR copies the recorded engine-info files there (to refresh test/fixtures/engine-info).
set -euo pipefail
repo=$(cd "${1:-.}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
work=${AIRLOCK_LANE_WORK:-/var/tmp/airlock-lanes}
root=$work/trixie
# shellcheck source=lane-lib.sh
source "$here/lane-lib.sh"

if [[ $(id -u) != 0 ]]; then
  echo "lane podman5: cannot run: it needs root (debootstrap, namespaces, a rootful engine)" >&2
  echo "lane podman5: 1 tests, 0 pass, 1 fail"
  exit 1
fi
[[ -f $repo/dist/cli/bin.js ]] || { echo "lane podman5: $repo/dist is not built (npm run build)" >&2; exit 1; }

step() { echo "[podman5] $*" >&2; }
t0=$SECONDS
lane_stage_repo "$repo" "$work/podman5-repo"
repo=$work/podman5-repo
step "building the trixie root in $root (cached across runs of this script)"
"$here/trixie-root.sh" "$root"
step "trixie root ready after $((SECONDS - t0))s"

# The suites' Debian test image: the same cached rootfs tarball as on the host, bootstrapped there when missing.
(cd "$repo" && node --import tsx -e 'await (await import("./test/helpers/images.ts")).ensureTestRootfs()')
mkdir -p "$root/var/cache/airlock-test"
tarball=/var/cache/airlock-test/debian-bookworm-rootfs.tar
[[ $(stat -c %i "$tarball") == $(stat -c %i "$root$tarball" 2>/dev/null) ]] ||
  ln -f "$tarball" "$root$tarball" 2>/dev/null || cp "$tarball" "$root$tarball"

out=/lane-out/podman5
rm -rf "$root$out" && mkdir -p "$root$out"
state=$work/podman5-state
enter() {
  local cgroups=$1
  shift
  unshare --mount --net --pid --fork --propagation private "$here/trixie-enter.sh" "$root" "$cgroups" "$repo" "$state" "$@"
}

t1=$SECONDS
step "this machine's cgroups as they are (hybrid): doctor's crun diagnosis"
enter host /bin/bash "$repo/scripts/lanes/podman5-inside.sh" --hybrid "$repo" "$out" | tee "$root$out/hybrid.log" || true
step "hybrid checks took $((SECONDS - t1))s"
t2=$SECONDS
step "the v1 cgroup layout: rootful and rootless Podman 5 with crun, Docker 26"
enter v1 /bin/bash "$repo/scripts/lanes/podman5-inside.sh" "$repo" "$out" | tee "$root$out/v1.log" || true
step "suites took $((SECONDS - t2))s"

lane_add_part "$root$out/hybrid.log"
lane_add_part "$root$out/v1.log"
if [[ -n ${AIRLOCK_LANE_FIXTURES:-} ]]; then
  mkdir -p "$AIRLOCK_LANE_FIXTURES" && cp "$root$out"/engine-info/*.json "$AIRLOCK_LANE_FIXTURES/"
fi
step "total $((SECONDS - t0))s"
lane_summary podman5
