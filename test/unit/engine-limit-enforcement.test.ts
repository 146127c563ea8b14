/**
 * Which cgroup limits an engine enforces, judged from its `info` output: every recorded world in
 * test/fixtures/engine-info/ (real `podman info` / `docker info` output plus what a probe container observed there)
 * must be judged exactly as the kernel behaved. Worlds this machine cannot boot are covered by the pure rules below,
 * on copies of real outputs changed in the one field that differs — marked as such.
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { judgeLimits, judgeStorage } from '../../src/cli/engine/diagnose.js';
import {
  limitFactsFromHost,
  parseDockerInfo,
  parseEngineInfo,
  parsePodmanInfo,
  v1Controllers,
  type EngineFacts,
  type HostCgroupState,
} from '../../src/cli/engine/engine-info.js';
import {
  cgroupLimitRequests,
  describeUnenforced,
  judgeLimitEnforcement,
  settleLimits,
  type CgroupLimitName,
} from '../../src/cli/engine/limit-enforcement.js';
import { EngineError } from '../../src/cli/errors.js';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/engine-info');

interface WorldFixture {
  world: string;
  engine: 'podman' | 'docker';
  info: Record<string, unknown>;
  /** What airlock reads from the host (recorded since the host short cut existed). */
  host?: HostCgroupState;
  observed: Record<CgroupLimitName, 'enforced' | 'not enforced'> & { probe: string[] };
}

function readFixtures(): Array<[string, Record<string, unknown>]> {
  return readdirSync(FIXTURES)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => [
      f.replace(/\.json$/, ''),
      JSON.parse(readFileSync(path.join(FIXTURES, f), 'utf8')) as Record<string, unknown>,
    ]);
}

/** Worlds recorded by scripts/record-engine-world.ts: `info` plus what a probe container observed there. */
function loadWorlds(): WorldFixture[] {
  return readFixtures()
    .filter(([, json]) => 'observed' in json)
    .map(([name, json]) => {
      const fixture = json as unknown as WorldFixture;
      assert.equal(fixture.world, name, `${name}.json: "world" names the file`);
      return fixture;
    });
}

const ALL: CgroupLimitName[] = ['cpus', 'memory', 'pids_limit'];

/**
 * Worlds the Podman 5 and cgroup v2 lanes record as bare `info` output (scripts/lanes/), with what each lane found
 * there or, where it did not measure, what the engine documents. A bare file without an entry here fails the test:
 * whoever adds a world says what it enforces.
 */
const BARE_WORLDS: Record<string, { unenforced: CgroupLimitName[]; cgroupWritable?: boolean; evidence: string }> = {
  'docker26-rootful-cgroupv1-runc': {
    unenforced: [],
    evidence: "Podman 5 lane: Docker's escape-suite fork bomb is stopped",
  },
  'podman5-rootful-cgroupv1-crun': { unenforced: [], evidence: 'Podman 5 lane: the escape-suite fork bomb is stopped' },
  'podman5-rootful-cgroupv2-crun': {
    unenforced: [],
    evidence: 'cgroup v2 lane: the rootful escape-suite fork bomb is stopped',
  },
  'podman5-rootless-cgroupv1-crun-pasta': {
    unenforced: ALL,
    evidence: 'Podman: "Resource limits are not supported and ignored on cgroups V1 rootless systems"',
  },
  'podman5-rootless-cgroupv2-crun-pasta': {
    unenforced: [],
    // The VM's init delegates every controller to runner's subtree and runs its shells in a leaf of it.
    cgroupWritable: true,
    evidence: "cgroup v2 lane: memory.max and pids.max read back from a rootless container's cgroup (cgroupfs manager)",
  },
  'podman5-rootless-cgroupv2-crun-pasta-undelegated': {
    unenforced: ALL,
    cgroupWritable: false,
    evidence: 'cgroup v2 lane: Podman reports no controllers for a user in a cgroup nobody delegated',
  },
};

function world(name: string): WorldFixture {
  const found = loadWorlds().find((w) => w.world === name);
  assert.ok(found, `fixture ${name} is recorded`);
  return structuredClone(found);
}

