/**
 * Ground truth for "is this limit enforced here?", measured inside a container rather than read from the engine's
 * report: the code under test decides from `<engine> info`, so the tests and the recorded fixtures judge it against
 * what the kernel actually did. Every probe is bounded — 64 processes and one 128 MiB allocation at most — so it is
 * harmless on a host where nothing is enforced.
 */
import type { CgroupLimitName } from '../../src/cli/engine/limit-enforcement.js';

/** Limits under which the probe runs: small enough that the probe meets each one at once. */
export const PROBE_LIMITS = { pidsLimit: 32, memory: '64m', cpus: 0.5 } as const;

/** How far the probe goes: twice the pids limit, twice the memory limit. */
const PROBE_FORKS = 64;
const PROBE_ALLOC_MIB = 128;

/** Python (the test image has python3): prints `pids_started=N`, `memory_child=killed|survived`, `cpu_quota=Q`. */
export const LIMIT_PROBE = `
import errno, os, time
kids = []
for _ in range(${PROBE_FORKS}):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    kids.append(pid)
for k in kids:
    os.kill(k, 9)
for k in kids:
    os.waitpid(k, 0)
print(f'pids_started={len(kids)}', flush=True)
pid = os.fork()
if pid == 0:
    b = bytearray(${PROBE_ALLOC_MIB} << 20)
    for i in range(0, len(b), 4096):
        b[i] = 1
    os._exit(0)
_, status = os.waitpid(pid, 0)
print('memory_child=' + ('killed' if os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9 else 'survived'), flush=True)
def read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ''
v2 = read('/sys/fs/cgroup/cpu.max')
quota = v2.split()[0] if v2 else (read('/sys/fs/cgroup/cpu/cpu.cfs_quota_us') or read('/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us'))
print('cpu_quota=' + (quota or 'unknown'), flush=True)
`;

export type Enforcement = 'enforced' | 'not enforced';

export interface ProbeOutcome {
  observed: Record<CgroupLimitName, Enforcement>;
  /** The probe's own lines, kept as evidence. */
  lines: string[];
}

/** What the probe saw, or null when its output is incomplete (the probe itself failed). */
export function readLimitProbe(stdout: string): ProbeOutcome | null {
  const lines = stdout.split('\n').filter((l) => /^(pids_started|memory_child|cpu_quota)=/.test(l));
  const get = (key: string) => lines.find((l) => l.startsWith(`${key}=`))?.slice(key.length + 1);
  const started = Number(get('pids_started'));
  const memory = get('memory_child');
  const quota = get('cpu_quota');
  if (!Number.isInteger(started) || memory === undefined || quota === undefined) return null;
  return {
    observed: {
      pids_limit: started < PROBE_LIMITS.pidsLimit ? 'enforced' : 'not enforced',
      memory: memory === 'killed' ? 'enforced' : 'not enforced',
      cpus: /^\d+$/.test(quota) && Number(quota) > 0 ? 'enforced' : 'not enforced',
    },
    lines,
  };
}
