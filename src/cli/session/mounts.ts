/**
 * The container's bind mounts: the working directory at /workspace (read-write) plus every `--mount SRC:DST[:ro]`.
 * A `--mount` whose destination is /workspace replaces the default instead of clashing with it (Airut passes both
 * and the engine rejects the duplicate, airut-behaviour.md item 68).
 */
import { realpath } from 'node:fs/promises';
import { posix, resolve } from 'node:path';
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
    try {
      return await realpath(resolve(cwd, path));
    } catch {
      throw new UsageError(`${what} ${resolve(cwd, path)} does not exist`);
    }
  };
  if (!seen.has(WORKSPACE)) {
    mounts.push({ source: await real(cwd, 'the working directory'), target: WORKSPACE, readOnly: false });
  }
  for (const m of parsed) {
    mounts.push({ source: await real(m.source, '--mount source'), target: m.target, readOnly: m.readOnly });
  }
  return mounts;
}

/**
 * Read-only mounts over the policy inside the workspace (`.airlock/`, `.airut/`, and any policy file or directory the
 * run was pointed at below the working directory): in a local run the next `airlock run` reads its policy from this
 * same directory, so a sandbox able to rewrite it could widen its own next sandbox. Paths are resolved first, so a
 * symlink cannot aim a mount elsewhere; those outside the working directory are not in the sandbox and need nothing.
 */
export async function policyGuardMounts(cwd: string, policyPaths: ReadonlyArray<string | null | undefined>) {
  const root = await realpath(cwd);
  const candidates = [resolve(cwd, '.airlock'), resolve(cwd, '.airut'), ...policyPaths.filter((p) => !!p)];
  const inside: string[] = [];
  for (const candidate of candidates) {
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
  return outermost.map((source): BindMount => ({
    source,
    target: posix.join(WORKSPACE, source.slice(root.length + 1)),
    readOnly: true,
  }));
}
