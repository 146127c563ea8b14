import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { clampLimits, parseHardLimit } from '../../src/cli/engine/host-limits.js';
import {
  adviseStartFailure,
  judgeRuntime,
  judgeUlimits,
  judgeVersion,
  parseVersion,
} from '../../src/cli/engine/diagnose.js';

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max processes             96364                96364                processes
Max open files            1024                 20000                files
Max locked memory         unlimited            unlimited            bytes
`;

describe('container ulimits follow the host', () => {
  it('reads the hard limit, not the soft one', () => {
    assert.equal(parseHardLimit(LIMITS, 'Max open files'), 20000);
    assert.equal(parseHardLimit(LIMITS, 'Max processes'), 96364);
    assert.equal(parseHardLimit(LIMITS, 'Max locked memory'), Infinity);
    assert.equal(parseHardLimit(LIMITS, 'Max nonsense'), null);
  });

  it('never exceeds the hard limit, nr_open, pid_max or the engines’ own defaults', () => {
    assert.deepEqual(clampLimits({ hardNofile: 20000, hardNproc: 96364, nrOpen: 1048576, pidMax: 32768 }), {
      nofile: 20000,
      nproc: 32768,
    });
    assert.deepEqual(clampLimits({ hardNofile: Infinity, hardNproc: Infinity, nrOpen: null, pidMax: null }), {
      nofile: 1048576,
      nproc: 4194304,
    });
    assert.deepEqual(clampLimits({ hardNofile: 5000000, hardNproc: 10, nrOpen: 65536, pidMax: 4194304 }), {
      nofile: 65536,
      nproc: 10,
    });
  });
});

describe('airlock doctor diagnoses', () => {
  it('crun on a hybrid cgroup v1 host whose cgroup2 hierarchy holds controllers fails with the runc fix', () => {
    const hybrid = { engine: 'podman', runtime: 'crun', cgroupVersion: 'v1', hybridControllers: ['hugetlb'] } as const;
    const finding = judgeRuntime({ ...hybrid, runcInstalled: true });
    assert.equal(finding.verdict, 'fail');
    assert.match(finding.detail, /hugetlb/);
    assert.match(finding.fix ?? '', /runtime = "runc"/);
    const missing = judgeRuntime({ ...hybrid, runcInstalled: false });
    assert.match(missing.fix ?? '', /install runc/);
  });

  it('crun on cgroup v1 without controllers on a cgroup2 hierarchy is fine (the Podman 5 lane runs it)', () => {
    const legacy = { engine: 'podman', runtime: 'crun', cgroupVersion: 'v1', runcInstalled: false } as const;
    assert.equal(judgeRuntime({ ...legacy, hybridControllers: [] }).verdict, 'ok');
  });

  it('crun on cgroup v2 and runc anywhere are fine', () => {
    assert.equal(
      judgeRuntime({
        engine: 'podman',
        runtime: 'crun',
        cgroupVersion: 'v2',
        runcInstalled: false,
        hybridControllers: [],
      }).verdict,
      'ok',
    );
    assert.equal(
      judgeRuntime({
        engine: 'podman',
        runtime: 'runc',
        cgroupVersion: 'v1',
        runcInstalled: true,
        hybridControllers: ['hugetlb'],
      }).verdict,
      'ok',
    );
  });

  it('versions below the minimum fail, unreadable versions fail with a fix', () => {
    assert.deepEqual(parseVersion('4.9.3'), [4, 9]);
    assert.equal(judgeVersion('podman', '4.3.1').verdict, 'ok');
    assert.equal(judgeVersion('podman', '3.4.4').verdict, 'fail');
    assert.equal(judgeVersion('docker', '20.10.7').verdict, 'ok');
    assert.equal(judgeVersion('docker', '19.03.1').verdict, 'fail');
    assert.match(judgeVersion('docker', '').fix ?? '', /dockerd/);
  });

  it('warns about a tiny open-file limit', () => {
    assert.equal(judgeUlimits({ hardNofile: 256, nofile: 256, nproc: 100 }).verdict, 'warn');
    assert.equal(judgeUlimits({ hardNofile: 20000, nofile: 20000, nproc: 100 }).verdict, 'ok');
  });
});

describe('a container that would not start: the fix, whichever runtime words it', () => {
  // Recorded on this project's machine (Podman 4.3.1; runc 1.1.5; crun 1.8.1 from Debian 12 via --runtime), except
  // the last crun text, which is crun's own message for a cgroup v2 controller the user was not delegated.
  const RUNC_RLIMIT =
    'Error: runc: runc create failed: unable to start container process: error during container init: error setting rlimits for ready process: error setting rlimit type 7: operation not permitted: OCI permission denied';
  const CRUN_RLIMIT = 'Error: /usr/bin/crun: setrlimit `RLIMIT_NOFILE`: Operation not permitted: OCI permission denied';
  const CRUN_HYBRID =
    'Error: OCI runtime error: /usr/bin/crun: cgroups in hybrid mode not supported, drop all controllers from cgroupv2';
  const CRUN_CONTROLLER = 'Error: OCI runtime error: crun: the requested cgroup controller `pids` is not available';

  it('an rlimit above the host’s, in runc’s and crun’s words alike', () => {
    for (const text of [RUNC_RLIMIT, CRUN_RLIMIT]) assert.match(adviseStartFailure(text), /ulimit exceeds/, text);
  });

  it('crun on a hybrid cgroup v1 host (it fails rootless too): use runc', () => {
    assert.match(adviseStartFailure(CRUN_HYBRID), /runtime = "runc"/);
    assert.match(adviseStartFailure(CRUN_HYBRID), /rootful or rootless/);
  });

  it('a controller not delegated on cgroup v2 names the controller', () => {
    assert.match(adviseStartFailure(CRUN_CONTROLLER), /the pids cgroup controller is not delegated/);
  });

  it('anything else: how to see the failing flags', () => {
    assert.match(adviseStartFailure('Error: something else'), /--debug/);
  });
});
