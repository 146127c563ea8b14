/**
 * The container's bind mounts: the working directory at /workspace (read-write) plus every `--mount SRC:DST[:ro]`.
 * A `--mount` whose destination is /workspace replaces the default instead of clashing with it (Airut passes both
 * and the engine rejects the duplicate, airut-behaviour.md item 68).
 */
import { lstat, mkdtemp, realpath, rm, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix, resolve } from 'node:path';
import { UsageError } from '../errors.js';
import type { BindMount } from '../engine/run-args.js';

export const WORKSPACE = '/workspace';

export interface MountFlag {
  source: string;
  target: string;
  readOnly: boolean;
}

/** `SRC:DST`, `SRC:DST:ro` or `SRC:DST:rw`; DST must be an absolute container path. */
export function parseMountFlag(flag: string): MountFlag {
  const parts = flag.split(':');
  const mode = parts.length === 3 ? parts[2] : parts.length === 2 ? 'rw' : null;
  const [source, target] = parts;
  if (mode === null || (mode !== 'ro' && mode !== 'rw') || !source || !target) {
    throw new UsageError(`invalid --mount '${flag}' (expected SRC:DST or SRC:DST:ro)`);
  }
  if (!target.startsWith('/')) {
    throw new UsageError(`invalid --mount '${flag}': the destination must be an absolute path in the container`);
  }
  return { source, target: posix.normalize(target).replace(/(.)\/$/, '$1'), readOnly: mode === 'ro' };
}

/** The run's mounts in order: workspace (unless replaced), then the flags. Sources are resolved and must exist. */
export async function resolveMounts(cwd: string, flags: string[]): Promise<BindMount[]> {
  const parsed = flags.map(parseMountFlag);
  const seen = new Set<string>();
  for (const m of parsed) {
    if (seen.has(m.target)) throw new UsageError(`two --mount options have the same destination ${m.target}`);
    seen.add(m.target);
  }
  const mounts: BindMount[] = [];
  const real = async (path: string, what: string): Promise<string> => {
    let found: string;
    try {
      found = await realpath(resolve(cwd, path));
    } catch {
      throw new UsageError(`${what} ${resolve(cwd, path)} does not exist`);
    }
    // The engine's -v splits on ':', so such a path would mount something else (or nothing).
    if (found.includes(':')) throw new UsageError(`${what} ${found} contains ':', which cannot be mounted; move it`);
    return found;
  };
  if (!seen.has(WORKSPACE)) {
    mounts.push({ source: await real(cwd, 'the working directory'), target: WORKSPACE, readOnly: false });
  }
  for (const m of parsed) {
    mounts.push({ source: await real(m.source, '--mount source'), target: m.target, readOnly: m.readOnly });
  }
  return mounts;
}

export interface PolicyGuard {
  /** Read-only mounts, in order, to add after the workspace's. */
  mounts: BindMount[];
  /** Policy paths that cannot be guarded (a symlinked `.airlock/` can be replaced through its link). */
  warnings: string[];
  /** Removes what the guard put on the host: the mount points the engine created, the empty directory. */
  release: () => Promise<void>;
}

/**
 * Keeps a local run from writing the policy the next `airlock run` in this directory reads: `.airlock/`, `.airut/`
 * and any policy file or directory the run was pointed at below the working directory are mounted read-only in the
 * sandbox; where `.airlock/` or `.airut/` does not exist, an empty read-only directory takes its place, so the sandbox
 * cannot create one either (the engine leaves an empty mount point on the host, which `release` removes). Paths are
 * resolved first, so a symlink cannot aim a mount elsewhere; paths outside the working directory are not in the
 * sandbox and need nothing.
 */
export async function guardPolicy(
  cwd: string,
  policyPaths: ReadonlyArray<string | null | undefined>,
): Promise<PolicyGuard> {
  const root = await realpath(cwd);
  const warnings: string[] = [];
  const inside: string[] = [];
  const absent: string[] = [];
  for (const name of ['.airlock', '.airut']) {
    const at = join(root, name);
    const info = await lstat(at).catch(() => null);
    if (info === null) absent.push(at);
    else if (info.isSymbolicLink()) {
      warnings.push(
        `${at} is a symbolic link: the sandbox can replace it, so the next run here could read a policy the ` +
          'sandbox wrote; make it a directory, or keep the policy outside the working directory (--config-dir)',
      );
    }
  }
  for (const candidate of [join(root, '.airlock'), join(root, '.airut'), ...policyPaths.filter((p) => !!p)]) {
    let real: string;
    try {
      real = await realpath(resolve(cwd, candidate!));
    } catch {
      continue;
    }
    if (real !== root && real.startsWith(root + '/') && !inside.includes(real)) inside.push(real);
  }
  // A path under another guarded path is already read-only.
  const outermost = inside.filter((p) => !inside.some((q) => q !== p && p.startsWith(q + '/'))).sort();
  const target = (hostPath: string) => posix.join(WORKSPACE, hostPath.slice(root.length + 1));
  const mounts = outermost.map((source): BindMount => ({ source, target: target(source), readOnly: true }));
  let empty: string | null = null;
  if (absent.length > 0) {
    empty = await mkdtemp(join(tmpdir(), 'airlock-no-policy-'));
    for (const at of absent) mounts.push({ source: empty, target: target(at), readOnly: true });
  }
  return {
    mounts,
    warnings,
    release: async () => {
      // rmdir, never rm -r: only an empty mount point is ours to remove.
      for (const at of absent) await rmdir(at).catch(() => undefined);
      if (empty !== null) await rm(empty, { recursive: true, force: true });
    },
  };
}