const ALL_THREE = cgroupLimitRequests({ pidsLimit: 32, pidsLimitDefaulted: false, memory: '64m', cpus: 0.5 });
const unenforcedNames = (facts: EngineFacts) =>
  judgeLimitEnforcement(facts, ALL_THREE)
    .unenforced.map((u) => u.name)
    .sort();

describe('every recorded world is judged as the kernel behaved there', { timeout: 30_000 }, () => {
  const worlds = loadWorlds();
  it('has the worlds this machine can reach (rootful Podman and Docker, rootless Podman on cgroup v1)', () => {
    const names = worlds.map((w) => w.world);
    for (const name of [
      'debian12-podman4.3-rootful-cgroupv1-runc',
      'debian12-podman4.3-rootless-cgroupv1-runc',
      'debian12-docker20.10-rootful-cgroupv1-runc',
    ]) {
      assert.ok(names.includes(name), `${name} missing from ${FIXTURES}`);
    }
  });
  for (const [name, info] of readFixtures().filter(([, json]) => !('observed' in json))) {
    it(`${name} (bare info from its lane): judged as the lane found`, () => {
      const expected = BARE_WORLDS[name];
      assert.ok(expected, `${name}.json has no entry in BARE_WORLDS: say what that world enforces, and how you know`);
      const kind = 'ServerVersion' in info ? 'docker' : 'podman';
      const facts = { ...parseEngineInfo(kind, info), cgroupWritable: expected.cgroupWritable ?? null };
      assert.deepEqual(unenforcedNames(facts), expected.unenforced, expected.evidence);
    });
  }
  for (const fixture of worlds) {
    it(`${fixture.world}: the limits airlock calls unenforced are exactly those the probe saw unenforced`, () => {
      assert.ok(fixture.engine === 'podman' || fixture.engine === 'docker', 'engine is podman or docker');
      const observed = (['cpus', 'memory', 'pids_limit'] as const).filter(
        (name) => fixture.observed[name] === 'not enforced',
      );
      for (const name of ['cpus', 'memory', 'pids_limit'] as const) {
        assert.match(fixture.observed[name], /^(enforced|not enforced)$/, `observed.${name}`);
      }
      assert.deepEqual(unenforcedNames(parseEngineInfo(fixture.engine, fixture.info)), observed);
    });
    if (fixture.host) {
      const host = fixture.host;
      it(`${fixture.world}: judged from the host alone (when that decides it), the same limits`, () => {
        const fromHost = limitFactsFromHost(fixture.engine, host);
        const observed = (['cpus', 'memory', 'pids_limit'] as const).filter(
          (name) => fixture.observed[name] === 'not enforced',
        );
        if (fromHost) assert.deepEqual(unenforcedNames(fromHost), observed);
        else assert.ok(fixture.engine === 'docker' || host.remote || (host.euid !== 0 && host.unifiedControllers));
      });
    }
  }
});

describe('engine facts from real info output', { timeout: 30_000 }, () => {
  it('rootless Podman 4.3 on hybrid cgroup v1: rootless, v1, cgroupfs, no controllers, slirp4netns, overlay', () => {
    const facts = parsePodmanInfo(world('debian12-podman4.3-rootless-cgroupv1-runc').info);
    assert.deepEqual(
      { ...facts, version: facts.version.replace(/^(\d+\.\d+)\..*$/, '$1') },
      {
        engine: 'podman',
        version: '4.3',
        rootless: true,
        cgroupVersion: 1,
        cgroupManager: 'cgroupfs',
        cgroupControllers: [],
        limitSupport: null,
        runtime: 'runc',
        storageDriver: 'overlay',
        rootlessNetwork: 'slirp4netns',
        warnings: [],
        cgroupWritable: null,
      },
    );
  });

  it('rootful Podman: every v1 controller a limit needs, no rootless network helper', () => {
    const facts = parsePodmanInfo(world('debian12-podman4.3-rootful-cgroupv1-runc').info);
    assert.equal(facts.rootless, false);
    assert.equal(facts.rootlessNetwork, null);
    for (const c of ['pids', 'memory', 'cpu']) assert.ok(facts.cgroupControllers?.includes(c), c);
  });

  it('rootful Docker 20.10: cgroup "1", cgroupfs driver, every limit supported', () => {
    const facts = parseDockerInfo(world('debian12-docker20.10-rootful-cgroupv1-runc').info);
    assert.equal(facts.rootless, false);
    assert.equal(facts.cgroupVersion, 1);
    assert.equal(facts.cgroupManager, 'cgroupfs');
    assert.deepEqual(facts.limitSupport, { memory: true, swap: true, pids: true, cpus: true });
    assert.equal(facts.storageDriver, 'overlay2');
  });

  it('tolerates fields of the wrong type or missing: unknown, never a guess', () => {
    const facts = parsePodmanInfo({ host: { cgroupControllers: 'pids', security: { rootless: 'yes' } }, store: 7 });
    assert.equal(facts.cgroupControllers, null);
    assert.equal(facts.rootless, false);
    assert.equal(facts.cgroupVersion, null);
    assert.equal(facts.storageDriver, '');
    assert.deepEqual(unenforcedNames(facts), [], 'nothing is claimed without the facts to claim it');
    assert.equal(parseDockerInfo({}).limitSupport?.pids, false);
  });
});

