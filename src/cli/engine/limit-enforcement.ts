/**
 * Which of the container's cgroup limits (pids, memory, CPU) this engine on this host will actually enforce. Engines
 * drop what they cannot apply — rootless Podman on cgroup v1 drops them all with one log line, rootless Podman with
 * the cgroupfs manager and Docker without a controller drop them silently or with a warning nobody reads — and a
 * fork bomb or a memory hog is then no longer contained. airlock decides from the engine's own report (`info`)
 * before the run, says which limit is not enforced and why, and with `resource_limits.require` refuses to run.
 * Pure: facts in, verdict out; every world's real `info` output is a test fixture.
 */
import { EngineError } from '../errors.js';
import type { EngineFacts, EngineFactsResult } from './engine-info.js';

export type CgroupLimitName = 'pids_limit' | 'memory' | 'cpus';

export interface CgroupLimitRequest {
  name: CgroupLimitName;
  /** As the user wrote it (`4096`, `2g`, `1.5`). */
  value: string;
  /** airlock's default rather than the user's setting. */
  defaulted: boolean;
}

export interface UnenforcedLimit extends CgroupLimitRequest {
  reason: string;
  /**
   * The engine itself drops or refuses this limit (its own report says so), so leaving it out of the run changes
   * nothing but a misleading line or a failed start. False where airlock's judgement rests on more than the
   * engine's report: the limit is then still passed, in case the judgement is wrong.
   */
  engineDrops: boolean;
}

export interface LimitVerdict {
  unenforced: UnenforcedLimit[];
  /** What to change on the host so that every limit is enforced; '' when nothing is missing. */
  fix: string;
}

/** The cgroup controller each limit needs (the same name on v1 and v2). */
export const LIMIT_CONTROLLER: Record<CgroupLimitName, string> = { pids_limit: 'pids', memory: 'memory', cpus: 'cpu' };

const DOCKER_SUPPORT: Record<CgroupLimitName, keyof NonNullable<EngineFacts['limitSupport']>> = {
  pids_limit: 'pids',
  memory: 'memory',
  cpus: 'cpus',
};
const DOCKER_INFO_FIELD: Record<CgroupLimitName, string> = {
  pids_limit: 'PidsLimit',
  memory: 'MemoryLimit',
  cpus: 'CpuCfsQuota',
};

const ROOTFUL_FIX = 'run airlock as root (sudo) so the engine runs rootful';
const SYSTEMD_SESSION_FIX =
  'give the user a systemd session (`sudo loginctl enable-linger USER`) and set `cgroup_manager = "systemd"` under ' +
  '[engine] in ~/.config/containers/containers.conf';
const DELEGATION_FIX =
  'delegate the controllers to the user: a drop-in for user@.service with `Delegate=cpu memory pids` ' +
  '(/etc/systemd/system/user@.service.d/delegate.conf), then log in again';

export function judgeLimitEnforcement(facts: EngineFacts, requests: CgroupLimitRequest[]): LimitVerdict {
  const all = (reason: string, fix: string, engineDrops = true): LimitVerdict => ({
    unenforced: requests.map((r) => ({ ...r, reason, engineDrops })),
    fix: requests.length > 0 ? fix : '',
  });

  if (facts.engine === 'podman') {
    if (facts.rootless && facts.cgroupVersion === 1) {
      return all(
        'rootless Podman cannot use cgroups on a cgroup v1 host and drops every limit',
        `${ROOTFUL_FIX}, or use a cgroup v2 host (systemd.unified_cgroup_hierarchy=1) with a systemd user session`,
      );
    }
    // With the cgroupfs manager rootless Podman can only place the container in a cgroup the user may write: its
    // own, when that is delegated (a systemd user session's is; the cgroup v2 lane's VM proves limits then hold).
    // Otherwise it ignores the limits without a word (containers/podman#21575).
    if (facts.rootless && facts.cgroupManager === 'cgroupfs' && facts.cgroupWritable === false) {
      return all(
        "rootless Podman with the cgroupfs cgroup manager needs a cgroup delegated to the user, and this process's " +
          'cgroup is not writable by it: Podman creates no cgroup for the container and ignores the limits',
        `${SYSTEMD_SESSION_FIX}; or ${ROOTFUL_FIX}`,
        false,
      );
    }
    const available = facts.cgroupControllers;
    if (available === null) return { unenforced: [], fix: '' };
    const unenforced = requests
      .filter((r) => !available.includes(LIMIT_CONTROLLER[r.name]))
      .map((r) => ({
        ...r,
        reason:
          `the ${LIMIT_CONTROLLER[r.name]} cgroup controller is not available to ` +
          `${facts.rootless ? 'this user' : 'the engine'} (available: ${available.join(', ') || 'none'})`,
        engineDrops: true,
      }));
    const fix =
      unenforced.length === 0
        ? ''
        : facts.rootless
          ? `${DELEGATION_FIX}; or ${ROOTFUL_FIX}`
          : 'enable the missing cgroup controllers in the kernel and mount them';
    return { unenforced, fix };
  }

  if (facts.cgroupManager === 'none') {
    return all(
      `Docker runs without cgroups here${facts.rootless ? ' (rootless Docker on a cgroup v1 host)' : ''} and drops every limit`,
      facts.rootless
        ? `use a cgroup v2 host with delegated controllers, or rootful Docker`
        : 'run dockerd with cgroups',
    );
  }
  const support = facts.limitSupport;
  if (support === null) return { unenforced: [], fix: '' };
  const unenforced = requests
    .filter((r) => !support[DOCKER_SUPPORT[r.name]])
    .map((r) => ({
      ...r,
      reason: `Docker reports no support for it (\`docker info\`: ${DOCKER_INFO_FIELD[r.name]} false)`,
      engineDrops: true,
    }));
  const fix =
    unenforced.length === 0
      ? ''
      : facts.rootless
        ? `${DELEGATION_FIX}, then restart rootless dockerd; or use rootful Docker`
        : 'enable the missing cgroup controllers for dockerd (kernel command line, cgroup mounts)';
  return { unenforced, fix };
}

