/**
 * The judgements behind `airlock doctor`, as pure functions of facts gathered from the engine and the host, so each
 * diagnosis (and its suggested fix) is unit-tested.
 */
import type { EngineKind } from './engine.js';
import type { EngineFacts } from './engine-info.js';
import { DEFAULT_PIDS_LIMIT } from './run-args.js';
import { cgroupLimitRequests, judgeLimitEnforcement } from './limit-enforcement.js';

export type Verdict = 'ok' | 'warn' | 'fail';

export interface Finding {
  check: string;
  verdict: Verdict;
  detail: string;
  fix?: string;
}

export const MINIMUM_VERSION: Record<EngineKind, [number, number]> = { podman: [4, 3], docker: [20, 10] };

export function parseVersion(text: string): [number, number] | null {
  const m = /(\d+)\.(\d+)/.exec(text);
  return m ? [Number(m[1]), Number(m[2])] : null;
}

export function judgeVersion(kind: EngineKind, text: string): Finding {
  const version = parseVersion(text);
  const [major, minor] = MINIMUM_VERSION[kind];
  if (!version) {
    return {
      check: 'version',
      verdict: 'fail',
      detail: `could not read the ${kind} version (${text.trim() || 'no answer'})`,
      fix:
        kind === 'docker' ? 'start the Docker daemon (dockerd) and check `docker version`' : `run \`${kind} version\``,
    };
  }
  const ok = version[0] > major || (version[0] === major && version[1] >= minor);
  return {
    check: 'version',
    verdict: ok ? 'ok' : 'fail',
    detail: `${kind} ${version.join('.')}`,
    ...(ok ? {} : { fix: `upgrade ${kind} to ${major}.${minor} or later` }),
  };
}

export interface CgroupFacts {
  /** 'v1' or 'v2' as the engine reports it. */
  version: string;
  /** cgroup v1 with the v2 hierarchy mounted at /sys/fs/cgroup/unified. */
  hybrid: boolean;
  /** `systemd`, `cgroupfs`, … as the engine reports it; '' when unknown. */
  manager?: string;
}

/** What the host runs; whether the engine can use it for limits is `judgeLimits`' business. */
export function judgeCgroups(facts: CgroupFacts): Finding {
  if (facts.version === 'v2' || facts.version === '2') {
    return { check: 'cgroups', verdict: 'ok', detail: `cgroup v2${facts.manager ? `, ${facts.manager} manager` : ''}` };
  }
  return {
    check: 'cgroups',
    verdict: 'ok',
    detail: `cgroup v1${facts.hybrid ? ' (hybrid)' : ''}${facts.manager ? `, ${facts.manager} manager` : ''}`,
  };
}

/**
 * Up front, what every `airlock run` would be warned about: which cgroup limits (pids always — airlock sets a
 * default —, memory and cpus when configured) this engine enforces here. `required` (doctor --require-limits)
 * turns a missing one into a failure, as `resource_limits.require` does for a run.
 */
export function judgeLimits(facts: EngineFacts, required: boolean): Finding {
  const requests = cgroupLimitRequests({
    pidsLimit: DEFAULT_PIDS_LIMIT,
    pidsLimitDefaulted: true,
    memory: '1g',
    cpus: 1,
  });
  const verdict = judgeLimitEnforcement(facts, requests);
  if (verdict.unenforced.length === 0) {
    return { check: 'limits', verdict: 'ok', detail: 'pids_limit, memory and cpus limits are enforced' };
  }
  const names = verdict.unenforced.map((u) => u.name).join(', ');
  const why = [...new Set(verdict.unenforced.map((u) => u.reason))].join('; ');
  return {
    check: 'limits',
    verdict: required ? 'fail' : 'warn',
    detail:
      `NOT enforced here: ${names} (${why}); runs warn about it, and resource_limits.require: true or ` +
      '--require-limits makes them exit 125 instead',
    fix: verdict.fix,
  };
}

/** Rootless storage: vfs copies the whole image for every container (disk-hungry, and slow for large images). */
export function judgeStorage(facts: EngineFacts): Finding {
  const detail = `${facts.storageDriver || 'unknown'} storage driver${facts.rootless ? ' (per-user image storage)' : ''}`;
  if (facts.storageDriver === 'vfs') {
    return {
      check: 'storage',
      verdict: 'warn',
      detail: `${detail}: every container start copies the whole image`,
      fix:
        facts.engine === 'podman'
          ? 'install containers-storage (its storage.conf selects overlay), or set driver = "overlay" in ' +
            "~/.config/containers/storage.conf, then `podman system reset` (removes this user's images)"
          : 'configure the overlay2 storage driver for dockerd',
    };
  }
  return { check: 'storage', verdict: 'ok', detail };
}