describe('the rules for worlds this machine cannot boot (real output, one field changed)', { timeout: 30_000 }, () => {
  const rootlessV1 = () => world('debian12-podman4.3-rootless-cgroupv1-runc').info as { host: Record<string, unknown> };

  it('rootless Podman on cgroup v2 with the systemd manager: a limit whose controller is not delegated', () => {
    const info = rootlessV1();
    Object.assign(info.host, { cgroupVersion: 'v2', cgroupManager: 'systemd', cgroupControllers: ['memory', 'pids'] });
    const verdict = judgeLimitEnforcement(parsePodmanInfo(info), ALL_THREE);
    assert.deepEqual(
      verdict.unenforced.map((u) => u.name),
      ['cpus'],
    );
    assert.match(
      verdict.unenforced[0]!.reason,
      /cpu cgroup controller is not available to this user \(available: memory, pids\)/,
    );
    assert.match(verdict.fix, /Delegate=cpu memory pids/);
  });

  it('rootless Podman on cgroup v2 with every controller delegated: all enforced', () => {
    const info = rootlessV1();
    Object.assign(info.host, {
      cgroupVersion: 'v2',
      cgroupManager: 'systemd',
      cgroupControllers: ['cpu', 'io', 'memory', 'pids'],
    });
    assert.deepEqual(unenforcedNames(parsePodmanInfo(info)), []);
  });

  it('rootless Podman with the cgroupfs manager on cgroup v2 in a cgroup it may not write: nothing enforced', () => {
    // As containers/podman#21575 reports it: every controller listed, the limits accepted and without effect.
    const info = rootlessV1();
    Object.assign(info.host, {
      cgroupVersion: 'v2',
      cgroupManager: 'cgroupfs',
      cgroupControllers: ['cpuset', 'cpu', 'io', 'memory', 'pids'],
    });
    const facts = { ...parsePodmanInfo(info), cgroupWritable: false };
    const verdict = judgeLimitEnforcement(facts, ALL_THREE);
    assert.deepEqual(unenforcedNames(facts), ['cpus', 'memory', 'pids_limit']);
    assert.match(verdict.fix, /cgroup_manager = "systemd"/);
    assert.match(verdict.fix, /enable-linger/);
    // That judgement rests on the host, not on the engine's own report: the limits are still passed.
    const wanted = { pidsLimit: 32, memory: '64m', cpus: 0.5, nofile: 1, nproc: 1 };
    const settled = settleLimits({ ok: true, facts }, wanted, ALL_THREE, null);
    assert.deepEqual(settled.limits, wanted);
    assert.match(settled.warning ?? '', /NOT enforced/);
  });

  it('… in a delegated cgroup it may write (as in the cgroup v2 lane’s VM): the controllers decide, as with systemd', () => {
    const info = rootlessV1();
    Object.assign(info.host, { cgroupVersion: 'v2', cgroupManager: 'cgroupfs', cgroupControllers: ['memory', 'pids'] });
    assert.deepEqual(unenforcedNames({ ...parsePodmanInfo(info), cgroupWritable: true }), ['cpus']);
    assert.deepEqual(
      unenforcedNames({ ...parsePodmanInfo(info), cgroupWritable: null }),
      ['cpus'],
      'unknown: not claimed',
    );
  });

  it('Podman 5 names its network helper (rootlessNetworkCmd: pasta)', () => {
    const info = rootlessV1();
    Object.assign(info.host, { rootlessNetworkCmd: 'pasta', pasta: { executable: '/usr/bin/passt' } });
    assert.equal(parsePodmanInfo(info).rootlessNetwork, 'pasta');
  });

  it('Docker without cgroups (CgroupDriver none, rootless on v1): nothing enforced', () => {
    const info = world('debian12-docker20.10-rootful-cgroupv1-runc').info;
    Object.assign(info, { CgroupDriver: 'none', SecurityOptions: ['name=seccomp,profile=default', 'name=rootless'] });
    const facts = parseDockerInfo(info);
    assert.equal(facts.rootless, true);
    assert.deepEqual(unenforcedNames(facts), ['cpus', 'memory', 'pids_limit']);
  });

  it('Docker without one controller: only that limit', () => {
    const info = world('debian12-docker20.10-rootful-cgroupv1-runc').info;
    Object.assign(info, { PidsLimit: false, Warnings: ['WARNING: No pids limit support'] });
    const facts = parseDockerInfo(info);
    assert.deepEqual(facts.warnings, ['No pids limit support']);
    const verdict = judgeLimitEnforcement(facts, ALL_THREE);
    assert.deepEqual(
      verdict.unenforced.map((u) => u.name),
      ['pids_limit'],
    );
    assert.match(verdict.unenforced[0]!.reason, /PidsLimit false/);
  });
});