/** The limits a run asks the engine for, in the order the message names them. */
export function cgroupLimitRequests(limits: {
  pidsLimit: number;
  pidsLimitDefaulted: boolean;
  memory?: string;
  cpus?: number;
}): CgroupLimitRequest[] {
  const out: CgroupLimitRequest[] = [
    { name: 'pids_limit', value: String(limits.pidsLimit), defaulted: limits.pidsLimitDefaulted },
  ];
  if (limits.memory !== undefined) out.push({ name: 'memory', value: limits.memory, defaulted: false });
  if (limits.cpus !== undefined) out.push({ name: 'cpus', value: String(limits.cpus), defaulted: false });
  return out;
}

function limitList(unenforced: UnenforcedLimit[]): string {
  return unenforced.map((u) => `${u.name}=${u.value}${u.defaulted ? " (airlock's default)" : ''}`).join(', ');
}

/** The reasons, once each, in the order of the limits. */
function reasons(unenforced: UnenforcedLimit[]): string {
  return [...new Set(unenforced.map((u) => u.reason))].join('; ');
}

const CONSEQUENCE: Record<CgroupLimitName, string> = {
  pids_limit: 'a fork bomb',
  memory: 'a memory hog',
  cpus: 'a CPU hog',
};

/** The warning for a run that goes ahead without some limits. */
export function describeUnenforced(verdict: LimitVerdict): string {
  const u = verdict.unenforced;
  const hazards = [...new Set(u.map((x) => CONSEQUENCE[x.name]))].join(' or ');
  return (
    `resource limits NOT enforced on this host: ${limitList(u)}: ${reasons(u)}. ` +
    `The command runs without them, so ${hazards} in it is not contained. ` +
    `Fix: ${verdict.fix}. To refuse to run instead, set resource_limits.require: true or pass --require-limits.`
  );
}

/** The error for a run that requires its limits. */
export function describeRequiredButUnenforced(verdict: LimitVerdict, source: string): string {
  return (
    `${source} requires every resource limit to be enforced, but this host cannot enforce ` +
    `${limitList(verdict.unenforced)}: ${reasons(verdict.unenforced)}. Nothing was run. Fix: ${verdict.fix}.`
  );
}

/**
 * The run's decision from the engine's answer: the limits to pass (those the engine will not enforce are left out,
 * so no engine fails or prints a misleading line over them), and the warning to print — or, when the run requires
 * its limits (`requiredBy` names the setting), an EngineError (exit 125) before anything starts.
 */
export function settleLimits<L extends { pidsLimit?: number; memory?: string; cpus?: number }>(
  answer: EngineFactsResult,
  limits: L,
  requests: CgroupLimitRequest[],
  requiredBy: string | null,
): { limits: L; warning: string | null } {
  if (!answer.ok) {
    if (requiredBy !== null) {
      throw new EngineError(
        `${requiredBy} requires every resource limit to be enforced, but airlock cannot tell whether they are: ` +
          `${answer.reason}. Nothing was run.`,
      );
    }
    return { limits, warning: `could not check which resource limits this host enforces: ${answer.reason}` };
  }
  const verdict = judgeLimitEnforcement(answer.facts, requests);
  if (verdict.unenforced.length === 0) return { limits, warning: null };
  if (requiredBy !== null) throw new EngineError(describeRequiredButUnenforced(verdict, requiredBy));
  const kept = { ...limits };
  for (const u of verdict.unenforced.filter((x) => x.engineDrops)) {
    if (u.name === 'pids_limit') delete kept.pidsLimit;
    else delete kept[u.name];
  }
  return { limits: kept, warning: describeUnenforced(verdict) };
}