export interface RuntimeFacts {
  engine: EngineKind;
  runtime: string;
  cgroupVersion: string;
  runcInstalled: boolean;
  /**
   * Controllers enabled on the cgroup2 hierarchy that a cgroup v1 host mounts beside its v1 hierarchies
   * (`/sys/fs/cgroup/unified/cgroup.controllers`); empty when there is none or it holds no controller.
   */
  hybridControllers: readonly string[];
}

/**
 * crun runs on cgroup v2, and on cgroup v1 as long as the cgroup2 hierarchy beside it holds no controller (the
 * classic systemd hybrid layout, or v1 alone); with a controller there it refuses every container ("cgroups in
 * hybrid mode not supported, drop all controllers from cgroupv2" — crun 1.21 on the development machine, whose
 * unified hierarchy holds hugetlb). runc runs in all three.
 */
export function judgeRuntime(facts: RuntimeFacts): Finding {
  const v1 = !(facts.cgroupVersion === 'v2' || facts.cgroupVersion === '2');
  if (facts.engine === 'podman' && facts.runtime === 'crun' && v1 && facts.hybridControllers.length > 0) {
    return {
      check: 'runtime',
      verdict: 'fail',
      detail:
        `podman uses crun, which refuses cgroup v1 hosts whose cgroup2 hierarchy holds controllers ` +
        `(here: ${facts.hybridControllers.join(' ')}): "cgroups in hybrid mode not supported"`,
      fix: facts.runcInstalled
        ? 'set `runtime = "runc"` under [engine] in /etc/containers/containers.conf (or ~/.config/containers/containers.conf)'
        : 'install runc (apt-get install runc) and set `runtime = "runc"` under [engine] in containers.conf',
    };
  }
  return { check: 'runtime', verdict: 'ok', detail: `${facts.runtime || 'default runtime'}` };
}

export interface UlimitFacts {
  hardNofile: number | null;
  nofile: number;
  nproc: number;
}

export function judgeUlimits(facts: UlimitFacts): Finding {
  const detail = `containers get nofile=${facts.nofile} nproc=${facts.nproc} (clamped to this host's hard limits)`;
  if (facts.hardNofile !== null && facts.hardNofile < 1024) {
    return {
      check: 'ulimits',
      verdict: 'warn',
      detail: `${detail}; the open-file hard limit ${facts.hardNofile} is low for builds`,
      fix: 'raise the hard nofile limit (ulimit -Hn, LimitNOFILE= in the service unit, /etc/security/limits.conf)',
    };
  }
  return { check: 'ulimits', verdict: 'ok', detail };
}

export function formatFinding(finding: Finding): string {
  const mark = finding.verdict === 'ok' ? 'ok  ' : finding.verdict === 'warn' ? 'warn' : 'FAIL';
  const fix = finding.fix && finding.verdict !== 'ok' ? `\n      fix: ${finding.fix}` : '';
  return `${mark}  ${finding.check}: ${finding.detail}${fix}\n`;
}

/**
 * The fix for a container that would not start, from the runtime's last line. runc and crun word the same
 * failures differently (texts as recorded on this project's machine and in crun's source):
 *   runc: `error setting rlimit type 7: operation not permitted`
 *   crun: ``setrlimit `RLIMIT_NOFILE`: Operation not permitted``
 *   crun: `cgroups in hybrid mode not supported, drop all controllers from cgroupv2` (rootful and rootless alike)
 *   crun: ``the requested cgroup controller `pids` is not available`` (cgroup v2, controller not delegated)
 */
export function adviseStartFailure(message: string): string {
  if (/rlimit/i.test(message)) {
    return 'a ulimit exceeds what this host allows: raise the hard limits or lower default_ulimits in containers.conf';
  }
  if (/cgroups in hybrid mode/i.test(message)) {
    return 'crun cannot run on this hybrid cgroup v1 host (rootful or rootless): install runc and set `runtime = "runc"` under [engine] in containers.conf, or boot with cgroup v2';
  }
  const controller = /requested cgroup controller `?(\w+)`? is not available/i.exec(message);
  if (controller) {
    return `the ${controller[1]} cgroup controller is not delegated to this user: delegate it (Delegate=cpu memory pids for user@.service) or run rootful`;
  }
  if (/cgroup/i.test(message)) {
    return 'the runtime cannot manage cgroups here: use runc (runtime = "runc" in containers.conf) or cgroup v2';
  }
  if (/seccomp/i.test(message)) {
    return (
      'the engine cannot apply airlock’s seccomp profile: enable seccomp in the kernel and use an engine and OCI ' +
      'runtime built with seccomp support (podman info: seccompEnabled; docker info: name=seccomp)'
    );
  }
  return 'run the engine by hand with the failing flags shown by `airlock run --debug -- true`';
}