describe('the host short cut: only where the host decides it as surely as the engine', { timeout: 30_000 }, () => {
  const procCgroups = [
    '#subsys_name\thierarchy\tnum_cgroups\tenabled',
    'cpuset\t3\t8\t1',
    'cpu\t1\t8\t1',
    'memory\t4\t499\t1',
    'net_cls\t0\t13\t1',
    'pids\t0\t8\t1',
    'hugetlb\t9\t1\t0',
  ].join('\n');
  const state = (over: Partial<HostCgroupState>): HostCgroupState => ({
    euid: 0,
    unifiedControllers: null,
    procCgroups,
    remote: false,
    ownCgroupWritable: null,
    ...over,
  });

  it('reads the mounted, enabled v1 controllers from /proc/cgroups', () => {
    assert.deepEqual(v1Controllers(procCgroups), ['cpuset', 'cpu', 'memory']);
  });

  it('rootful on v1 without a pids hierarchy: pids_limit is not enforced, memory and cpus are', () => {
    const facts = limitFactsFromHost('podman', state({}));
    assert.ok(facts);
    assert.deepEqual(unenforcedNames(facts), ['pids_limit']);
  });

  it('rootful on v2: the root cgroup controllers', () => {
    const facts = limitFactsFromHost('podman', state({ unifiedControllers: ['cpu', 'memory', 'pids'] }));
    assert.deepEqual(facts && unenforcedNames(facts), []);
  });

  it('rootless on v1: nothing, whatever /proc/cgroups says', () => {
    const facts = limitFactsFromHost('podman', state({ euid: 1001 }));
    assert.deepEqual(facts && unenforcedNames(facts), ['cpus', 'memory', 'pids_limit']);
  });

  it('rootless on v2, a remote Podman, and Docker: the engine is asked', () => {
    assert.equal(limitFactsFromHost('podman', state({ euid: 1001, unifiedControllers: ['memory', 'pids'] })), null);
    assert.equal(limitFactsFromHost('podman', state({ remote: true })), null);
    assert.equal(limitFactsFromHost('docker', state({})), null);
  });
});

