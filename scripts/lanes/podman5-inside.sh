#!/usr/bin/env bash
# The Podman 5 lane, inside the trixie root (see podman5.sh): rootful Podman 5 with crun and netavark, rootless
# Podman 5 with pasta as a runner-like user, and Docker 26, each driven by the built airlock CLI and the suites.
#   usage: podman5-inside.sh REPO OUT (v1 world) | podman5-inside.sh --hybrid REPO OUT
set -uo pipefail
hybrid=false
if [[ ${1:-} == --hybrid ]]; then hybrid=true; shift; fi
repo=$1 out=$2
# shellcheck source=lane-lib.sh
source "$repo/scripts/lanes/lane-lib.sh"
cli=("$(command -v node)" "$repo/dist/cli/bin.js")
mkdir -p "$out/engine-info"
cd /tmp

run_as=()
doctor_says() { # doctor_says EXPECTED_CODE PATTERN [ENV…] -- ARGS…: doctor's exit code and a line of its report
  local code=$1 pattern=$2
  shift 2
  local env=()
  while [[ $1 != -- ]]; do env+=("$1"); shift; done
  shift
  local report rc
  report=$("${run_as[@]}" env "${env[@]}" "${cli[@]}" doctor "$@" 2>&1)
  rc=$?
  echo "$report" | sed 's/^/    /'
  [[ $rc == "$code" ]] && grep -qE "$pattern" <<<"$report"
}

if $hybrid; then
  # This machine as it is: cgroup v1 plus a cgroup2 hierarchy that holds a controller. crun refuses to run there;
  # doctor must say so and name runc, and with runc configured everything passes.
  lane_check "doctor (Podman 5, crun, hybrid cgroups) fails and names the runc fix" \
    doctor_says 125 'FAIL +runtime: .*crun.*' -- --engine podman
  printf '[engine]\nruntime = "runc"\n' >/tmp/runc.conf
  lane_check "doctor (Podman 5, runc, hybrid cgroups) passes" doctor_says 0 'ok +container:' CONTAINERS_CONF=/tmp/runc.conf -- --engine podman
  lane_summary hybrid part
  exit
fi

# Docker 26 in this namespace: its own socket, storage, bridge and rules; its containers' cgroups apart from the
# host daemon's. Forwarding starts off, as on a freshly booted runner: dockerd then turns it on and sets the
# FORWARD policy to DROP (Docker before 28 does that only when it enabled forwarding itself) — the world in which
# rootful Podman needs airlock's bridge rule. A new namespace would otherwise inherit the host's ip_forward=1.
sysctl -qw net.ipv4.ip_forward=0
dockerd --cgroup-parent=/airlock-lane-docker >/var/log/dockerd.log 2>&1 &
for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
docker_up=false
docker info >/dev/null 2>&1 && docker_up=true
lane_check "dockerd 26 starts" $docker_up || tail -n 20 /var/log/dockerd.log

# Rootless: a runner-like user (subordinate ids, /run/user/UID, a /dev/net/tun it may open — 0666 as on GitHub's
# runners; the host's node is 0600, so a private node replaces it in this mount namespace only).
mkdir -p /run/user/1001 && chown runner:runner /run/user/1001 && chmod 700 /run/user/1001
mknod -m 666 /run/airlock-tun c 10 200 && mount --bind /run/airlock-tun /dev/net/tun
as_runner() { runuser -u runner -- env -i PATH="$PATH" HOME=/home/runner USER=runner XDG_RUNTIME_DIR=/run/user/1001 \
  PODMAN_IGNORE_CGROUPSV1_WARNING=1 "$@"; }

podman info --format json >"$out/engine-info/podman5-rootful-cgroupv1-crun.json"
as_runner podman info --format json >"$out/engine-info/podman5-rootless-cgroupv1-crun-pasta.json"
$docker_up && docker info --format json >"$out/engine-info/docker26-rootful-cgroupv1-runc.json"

lane_check "doctor (Podman 5 rootful, crun, netavark, cgroup v1)" doctor_says 0 'ok +container:' -- --engine podman
$docker_up && lane_check "doctor (Docker 26)" doctor_says 0 'ok +container:' -- --engine docker
run_as=(as_runner)
lane_check "doctor (Podman 5 rootless, pasta)" doctor_says 0 'ok +container:' -- --engine podman
run_as=()

# The suites the issue names, on both engines (AIRLOCK_TEST_DOCKER=1 adds Docker 26 to each file).
files=(test/container/network-sandbox.test.ts test/container/credentials-masked.test.ts
  test/container/credentials-aws.test.ts "$repo"/test/escape/*.test.ts)
(cd "$repo" && env AIRLOCK_TEST_DOCKER=$($docker_up && echo 1 || echo 0) TMPDIR=/tmp \
  node --import tsx --test --test-concurrency=1 --test-timeout=600000 \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$out/suites.tap" "${files[@]}")
lane_add_tap "$out/suites.tap"

# The same container suites rootless, on Podman 5's pasta (the escape suite needs limits, which rootless Podman
# cannot apply on cgroup v1: the VM lane runs it on cgroup v2). The runner cannot write the root's test cache.
install -d -o runner -g runner /home/runner/.cache /home/runner/.cache/airlock-test
ln -f /var/cache/airlock-test/debian-bookworm-rootfs.tar /home/runner/.cache/airlock-test/ 2>/dev/null ||
  cp /var/cache/airlock-test/debian-bookworm-rootfs.tar /home/runner/.cache/airlock-test/
rm -f "$out/rootless.tap" && install -o runner -g runner /dev/null "$out/rootless.tap"
(cd "$repo" && as_runner env AIRLOCK_TEST_CACHE=/home/runner/.cache/airlock-test TMPDIR=/tmp \
  node --import tsx --test --test-concurrency=1 --test-timeout=600000 \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$out/rootless.tap" "${files[@]:0:3}")
lane_add_tap "$out/rootless.tap"
lane_summary v1 part
