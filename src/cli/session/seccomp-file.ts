/**
 * The sandbox's seccomp profile on disk for one run: both engines read `--security-opt seccomp=FILE` when the
 * container is created (Docker's client reads it and sends its content; Podman reads it itself), so the file only has
 * to outlive the `run` call. It holds no secret: mode 0644 in a fresh 0700 directory, removed after the run.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Finding } from '../engine/diagnose.js';
import { seccompProfileJson } from '../engine/seccomp-profile.js';
import { SandboxError } from '../errors.js';

export interface SeccompProfileFile {
  path: string;
  remove(): Promise<void>;
}

export async function writeSeccompProfile(dir = tmpdir()): Promise<SeccompProfileFile> {
  const runDir = await mkdtemp(path.join(dir, 'airlock-seccomp-'));
  const file = path.join(runDir, 'seccomp.json');
  await writeFile(file, seccompProfileJson(), { mode: 0o644 });
  return { path: file, remove: () => rm(runDir, { recursive: true, force: true }) };
}

/**
 * Why this kernel cannot enforce the profile, judged from `/proc/self/status` and
 * `/proc/sys/kernel/seccomp/actions_avail` (either null when unreadable), or null when nothing says it cannot.
 */
export function kernelSeccompProblem(status: string | null, actionsAvail: string | null): string | null {
  if (status !== null && !/^Seccomp:/m.test(status)) return 'this kernel has no seccomp support (CONFIG_SECCOMP)';
  if (actionsAvail !== null && !/\berrno\b/.test(actionsAvail)) {
    return 'this kernel cannot make a seccomp filter return an error (CONFIG_SECCOMP_FILTER)';
  }
  return null;
}

async function readOrNull(file: string): Promise<string | null> {
  try {
    return await readFile(file, 'utf8');
  } catch {
    return null;
  }
}

async function kernelProblem(): Promise<string | null> {
  if (process.platform !== 'linux') return null;
  return kernelSeccompProblem(
    await readOrNull('/proc/self/status'),
    await readOrNull('/proc/sys/kernel/seccomp/actions_avail'),
  );
}

/** `airlock doctor`'s view; whether the engine accepts the profile is proven by its container check. */
export async function seccompFinding(): Promise<Finding> {
  const problem = await kernelProblem();
  if (problem === null) {
    return { check: 'seccomp', verdict: 'ok', detail: 'the kernel can apply airlock’s seccomp profile' };
  }
  return {
    check: 'seccomp',
    verdict: 'fail',
    detail: `${problem}: airlock will not run a sandbox without its seccomp profile`,
    fix: 'use a kernel built with CONFIG_SECCOMP and CONFIG_SECCOMP_FILTER (every mainstream distribution kernel is)',
  };
}

/**
 * Fails closed before anything is started when this machine's kernel cannot apply the profile. (A remote engine's
 * kernel is not this one; there the engine itself refuses a profile it cannot apply, and `run` exits 125.)
 */
export async function assertKernelSeccomp(): Promise<void> {
  const problem = await kernelProblem();
  if (problem !== null) {
    throw new SandboxError(
      `${problem}: the sandbox needs its seccomp profile to refuse new user namespaces, so nothing was run`,
    );
  }
}