describe('what a run does with the verdict', { timeout: 30_000 }, () => {
  const rootless = () => parsePodmanInfo(world('debian12-podman4.3-rootless-cgroupv1-runc').info);
  const rootful = () => parsePodmanInfo(world('debian12-podman4.3-rootful-cgroupv1-runc').info);
  const wanted = { pidsLimit: 4096, memory: '2g', disk: '1g', nofile: 1024, nproc: 512 };
  const requests = cgroupLimitRequests({ pidsLimit: 4096, pidsLimitDefaulted: true, memory: '2g' });

  it('enforced everywhere: the limits pass unchanged, no warning', () => {
    assert.deepEqual(settleLimits({ ok: true, facts: rootful() }, wanted, requests, null), {
      limits: wanted,
      warning: null,
    });
  });

  it('not enforced: the unenforceable limits are left out and the warning names each, its value, why and the fix', () => {
    const { limits, warning } = settleLimits({ ok: true, facts: rootless() }, wanted, requests, null);
    assert.deepEqual(limits, { disk: '1g', nofile: 1024, nproc: 512 }, 'disk and ulimits do not need cgroups');
    assert.ok(warning);
    assert.match(warning, /pids_limit=4096 \(airlock's default\), memory=2g/);
    assert.match(warning, /rootless Podman cannot use cgroups on a cgroup v1 host/);
    assert.match(warning, /a fork bomb or a memory hog in it is not contained/);
    assert.match(warning, /Fix: run airlock as root \(sudo\)/);
    assert.match(warning, /resource_limits\.require: true or pass --require-limits/);
  });

  it('required: an EngineError (exit 125) naming the setting, before anything runs', () => {
    assert.throws(
      () => settleLimits({ ok: true, facts: rootless() }, wanted, requests, 'resource_limits.require'),
      (e: unknown) =>
        e instanceof EngineError &&
        e.exitCode === 125 &&
        /resource_limits\.require requires every resource limit to be enforced/.test(e.message) &&
        /pids_limit=4096 \(airlock's default\), memory=2g/.test(e.message) &&
        /Nothing was run/.test(e.message),
    );
    assert.doesNotThrow(() => settleLimits({ ok: true, facts: rootful() }, wanted, requests, '--require-limits'));
  });

  it('the engine cannot say: a warning — or, when required, an error (unknown is not "enforced")', () => {
    const answer = { ok: false as const, reason: '`podman info` failed: boom' };
    assert.match(settleLimits(answer, wanted, requests, null).warning ?? '', /could not check .* boom/);
    assert.throws(() => settleLimits(answer, wanted, requests, '--require-limits'), /cannot tell whether they are/);
  });

  it('the message lists only what was asked for', () => {
    const verdict = judgeLimitEnforcement(
      rootless(),
      cgroupLimitRequests({ pidsLimit: 10, pidsLimitDefaulted: false }),
    );
    const text = describeUnenforced(verdict);
    assert.match(text, /: pids_limit=10: /);
    assert.doesNotMatch(text, /memory|cpus=/);
  });
});

describe('airlock doctor reports limits and storage up front', { timeout: 30_000 }, () => {
  it('rootless on cgroup v1: a warning, a failure with --require-limits; rootful: ok', () => {
    const rootless = parsePodmanInfo(world('debian12-podman4.3-rootless-cgroupv1-runc').info);
    const warn = judgeLimits(rootless, false);
    assert.equal(warn.verdict, 'warn');
    assert.match(warn.detail, /NOT enforced here: pids_limit, memory, cpus/);
    assert.match(warn.fix ?? '', /sudo/);
    assert.equal(judgeLimits(rootless, true).verdict, 'fail');
    assert.equal(
      judgeLimits(parsePodmanInfo(world('debian12-podman4.3-rootful-cgroupv1-runc').info), true).verdict,
      'ok',
    );
  });

  it('the vfs storage driver (rootless Podman without containers-storage) is a warning with the fix', () => {
    const facts = parsePodmanInfo(world('debian12-podman4.3-rootless-cgroupv1-runc').info);
    assert.equal(judgeStorage(facts).verdict, 'ok');
    const vfs = judgeStorage({ ...facts, storageDriver: 'vfs' });
    assert.equal(vfs.verdict, 'warn');
    assert.match(vfs.detail, /copies the whole image/);
    assert.match(vfs.fix ?? '', /containers-storage/);
  });
});
