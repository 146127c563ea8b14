/**
 * Which cgroup limits the engine enforces in the world these tests run in, so a test of a limit expects what that
 * world can do: a contained fork bomb where pids are enforced, airlock's "NOT enforced" warning where they are not
 * (rootless Podman on cgroup v1). A CI lane declares its world in AIRLOCK_TEST_UNENFORCED_LIMITS (comma-separated
 * limit names, empty for none; test/container/resource-limits-enforcement.test.ts proves the declaration against a
 * probe); without it the bounded probe itself decides, once per test file. Never airlock's own judgement: that is
 * what the tests check.
 */
import { spawn } from 'node:child_process';
import type { CgroupLimitName } from '../../src/cli/engine/limit-enforcement.js';
import { readHostLimits } from '../../src/cli/engine/host-limits.js';
import { ensureTestImage, TEST_IMAGE } from './images.js';
import { LIMIT_PROBE, PROBE_LIMITS, readLimitProbe } from './limit-probe.js';

export const LIMIT_NAMES: CgroupLimitName[] = ['pids_limit', 'memory', 'cpus'];
export const DECLARED_WORLD_VARIABLE = 'AIRLOCK_TEST_UNENFORCED_LIMITS';

/** The lane's declaration, or null when it made none. */
export function declaredUnenforced(env: NodeJS.ProcessEnv = process.env): Set<CgroupLimitName> | null {
  const raw = env[DECLARED_WORLD_VARIABLE];
  if (raw === undefined) return null;
  const names = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const n of names) {
    if (!(LIMIT_NAMES as string[]).includes(n)) {
      throw new Error(`${DECLARED_WORLD_VARIABLE}: '${n}' is not one of ${LIMIT_NAMES.join(', ')}`);
    }
  }
  return new Set(names as CgroupLimitName[]);
}

function capture(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

/** Runs the probe straight on the engine (no airlock in between) and returns the limits it found unenforced. */
export async function probeUnenforced(engine: 'podman' | 'docker'): Promise<Set<CgroupLimitName>> {
  await ensureTestImage(engine);
  const host = readHostLimits();
  const r = await capture([
    engine,
    'run',
    '--rm',
    '--pull=never',
    '--network=none',
    `--pids-limit=${PROBE_LIMITS.pidsLimit}`,
    `--memory=${PROBE_LIMITS.memory}`,
    `--memory-swap=${PROBE_LIMITS.memory}`,
    `--cpus=${PROBE_LIMITS.cpus}`,
    `--ulimit=nofile=${host.nofile}:${host.nofile}`,
    `--ulimit=nproc=${host.nproc}:${host.nproc}`,
    TEST_IMAGE,
    'python3',
    '-c',
    LIMIT_PROBE,
  ]);
  const outcome = readLimitProbe(r.stdout);
  if (!outcome) throw new Error(`the limit probe failed on ${engine} (exit ${r.code}): ${r.stderr}`);
  return new Set(LIMIT_NAMES.filter((n) => outcome.observed[n] === 'not enforced'));
}

const memo = new Map<string, Promise<Set<CgroupLimitName>>>();

/** The limits this world does not enforce: the lane's declaration, else the probe's finding. */
export function unenforcedLimits(engine: 'podman' | 'docker'): Promise<Set<CgroupLimitName>> {
  const declared = declaredUnenforced();
  if (declared) return Promise.resolve(declared);
  let found = memo.get(engine);
  if (!found) {
    found = probeUnenforced(engine);
    memo.set(engine, found);
  }
  return found;
}

/** The pattern of airlock's warning naming one limit as not enforced. */
export function notEnforcedWarning(name: CgroupLimitName, value: string | number): RegExp {
  return new RegExp(
    `resource limits NOT enforced on this host: [^\\n]*\\b${name}=${String(value).replace('.', '\\.')}\\b`,
  );
}
