#!/usr/bin/env bash
# The cgroup v2 lane's checks, inside the VM (started by vm-guest-init.sh): Podman 5 with crun on cgroup v2,
# rootful and as a runner-like user with a delegated cgroup; doctor, the smoke test and (unless the kernel
# command line says airlock.suites=smoke) the escape suite. Ends with a `part vm:` line.
#   usage: vm-guest-checks.sh REPO OUT DELEGATED_CGROUP
set -uo pipefail
repo=$1 out=$2 delegated=$3
# shellcheck source=lane-lib.sh
source "$repo/scripts/lanes/lane-lib.sh"
suites=$(sed -nE 's/.*airlock\.suites=([a-z]+).*/\1/p' /proc/cmdline)
mkdir -p "$out/engine-info"
cd /tmp
timed() { local t=$SECONDS; "$@"; local rc=$?; echo "    ($((SECONDS - t))s)"; return $rc; }

# The runner's shells live in a leaf of its delegated subtree, as a systemd user session's do.
mkdir -p "$delegated/lane.scope" && chown 1001:1001 "$delegated/lane.scope" "$delegated/lane.scope"/cgroup.{procs,threads,subtree_control}
as_runner() {
  (echo $BASHPID >"$delegated/lane.scope/cgroup.procs" &&
    exec runuser -u runner -- env -i PATH="$PATH" HOME=/home/runner USER=runner XDG_RUNTIME_DIR=/run/user/1001 "$@")
}

doctor_says() { # doctor_says RUN_AS… -- ARGS…: doctor exits 0 and its container check passed
  local run=()
  while [[ $1 != -- ]]; do run+=("$1"); shift; done
  shift
  local report rc
  report=$("${run[@]}" node "$repo/dist/cli/bin.js" doctor "$@" 2>&1)
  rc=$?
  echo "$report" | sed 's/^/    /'
  [[ $rc == 0 ]] && grep -qE 'ok +container:' <<<"$report"
}

podman info --format json >"$out/engine-info/podman5-rootful-cgroupv2-crun.json"
as_runner podman info --format json >"$out/engine-info/podman5-rootless-cgroupv2-crun-pasta.json"
# The same user in a cgroup nobody delegated controllers to (a login without systemd's user manager): what
# Podman reports when it cannot apply limits on cgroup v2.
mkdir -p /sys/fs/cgroup/undelegated.slice/runner.scope
(echo $BASHPID >/sys/fs/cgroup/undelegated.slice/runner.scope/cgroup.procs &&
  exec runuser -u runner -- env -i PATH="$PATH" HOME=/home/runner USER=runner XDG_RUNTIME_DIR=/run/user/1001 \
    podman info --format json) >"$out/engine-info/podman5-rootless-cgroupv2-crun-pasta-undelegated.json"
echo "    rootless: $(as_runner podman info --format '{{.Host.CgroupManager}} {{.Host.CgroupsVersion}} {{.Host.NetworkBackend}} {{.Host.CgroupControllers}}')"

lane_check "doctor (Podman 5 rootful, crun, cgroup v2)" timed doctor_says env -- --engine podman
lane_check "doctor (Podman 5 rootless, crun, cgroup v2, pasta)" timed doctor_says as_runner -- --engine podman
limits_in_container() { # airlock's limits reach the cgroup of a rootless container
  local ws seen
  ws=$(as_runner mktemp -d /tmp/airlock-limits-XXXXXX)
  as_runner mkdir "$ws/.airlock"
  printf 'network_sandbox: false\nresource_limits:\n  memory: 64m\n  pids_limit: 32\n' | as_runner tee "$ws/.airlock/sandbox.yaml" >/dev/null
  seen=$(cd "$ws" && as_runner node "$repo/dist/cli/bin.js" run --engine podman -- \
    cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max 2>&1 | tr '\n' ' ')
  echo "    memory.max pids.max: $seen"
  [[ $seen == *"67108864 32 " ]]
}
lane_check "memory and pids limits enforced rootless on cgroup v2" timed limits_in_container
lane_check "smoke: the network sandbox, rootful" timed bash "$repo/scripts/lanes/smoke.sh" "$repo" podman
lane_check "smoke: the network sandbox, rootless (pasta)" timed as_runner bash "$repo/scripts/lanes/smoke.sh" "$repo" podman

if [[ $suites != smoke ]]; then
  t=$SECONDS
  (cd "$repo" && env TMPDIR=/tmp node --import tsx --test --test-concurrency=1 --test-timeout=1200000 \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$out/escape.tap" "$repo"/test/escape/*.test.ts)
  echo "    escape suite: $((SECONDS - t))s"
  lane_add_tap "$out/escape.tap"
fi
lane_summary vm part
